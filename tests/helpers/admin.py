"""The admin token the tests' predictors are started with (gallery writes need it), and such a
predictor of a test's own."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path

TEST_ADMIN_TOKEN = "facesim-test-admin-token"
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def own_predictor(model_dir: Path, gallery_dir: Path, yunet_path: Path, work: Path) -> AbstractContextManager[str]:
    """`facesim serve` (yields its URL) with the test admin token, its own FACESIM_HOME under `work`,
    and a copy of `gallery_dir`, so its enrolments touch nobody else's gallery."""
    from facesim.inference.local_server import local_predictor

    gallery_copy = work / "gallery"
    shutil.copytree(gallery_dir, gallery_copy)
    env = {
        "FACESIM_HOME": str(work / "home"),
        "FACESIM_YUNET_MODEL": str(yunet_path),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    }
    return local_predictor(model_dir, gallery_copy, env=env, log_path=work / "predictor.log")
