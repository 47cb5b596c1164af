"""`facesim bench accuracy` on the tiny model and face_recognition: its metric lines, its table, the
threshold set on fold 9 alone; nothing to score is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facesim.cli import main
from facesim.contract.metrics_lines import parse_metrics
from facesim.storage.lfw import Pair, read_pairs
from tests.helpers.lfw_sliver import make_lfw_sliver, write_pairs

# 30 same + 30 different pairs a fold: fold 10's ~110 images make the ~6,000 pairs that the all-pairs
# TAR at FAR 1e-3 needs (1,000 impostors at least), and face_recognition scores them in ~30 s.
PAIRS_PER_FOLD = 30


@pytest.fixture(scope="module")
def accuracy_slivers(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An LFW sliver, and the same with fold 10's different pairs paired anew (fold 9 unchanged)."""
    first = make_lfw_sliver(lfw_dir, tmp_path_factory.mktemp("accuracy-sliver"), PAIRS_PER_FOLD)
    second = tmp_path_factory.mktemp("accuracy-sliver-refolded")
    (second / "lfw-deepfunneled").symlink_to(first / "lfw-deepfunneled")
    shutil.copy(first / "people.txt", second / "people.txt")
    folds = read_pairs(first / "pairs.txt")
    same = [p for p in folds[9] if p.same]
    different = [p for p in folds[9] if not p.same]
    repaired = [
        Pair(a.name1, a.n1, b.name2, b.n2) for a, b in zip(different, different[1:] + different[:1], strict=True)
    ]
    assert all(p.name1 != p.name2 for p in repaired) and set(repaired) != set(different)
    write_pairs(second / "pairs.txt", [*folds[:9], same + repaired])
    return first, second


def bench_accuracy(data: Path, model_dir: Path, yunet_path: Path, out: Path) -> dict:
    code = main(
        [
            "bench",
            "accuracy",
            "--data",
            str(data),
            "--model",
            f"tiny={model_dir}",
            "--face-recognition",
            "on",
            "--yunet",
            str(yunet_path),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    return {score["name"]: score for score in json.loads(out.read_text())["lfw"]}


@pytest.mark.slow
def test_bench_accuracy_smoke(
    accuracy_slivers: tuple[Path, Path],
    tiny_model_dir: Path,
    yunet_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both sides (the tiny model, face_recognition) on a sliver of folds 9 and 10; the threshold is
    fold 9's: the same when only fold 10 changes."""
    scores = bench_accuracy(accuracy_slivers[0], tiny_model_dir, yunet_path, tmp_path / "first.json")
    out = capsys.readouterr().out
    metrics = dict(parse_metrics(out.splitlines()))
    assert 0.0 <= metrics["tiny_accuracy"] <= 1.0 and 0.0 <= metrics["tiny_auc"] <= 1.0
    assert metrics["tiny_ms_per_face"] > 0
    assert 0.0 <= metrics["tiny_tar_at_far_1e-3_fold9_threshold"] <= 1.0  # what `facesim evaluate` prints
    assert "| tiny |" in out and "| face_recognition |" in out  # the Markdown table has both rows
    # dlib scores 98.7 % on the whole fold 10; these 60 pairs are among the easier ones.
    assert metrics["face_recognition_accuracy"] >= 0.9 and metrics["face_recognition_auc"] >= 0.95
    refolded = bench_accuracy(accuracy_slivers[1], tiny_model_dir, yunet_path, tmp_path / "second.json")
    assert refolded["tiny"]["auc"] != scores["tiny"]["auc"]  # fold 10 did change
    for name in ("tiny", "face_recognition"):
        assert refolded[name]["threshold"] == scores[name]["threshold"], name  # chosen on fold 9 alone


def test_bench_accuracy_refuses_nothing_to_score(lfw_sliver: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "accuracy", "--data", str(lfw_sliver), "--face-recognition", "off"])
    assert exit_info.value.code == 2
