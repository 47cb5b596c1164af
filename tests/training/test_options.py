"""Options declared once (training/options.py): a field's declaration alone gives its flag, its place
in `to_args` and its checks (TrainConfig's round trip of every field: test_config.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from facesim.training.config import TrainConfig
from facesim.training.options import add_options, from_namespace, option, option_problems, to_args


@dataclass
class Example:
    """A config as a new component would declare it."""

    source: str = field(metadata=option("where from"))
    count: int = field(default=3, metadata=option("how many (default: %(default)s)", at_least=1))
    share: float | None = field(default=None, metadata=option("a fraction", finite=True, at_least=0, at_most=1))
    mode: str = field(default="fast", metadata=option("how", choices=("fast", "slow")))
    verbose: bool = field(default=False, metadata=option("say more"))
    cost: float = field(default=0.0, metadata=option("cost", not_negative=True))
    delay: int = field(default=0, metadata=option("delay", not_negative=True))
    tags: dict[str, str] = field(default_factory=dict, metadata=option("a tag", metavar="KEY=VALUE"))


def _parse(kind: type, argv: list[str]):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, kind)
    return from_namespace(kind, parser.parse_args(argv))


def test_a_declared_field_gets_its_flag_its_round_trip_and_its_checks() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    text = parser.format_help()
    for flag in ("--source SOURCE", "--count COUNT", "--share SHARE", "--mode {fast,slow}", "--verbose, --no-verbose"):
        assert flag in text
    assert "how many (default: 3)" in text and "--tags KEY=VALUE" in text

    given = Example(source="s", count=5, share=0.5, mode="slow", verbose=True, cost=1.5, delay=2, tags={"a": "b=c"})
    assert _parse(Example, to_args(given)) == given
    assert to_args(Example(source="s")) == ["--source", "s"]  # defaults are left out
    assert "--count" not in to_args(given, exclude={"count"})

    assert option_problems(given) == []
    bad = Example(source="s", count=0, share=float("nan"), mode="medium", cost=-1.0)
    assert option_problems(bad) == [
        "--count must be at least 1",
        "--share must be a finite number",
        "--share must be 0..1",
        "--mode must be one of fast, slow",
        "--cost and --delay must not be negative",
    ]


def test_a_field_without_an_option_is_refused_not_silently_dropped() -> None:
    @dataclass
    class Undeclared:
        name: str = "x"

    with pytest.raises(TypeError, match="Undeclared.name has no option"):
        to_args(Undeclared())


def test_a_malformed_key_value_says_what_it_expects() -> None:
    with pytest.raises(ValueError, match="--tags expects KEY=VALUE, got 'nokey'"):
        _parse(Example, ["--source", "s", "--tags", "nokey"])


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"identities_per_batch": 1}, "--identities-per-batch must be at least 2 (a triplet needs a negative)"),
        ({"image_size": 16}, "--image-size must be at least 32"),
        ({"freeze_stages": 4, "init": "faceapi-resnet"}, "--freeze-stages must be 0..3"),
        ({"architecture": "resnet"}, "--architecture must be one of mobilefacenet, inception_resnet_v1"),
        ({"warmup_steps": -1}, "--warmup-steps, --weight-decay and --distill-weight must not be negative"),
        ({"epochs": 0}, "--epochs must be at least 1 (0, export the starting weights calibrated, needs an --init)"),
    ],
)
def test_each_declared_check_names_its_flag(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        TrainConfig(data="d", out="o", **changes)
    assert message in str(error.value)
