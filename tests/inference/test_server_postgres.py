"""Predictor replicas sharing one PostgreSQL gallery: real `facesim serve` processes, a real server
(started by the test setup), real photos, the tiny model."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from facesim.benchmarks.postgres_local import LocalPostgres
from facesim.contract.client import PredictorClient
from facesim.gallery.cli import main as gallery_main
from facesim.inference.local_server import RunningPredictor, start_predictor
from tests.helpers.admin import AUTH, TEST_ADMIN_TOKEN
from tests.helpers.kill_mid_enrolment import kill_predictor_mid_enrolment

GALLERY = "/v1/models/facenet/gallery"
POLL_S = 1.0
# The stated bound (docs/gallery.md): within the poll interval plus the time to read the change;
# a notification usually makes it milliseconds. One second of slack for a loaded CI machine.
DELAY_S = POLL_S + 1.0


@pytest.fixture(scope="module")
def shared_gallery(postgres: LocalPostgres, tiny_model_dir: Path) -> str:
    dsn = postgres.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    assert gallery_main(["init", "--model", str(tiny_model_dir), "--out", dsn]) == 0
    return dsn


@pytest.fixture(scope="module")
def photo(detection_dir: Path) -> str:
    return base64.b64encode(
        (detection_dir / "face_recognition" / "examples" / "alex-lacamoire.png").read_bytes()
    ).decode()


def start_replica(model: Path, dsn: str, yunet: Path, log: Path) -> RunningPredictor:
    env = {
        "FACESIM_YUNET_MODEL": str(yunet),
        "FACESIM_HOME": str(log.parent / "home"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "FACESIM_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
    }
    return start_predictor(model, dsn, ("--gallery-poll-s", str(POLL_S)), env, log)


@pytest.fixture(scope="module")
def replicas(
    shared_gallery: str, tiny_model_dir: Path, yunet_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    logs = tmp_path_factory.mktemp("replicas")
    with ThreadPoolExecutor(2) as pool:
        running = list(
            pool.map(lambda name: start_replica(tiny_model_dir, shared_gallery, yunet_path, logs / f"{name}.log"), "ab")
        )
    yield [replica.url for replica in running]
    for replica in running:
        replica.stop()


def enrol(url: str, name: str, photo: str) -> requests.Response:
    return requests.post(url + GALLERY, headers=AUTH, json={"identity": name, "images": [{"b64": photo}]}, timeout=60)


def top_identity(url: str, photo: str) -> str | None:
    matches = PredictorClient(url).predict(base64.b64decode(photo), top_k=1)["predictions"][0]["faces"][0]["matches"]
    return matches[0]["identity"] if matches else None


def listed(url: str) -> dict[str, int]:
    return {item["identity"]: item["count"] for item in requests.get(url + GALLERY, timeout=10).json()["identities"]}


def seconds_until(condition: Callable[[], bool], limit_s: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit_s + 5, "never happened"
    return time.monotonic() - start


def test_postgres_enrolment_on_replica_a_is_found_on_replica_b_then_removal_leaves_both(
    replicas: list[str], photo: str
) -> None:
    a, b = replicas
    name = f"enrolled on a {uuid.uuid4().hex[:6]}"
    assert enrol(a, name, photo).status_code == 200
    assert top_identity(a, photo) == name  # the replica that acknowledged it: at once
    assert seconds_until(lambda: top_identity(b, photo) == name, DELAY_S) <= DELAY_S
    removed = requests.delete(b + GALLERY, headers=AUTH, params={"identity": name}, timeout=10)
    assert removed.json() == {"identity": name, "removed": 1}
    assert top_identity(b, photo) != name
    assert seconds_until(lambda: top_identity(a, photo) != name, DELAY_S) <= DELAY_S
    assert name not in listed(a) and name not in listed(b)
    assert requests.delete(a + GALLERY, headers=AUTH, params={"identity": name}, timeout=10).status_code == 404


def test_postgres_both_replicas_enrol_one_name_at_once_and_every_enrolment_lands(
    replicas: list[str], photo: str
) -> None:
    name = f"enrolled on both {uuid.uuid4().hex[:6]}"
    targets = replicas * 3
    with ThreadPoolExecutor(len(targets)) as pool:
        answers = list(pool.map(lambda url: enrol(url, name, photo), targets))
    assert [answer.status_code for answer in answers] == [200] * len(targets)
    assert sorted(answer.json()["count"] for answer in answers) == list(range(1, len(targets) + 1))
    assert listed(replicas[0])[name] == listed(replicas[1])[name] == len(targets)
    requests.delete(replicas[0] + GALLERY, headers=AUTH, params={"identity": name}, timeout=10)


def test_postgres_kill_9_of_a_replica_mid_enrolment_loses_nothing_acknowledged(
    replicas: list[str], shared_gallery: str, tiny_model_dir: Path, yunet_path: Path, photo: str, tmp_path: Path
) -> None:
    doomed = start_replica(tiny_model_dir, shared_gallery, yunet_path, tmp_path / "doomed.log")
    acknowledged = kill_predictor_mid_enrolment(doomed, photo, clients=3, at_least=9)
    assert len(acknowledged) >= 9
    survivors = listed(replicas[0])
    assert all(survivors.get(name) == 1 for name in acknowledged)
    assert all(count == 1 for name, count in survivors.items() if name.startswith("client "))  # none half-written
