"""`facesim bench serve` on the tiny model: it starts a real predictor and measures it (the smoke
run that `pytest -k bench` includes; the figures in docs/results.md come from the same command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_bench_serve_measures_a_predictor_it_starts(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, detection_dir: Path, tmp_path: Path
) -> None:
    gallery, out = tmp_path / "gallery", tmp_path / "serve.json"
    shutil.copytree(tiny_gallery_dir, gallery)
    photo = detection_dir / "face_recognition" / "examples" / "obama.jpg"
    command = [
        sys.executable,
        "-m",
        "facesim",
        "bench",
        "serve",
        "--model",
        str(tiny_model_dir),
        "--gallery",
        str(gallery),
        "--yunet",
        str(yunet_path),
        "--image",
        str(photo),
        "--concurrency",
        "1",
        "2",
        "--requests",
        "4",
        "--search-sizes",
        "--json-out",
        str(out),
        "--face-recognition",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FACESIM_HOME": str(tmp_path / "home")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    latency = json.loads(out.read_text())["latency"]
    assert [(row["image"], row["concurrency"], row["requests"]) for row in latency] == [
        ("obama.jpg", 1, 4),
        ("obama.jpg", 2, 4),
    ]
    assert all(0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_s"] > 0 for row in latency)
    assert "load average (1/5/15 min) before" in result.stdout  # the machine's load is part of the result
    assert f"| obama.jpg | {latency[0]['pixels']} | 1 | 4 | {latency[0]['p50_ms']:.1f} |" in result.stdout
    # The comparison with face_recognition: its own interleaved run against the same server.
    versus = next(line for line in result.stdout.splitlines() if line.startswith("interleaved, 4 each: facesim V1 p50"))
    assert "load+detect+encode obama.jpg: p50" in versus and versus.endswith("x faster")


def test_bench_serve_explains_a_missing_image(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "facesim", "bench", "serve", "--image", str(tmp_path / "nope.jpg")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such image" in result.stderr and "Traceback" not in result.stderr


def test_bench_serve_in_process_and_startup(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, detection_dir: Path, tmp_path: Path
) -> None:
    photo = detection_dir / "face_recognition" / "examples" / "two_people.jpg"
    command = [sys.executable, "-m", "facesim", "bench", "serve", "--model", str(tiny_model_dir)]
    command += ["--gallery", str(tiny_gallery_dir), "--yunet", str(yunet_path), "--image", str(photo)]
    command += ["--in-process", "--startup", "1", "--requests", "3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FACESIM_HOME": str(tmp_path / "home")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "facesim serve --runtime onnx ready after" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| two_people.jpg |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:3] == ["1126x661", "2"]  # pixels, faces found
    total, stages = float(cells[3]), [float(cell) for cell in cells[6:12] if cell != "-"]
    assert len(stages) == 6 and 0 < sum(stages) < 3 * total  # every stage timed, alone
    assert float(cells[12]) > 0 and cells[13:] == ["-", "-"]  # CPU time per request (no face_recognition here)
    assert "GFLOP (Conv + MatMul, counted from model.onnx" in result.stdout and "% of it" in result.stdout
    assert "YuNet on ONNX Runtime / on OpenCV (cv2.FaceDetectorYN): two_people.jpg " in result.stdout
    assert "load average (1/5/15 min) before" in result.stdout
