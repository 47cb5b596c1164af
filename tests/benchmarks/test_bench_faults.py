"""`facesim bench faults --postgres`, short: a database outage, a replica kill and a SQLite kill -9
under load, with the tiny model and real photos; nothing acknowledged is lost or duplicated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_bench_faults_smoke(tiny_model_dir: Path, detection_dir: Path, yunet_path: Path) -> None:
    examples = detection_dir / "face_recognition" / "examples"
    command = [
        sys.executable,
        "-m",
        "facesim",
        "bench",
        "faults",
        "--postgres",
        "--model",
        str(tiny_model_dir),
        "--images",
        str(examples / "alex-lacamoire.png"),
        "--images",
        str(examples / "obama_small.jpg"),
        "--outage-s",
        "2",
        "--settle-s",
        "1.5",
        "--kills",
        "1",
        "--predict-clients",
        "2",
        "--yunet",
        str(yunet_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    figures = dict(field.split("=", 1) for field in line.split())
    assert list(figures) == [
        "acked",
        "lost",
        "duplicated",
        "predict_5xx",
        "write_5xx_other_than_503",
        "outage_write_status",
        "recovery_s",
    ]
    assert int(figures["acked"]) >= 3
    assert figures["lost"] == figures["duplicated"] == figures["predict_5xx"] == "0"
    assert figures["write_5xx_other_than_503"] == "0" and figures["outage_write_status"] == "503"
    assert float(figures["recovery_s"]) <= 5
    assert "integrity_check ok" in result.stderr
