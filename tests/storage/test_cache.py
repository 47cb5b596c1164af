from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesim.faces.image import read_image
from facesim.faces.preprocess import PreprocessConfig
from facesim.storage.cache import prepare_crops
from facesim.storage.cli import main
from facesim.storage.lfw import LfwLayout, protocol_split


def test_prepare_then_rerun_skips(lfw_dir: Path, tmp_path: Path, few_identities, yunet_env, capsys) -> None:
    out = tmp_path / "cache"
    argv = [
        "prepare",
        "--data",
        str(lfw_dir),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
        "--only-identities",
        *few_identities,
    ]
    assert main(argv) == 0
    assert "10 done, 0 skipped" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 done, 10 skipped" in capsys.readouterr().out

    crop = read_image(out / "Abel_Pacheco" / "Abel_Pacheco_0004.png")
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    manifest = json.loads((out / "facesim-cache.json").read_text())
    assert manifest["preprocessing"]["detector_used"] == "yunet" and manifest["counts"]["crops"] == 10


def test_cache_is_an_lfw_root(lfw_dir: Path, tmp_path: Path, few_identities, yunet_env) -> None:
    out = tmp_path / "cache"
    prepare_crops(lfw_dir, out, PreprocessConfig(), workers=1, only=few_identities, progress=False)
    layout = LfwLayout.find(out)
    assert layout.images == out and layout.suffix == ".png"
    first_pair = protocol_split(layout).val_pairs[0]  # the protocol files were copied in
    assert layout.image_path("Abel_Pacheco", 4) == out / "Abel_Pacheco" / "Abel_Pacheco_0004.png"
    assert layout.image_path("Abel_Pacheco", 4).is_file() and first_pair.name1


def test_killed_run_resumes(lfw_dir: Path, tmp_path: Path, yunet_env) -> None:
    out = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "facesim.storage",
        "prepare",
        "--data",
        str(lfw_dir),
        "--out",
        str(out),
        "--limit-identities",
        "60",
        "--workers",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not any(out.glob("*/[!.]*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # a no-op if the run had already ended
    process.wait()
    total = sum(
        len(list((lfw_dir / "lfw-deepfunneled" / name).iterdir()))
        for name in sorted(os.listdir(lfw_dir / "lfw-deepfunneled"))[:60]
    )
    written = len(list(out.glob("*/[!.]*.png")))
    assert process.returncode == -signal.SIGKILL, "the prepare run must die by the kill, not finish first"
    assert 1 <= written < total, "killed mid-run"
    finished = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ.copy())
    assert f"{total - written} done, {written} skipped" in finished.stdout
    assert len(list(out.glob("*/[!.]*.png"))) == total and not list(out.glob("*/.*.partial.png"))


@pytest.fixture
def mixed_folders(tmp_path: Path, lfw_dir: Path) -> Path:
    """person_a: a real face and a blank picture; person_b: a truncated JPEG."""
    root = tmp_path / "mixed"
    (root / "person_a").mkdir(parents=True)
    (root / "person_b").mkdir()
    shutil.copy(
        lfw_dir / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", root / "person_a" / "face.jpg"
    )
    Image.new("RGB", (250, 250), (180, 180, 180)).save(root / "person_a" / "blank.png")
    data = (root / "person_a" / "face.jpg").read_bytes()
    (root / "person_b" / "broken.jpg").write_bytes(data[: len(data) // 3])
    return root


def test_no_face_and_unreadable_images_are_reported(mixed_folders: Path, tmp_path: Path, yunet_env) -> None:
    out = tmp_path / "cache"
    report = prepare_crops(mixed_folders, out, PreprocessConfig(), progress=False)
    assert (report.done, report.detected, report.no_face) == (1, 1, ["person_a/blank.png"])
    assert list(report.errors) == ["person_b/broken.jpg"] and "truncated" in report.errors["person_b/broken.jpg"]
    assert "1 with no face found were left out" in report.summary() and "1 unreadable" in report.summary()
    again = prepare_crops(mixed_folders, out, PreprocessConfig(), progress=False)
    assert (again.done, again.skipped) == (0, 2)  # the crop and the known no-face image
    manifest = json.loads((out / "facesim-cache.json").read_text())
    assert manifest["no_face"] == ["person_a/blank.png"] and manifest["counts"]["errors"] == 1


def test_centre_crop_fallback_is_counted(mixed_folders: Path, tmp_path: Path, yunet_env) -> None:
    report = prepare_crops(mixed_folders, tmp_path / "cache", PreprocessConfig(fallback="center"), progress=False)
    assert (report.done, report.detected, report.fallback) == (2, 1, 1)
    assert "1 with no face found used the centre crop" in report.summary()


def test_haar_at_160_and_settings_are_pinned(lfw_dir: Path, tmp_path: Path, few_identities, yunet_env, capsys) -> None:
    def prepare(size: int) -> int:
        return main(
            [
                "prepare",
                "--data",
                str(lfw_dir),
                "--out",
                str(tmp_path / "cache"),
                "--workers",
                "1",
                "--no-progress",
                "--detector",
                "haar",
                "--image-size",
                str(size),
                "--only-identities",
                *few_identities[:2],
            ]
        )

    assert prepare(160) == 0
    assert "detector haar" in capsys.readouterr().out
    assert read_image(tmp_path / "cache" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.png").shape == (160, 160, 3)
    assert prepare(112) == 1
    assert "prepared with other settings (image_size 160 -> 112)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--workers", "0"], "--workers must be at least 1"), (["--only-identities", "Nobody_Here"], "not in")],
)
def test_bad_prepare_arguments(lfw_dir: Path, tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    assert main(["prepare", "--data", str(lfw_dir), "--out", str(tmp_path / "c"), *extra]) == 1
    assert message in capsys.readouterr().err


def test_info_counts(lfw_dir: Path, capsys) -> None:
    assert main(["info", "--data", str(lfw_dir)]) == 0
    output = capsys.readouterr().out
    assert "5749 identities, 13233 images" in output and "4560 train identities" in output


def test_partial_crops_of_live_writers_survive_a_second_preparer(tmp_path: Path) -> None:
    """Pods sharing a cache on a volume prepare at once: only a dead writer's partial crop is removed."""
    import socket

    from facesim.storage.cache import _partial_name, _remove_stale_partials

    folder = tmp_path / "person"
    folder.mkdir()
    mine = folder / _partial_name(folder / "a.png")
    gone = folder / f".b.{socket.gethostname()}.{2**22 + 1}.0000.partial.png"  # above pid_max: never alive
    other_pod = folder / ".c.trainer-worker-1.7.1234abcd.partial.png"
    for path in (mine, gone, other_pod):
        path.write_bytes(b"")
    _remove_stale_partials(tmp_path)
    assert mine.exists() and other_pod.exists() and not gone.exists()
