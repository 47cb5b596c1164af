"""Fixtures shared by every component's tests: where the shared data lives.

Component-specific fixtures live in each test folder's own conftest.py; fixtures that several
components need (a tiny trained model, a gallery, a live predictor) live here.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesim.benchmarks.postgres_local import LocalPostgres, local_postgres

# A shell without job control starts background jobs with SIGINT ignored, and Python then keeps it
# ignored: give the Ctrl-C tests the handler a user's terminal gives, however pytest was started.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESIM_SHARED", REPO_ROOT.parent / "shared")).resolve()


# --- unit or integration: every test is exactly one (`pytest -m unit` runs without ../shared) -------

TEST_KINDS = ("unit", "integration")
# A test that reaches any of these fixtures, directly or through others, is an integration test:
# the shared data (LFW, detection photos, YuNet, CRDs) and what is made from it (a trained model, a
# gallery, a live predictor), a PostgreSQL server, headless Chromium.
INTEGRATION_FIXTURES = frozenset({"shared_dir", "postgres", "browser"})
# So is one carrying any of these marks (pods as podman containers, Chromium, over ~30 s).
INTEGRATION_MARKS = frozenset({"container", "browser", "slow"})


def kind_of(item: pytest.Item) -> str:
    """`integration` by the rules above, else `unit`; a test may also say so with a mark of its own
    (a subprocess server, training a model) and then also gets the kind the rules give it."""
    needs = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    marked = INTEGRATION_MARKS.intersection(mark.name for mark in item.iter_markers())
    return "integration" if needs or marked or item.get_closest_marker("integration") else "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = kind_of(item)
        if not item.get_closest_marker(kind):
            item.add_marker(kind)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (CI and the README expect ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def lfw_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "lfw")


@pytest.fixture(scope="session")
def detection_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data" / "detection")


@pytest.fixture(scope="session")
def yunet_path(shared_dir: Path) -> Path:
    return _require(shared_dir / "models" / "face_detection_yunet_2026may.onnx")


@pytest.fixture(scope="session")
def crds_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "crds")


# --- a real tiny trained model (training; used by the inference and UI tests) -------------------

TINY_MODEL_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def tiny_model_dir(lfw_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model exported by `facesim train` (tiny net, 64 px, 64-d, 4 steps on a sliver of LFW, 1 worker;
    ~15 s): SavedModel + model.json + roc.png + embedding_map.png."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("tiny-model")
    out = work / "model"
    command = [
        sys.executable,
        "-m",
        "facesim",
        "train",
        "--data",
        str(lfw_dir),
        "--out",
        str(out),
        "--run-dir",
        str(work / "run"),
        "--cache-dir",
        str(work / "crops"),
        "--yunet",
        str(yunet_path),
        "--workers",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "4",
        "--architecture",
        "tiny",
        "--image-size",
        str(TINY_MODEL_IMAGE_SIZE),
        "--embedding-dim",
        "64",
        "--max-identities",
        "8",
        "--identities-per-batch",
        "4",
        "--images-per-identity",
        "2",
        "--val-pairs",
        "20",
        "--test-pairs",
        "20",
        "--map-identities",
        "4",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FACESIM_HOME": str(work / "home")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"facesim train failed for the tiny model:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return out


# --- the served model: a gallery and a live predictor (inference; also used by the UI tests) -----

GALLERY_LFW_PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


@pytest.fixture(scope="session")
def tiny_gallery_dir(
    tiny_model_dir: Path, detection_dir: Path, lfw_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A gallery built by the real builder: the face_recognition kNN people + a few LFW people."""
    from facesim.gallery.cli import main as gallery_main

    out = tmp_path_factory.mktemp("tiny-gallery") / "gallery"
    knn_train = detection_dir / "face_recognition" / "examples" / "knn_examples" / "train"
    people = [arg for name in GALLERY_LFW_PEOPLE for arg in ("--identity", name)]
    knn_people = [arg for folder in sorted(knn_train.iterdir()) for arg in ("--identity", folder.name)]
    code = gallery_main(
        [
            "build",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(knn_train),
            "--data",
            str(lfw_dir),
            *knn_people,
            *people,
            "--max-images-per-identity",
            "3",
            "--out",
            str(out),
            "--yunet",
            str(yunet_path),
        ]
    )
    assert code == 0, "facesim gallery build failed for the tiny gallery"
    return out


@pytest.fixture(scope="session")
def predictor_url(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of `facesim serve` serving the tiny model and a copy of the tiny gallery
    (enrolments don't leak into tiny_gallery_dir), with its own FACESIM_HOME."""
    from tests.helpers.admin import own_predictor

    with own_predictor(tiny_model_dir, tiny_gallery_dir, yunet_path, tmp_path_factory.mktemp("predictor")) as url:
        yield url


@pytest.fixture(scope="session")
def predictor_log(predictor_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the `predictor_url` server printed (its terminal), in the folder that fixture made first."""
    return tmp_path_factory.getbasetemp() / "predictor0" / "predictor.log"


# --- a sliver of LFW (pipeline and tuning) ---------------------------------------------------


@pytest.fixture(scope="session")
def lfw_sliver(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LFW-layout root (10 people sets, 10 pair folds) over ~200 linked shared images."""
    from tests.helpers.lfw_sliver import make_lfw_sliver

    return make_lfw_sliver(lfw_dir, tmp_path_factory.mktemp("lfw-sliver"))


# A real PostgreSQL server for the shared-gallery tests (started here, never skipped).
@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A throwaway server for the whole session (initdb in a temporary directory, torn down after)."""
    with local_postgres() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """A new, empty database for one test."""
    if not request.node.get_closest_marker("integration"):  # asked for by name at run time (getfixturevalue)
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL: mark it (or its parameter) integration")
    return postgres.create_database(f"gallery_{uuid.uuid4().hex[:12]}")
