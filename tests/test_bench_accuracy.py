"""`facesim bench accuracy` on the tiny model: its metric lines and its table; nothing to score is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesim.cli import main
from facesim.contract.metrics_lines import parse_metrics


@pytest.mark.slow
def test_bench_accuracy_smoke(
    lfw_dir: Path, tiny_model_dir: Path, yunet_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Folds 9 and 10 of the real LFW (the all-pairs FAR figures need its ~300,000 impostor pairs)."""
    code = main(
        ["bench", "accuracy", "--data", str(lfw_dir), "--model", f"tiny={tiny_model_dir}", "--face-recognition"]
        + ["off", "--yunet", str(yunet_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    metrics = dict(parse_metrics(out.splitlines()))
    assert 0.0 <= metrics["tiny_accuracy"] <= 1.0 and 0.0 <= metrics["tiny_auc"] <= 1.0
    assert metrics["tiny_ms_per_face"] > 0
    assert 0.0 <= metrics["tiny_tar_at_far_1e-3_fold9_threshold"] <= 1.0  # what `facesim evaluate` prints
    assert "| tiny |" in out  # the Markdown table has the model's row


def test_bench_accuracy_refuses_nothing_to_score(lfw_sliver: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "accuracy", "--data", str(lfw_sliver), "--face-recognition", "off"])
    assert exit_info.value.code == 2
