"""A PostgreSQL outage seen through a real `facesim serve` replica: a start that waits for the
database, 503s naming nothing while it is down, predicts answered from the index, idempotent
retries by facesim's own client through the outage."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from facesim.benchmarks.postgres_local import local_postgres
from facesim.contract.api import GALLERY_UNAVAILABLE
from facesim.contract.client import PredictorClient, PredictorError
from facesim.gallery.cli import main as gallery_main
from tests.helpers.admin import AUTH, TEST_ADMIN_TOKEN
from tests.inference.test_server_postgres import GALLERY, start_replica

METADATA = "/v1/models/facenet"
OUTAGE_LOG_LINE = "unreachable (answering 503"


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(0.2)


def _writable(url: str) -> bool:
    return requests.get(url + METADATA, timeout=10).json()["gallery_writable"]


def test_database_outage_is_a_503_and_retries_never_duplicate(
    tiny_model_dir: Path, yunet_path: Path, detection_dir: Path, tmp_path: Path
) -> None:
    photo = (detection_dir / "face_recognition" / "examples" / "alex-lacamoire.png").read_bytes()
    body = {"identity": "Alex", "images": [{"b64": base64.b64encode(photo).decode()}]}
    log = tmp_path / "replica.log"
    with local_postgres() as database:
        dsn = database.create_database("outage")
        assert gallery_main(["init", "--model", str(tiny_model_dir), "--out", dsn]) == 0
        database.stop("immediate")
        # A replica started while the database is down waits for it, then is ready soon after it starts.
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(start_replica, tiny_model_dir, dsn, yunet_path, log)
            _wait_for(lambda: log.exists() and "waiting up to 120 s" in log.read_text(), 120, "the wait")
            database.start()
            database_up = time.monotonic()
            replica = starting.result()
        assert time.monotonic() - database_up <= 10
        try:
            url = replica.url
            assert _writable(url)
            # Same key and body: the first answer, nothing changed; same key, other body: 422.
            key = {**AUTH, "Idempotency-Key": "enrol-alex-1"}
            first = requests.post(url + GALLERY, json=body, headers=key, timeout=60)
            again = requests.post(url + GALLERY, json=body, headers=key, timeout=60)
            assert first.status_code == again.status_code == 200 and again.json() == first.json()
            other = requests.post(url + GALLERY, json={**body, "identity": "Bea"}, headers=key, timeout=60)
            assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]
            bad_key = requests.post(
                url + GALLERY, json=body, headers={**AUTH, "Idempotency-Key": "k" * 256}, timeout=60
            )
            assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json()["error"]

            database.stop("immediate")
            _wait_for(lambda: not _writable(url), 10, "gallery_writable false")
            answers = [
                requests.post(url + GALLERY, json=body, headers=AUTH, timeout=60),
                requests.delete(url + GALLERY, params={"identity": "Alex"}, headers=AUTH, timeout=60),
                requests.get(url + GALLERY, timeout=10),
                requests.get(url + GALLERY + "/thumbnail", params={"identity": "Alex"}, timeout=10),
            ]
            for answer in answers:
                assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit()
                assert answer.json() == {"error": GALLERY_UNAVAILABLE}  # no DSN, user, host, port, exception
            matches = PredictorClient(url).predict(photo)["predictions"][0]["faces"][0]["matches"]
            assert matches[0]["identity"] == "Alex"  # predicts answer from the index
            client = PredictorClient(url, admin_token=TEST_ADMIN_TOKEN)
            client.retries = type(client.retries)(attempts=1)
            try:
                client.enrol("Bea", [photo])
                raise AssertionError("an enrolment succeeded while the database was down")
            except PredictorError as error:
                assert error.unavailable and str(error) == GALLERY_UNAVAILABLE

            # facesim's client retries with one key through the outage: enrolled once.
            with ThreadPoolExecutor(1) as pool:
                retrying = pool.submit(PredictorClient(url, admin_token=TEST_ADMIN_TOKEN).enrol, "Bea", [photo])
                time.sleep(1.5)
                database.start()
                assert retrying.result()["count"] == 1
            listing = {
                item["identity"]: item["count"] for item in requests.get(url + GALLERY, timeout=10).json()["identities"]
            }
            assert listing == {"Alex": 1, "Bea": 1}
            _wait_for(lambda: _writable(url), 10, "gallery_writable true again")
            assert log.read_text().count(OUTAGE_LOG_LINE) == 1  # once per outage, not per request
        finally:
            replica.stop()
