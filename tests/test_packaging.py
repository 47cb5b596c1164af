"""One installed namespace: the wheel holds `facesim` only, and generic names do not import."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("facesim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"facesim"}
    for expected in (
        "facesim/training/__main__.py",
        "facesim/ui/templates/base.html",
        "facesim/pipeline/facesim_pipeline.yaml",
    ):
        assert expected in names


def test_components_import_only_under_the_facesim_namespace(tmp_path: Path) -> None:
    def imports(statement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", statement], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    assert imports("import facesim.training, facesim.inference, facesim.ui, facesim.contract").returncode == 0
    for generic in (
        "training",
        "inference",
        "storage",
        "pipeline",
        "tuning",
        "ui",
        "faces",
        "contract",
        "cluster",
        "gallery",
        "emulator",
        "benchmarks",
    ):
        assert "ModuleNotFoundError" in imports(f"import {generic}").stderr, generic
