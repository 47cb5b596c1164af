"""`facesim bench soak` for a few seconds on the tiny model and real photos: the command runs, every
answer passes the client's checks, and it reports the predictor's memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from facesim.contract.metrics_lines import latest_metrics


def test_bench_soak_smoke(tiny_model_dir: Path, tiny_gallery_dir: Path, detection_dir: Path, yunet_path: Path) -> None:
    examples = detection_dir / "face_recognition" / "examples"
    command = [
        sys.executable,
        "-m",
        "facesim",
        "bench",
        "soak",
        "--model",
        str(tiny_model_dir),
        "--gallery",
        str(tiny_gallery_dir),
        "--images",
        str(examples / "obama_small.jpg"),
        "--images",
        str(examples / "two_people.jpg"),
        "--duration",
        "4",
        "--concurrency",
        "2",
        "--warmup",
        "1",
        "--rss-tolerance",
        "1.0",
        "--yunet",
        str(yunet_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = latest_metrics(result.stdout.splitlines())
    assert metrics["errors"] == 0 and metrics["requests"] >= 2
    assert 100 < metrics["rss_first_fifth_after_warmup_mb"] <= metrics["rss_max_after_warmup_mb"] < 8000
    assert "soak: PASS" in result.stdout
