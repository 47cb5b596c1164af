"""`facesim tune`'s search options come from SearchSettings' declarations: flag, default and check once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from facesim.training.options import to_args
from facesim.tuning.cli import _parser, main
from facesim.tuning.local import LocalTuneConfig
from facesim.tuning.space import SearchSettings


def test_every_search_setting_is_an_option_of_facesim_tune_with_its_default() -> None:
    parsed = _parser().parse_args([])
    for setting in dataclasses.fields(SearchSettings):
        assert getattr(parsed, setting.name) == setting.default, setting.name
    given = SearchSettings(trials=9, parallel=2, algorithm="random", minimize=True, workers=2, grid_points=4, seed=7)
    parsed = _parser().parse_args(to_args(given))
    assert SearchSettings(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(SearchSettings)}) == given
    assert not given.maximize


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--parallel", "-1"], "--parallel must be at least 0 (0: automatic)"),
        (["--algorithm", "cmaes"], "cmaes"),
    ],
)
def test_a_bad_search_setting_is_a_usage_error_naming_the_option(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_local_tuner_checks_the_same_settings() -> None:
    with pytest.raises(ValueError, match="--grid-points must be at least 1"):
        LocalTuneConfig(data="d", out=Path("o"), grid_points=0)


def test_each_tuned_parameter_passes_the_flag_its_train_config_field_declares() -> None:
    from facesim.training.config import parse_config
    from facesim.tuning.space import SEARCH_SPACE, trial_flags

    values = {"margin": 0.3, "embedding_size": "64", "learning_rate": 0.002}
    config = parse_config(["--data", "d", "--out", "o", *trial_flags(values)])
    assert [getattr(config, p.setting) for p in SEARCH_SPACE] == [0.3, 64, 0.002]
