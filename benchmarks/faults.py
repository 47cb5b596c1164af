"""`facesim bench faults [--postgres]`: faults outside the process, under load, on this machine.

With `--postgres`: two predictor replicas share a throwaway PostgreSQL gallery; `--predict-clients`
clients send predicts to them in turn and one writer enrols a new person every `--enrol-every-s`.
1. Database outage: PostgreSQL is stopped (`pg_ctl -m immediate`, as a crash) for `--outage-s`,
   then started. One probe enrolment is sent while it is down (so its status is always seen), and
   one as soon as `pg_ctl start` returns, retried as the writers retry: `recovery_s` is the time
   from that return to its acknowledgement (the enrolment's own detect + embed time included).
2. Replica kill: one replica gets SIGKILL mid-load; clients carry on with the other.
Always: 3. SQLite kill: a predictor on a directory gallery gets SIGKILL `--kills` times while two
writers enrol back to back, and is restarted each time.

Writers retry as facesim's client does (contract/client.py): one `Idempotency-Key` per enrolment,
sent again on a lost connection or a 503 (after `Retry-After`), to the next live replica. At the end
every acknowledged enrolment must be in the gallery once (`lost`, `duplicated`: each enrols one
photo, so a count above 1 is a duplicate). Prints one line:
`acked= lost= duplicated= predict_5xx= write_5xx_other_than_503= outage_write_status= recovery_s=`
(details on stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests

from facesim.contract.api import IDEMPOTENCY_HEADER
from facesim.contract.client import GALLERY_PATH, predict_url, v1_request
from facesim.faces.detect import add_yunet_argument
from facesim.gallery.api import GalleryInfo
from facesim.gallery.backends import create_gallery, open_gallery
from facesim.gallery.store import DATABASE_NAME
from facesim.inference.local_server import RunningPredictor, start_predictor
from facesim.storage.model_artifact import read_model_info

WRITE_DEADLINE_S = 120.0  # a writer gives up on one enrolment after this long (then it is not acked)


@dataclass(frozen=True)
class FaultsConfig:
    model_dir: Path
    photos: list[Path]
    work: Path
    postgres: bool = False
    outage_s: float = 10.0
    settle_s: float = 4.0  # load before and after each fault
    enrol_every_s: float = 0.5
    predict_clients: int = 3
    kills: int = 3
    yunet_path: str | None = None


@dataclass
class Tally:
    """What the clients saw, from every thread."""

    acked: list[str] = field(default_factory=list)
    predicts: int = 0
    predict_5xx: int = 0
    predict_unreachable: int = 0  # a killed replica: no answer at all, not a 5xx
    write_statuses: Counter = field(default_factory=Counter)
    write_5xx_other_than_503: int = 0
    outage_write_statuses: Counter = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # a 4xx: the bench's own mistake (e.g. a photo without a face)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Replicas:
    """The live predictors; clients take them in turn, skipping killed ones."""

    def __init__(self, replicas: list[RunningPredictor]):
        self.running: list[RunningPredictor | None] = list(replicas)
        self._lock = threading.Lock()

    def pick(self, turn: int) -> str | None:
        with self._lock:
            live = [replica.url for replica in self.running if replica is not None]
        return live[turn % len(live)] if live else None

    def kill(self, number: int) -> None:
        with self._lock:
            replica, self.running[number] = self.running[number], None
        if replica is None:
            raise RuntimeError(f"replica {number + 1} was killed already")
        os.kill(replica.process.pid, signal.SIGKILL)
        replica.process.wait()

    def replace(self, number: int, replica: RunningPredictor) -> None:
        with self._lock:
            self.running[number] = replica

    def stop(self) -> None:
        for replica in self.running:
            if replica is not None:
                replica.stop()


class Load:
    """Predict clients and enrolment writers running until `stop()`."""

    def __init__(self, config: FaultsConfig, replicas: Replicas, tally: Tally, token: str):
        self.config, self.replicas, self.tally, self.token = config, replicas, tally, token
        self.photo_b64 = base64.b64encode(config.photos[0].read_bytes()).decode()
        self.predict_bodies = [json.dumps(v1_request(p.read_bytes(), top_k=3)).encode() for p in config.photos]
        self.in_outage = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, writers: int, every_s: float, prefix: str, predict_clients: int) -> Load:
        targets: list[Callable[[], None]] = [partial(self._predict_loop, i) for i in range(predict_clients)]
        targets += [partial(self._write_loop, f"{prefix} w{w}", every_s) for w in range(writers)]
        self._threads = [threading.Thread(target=target, daemon=True) for target in targets]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WRITE_DEADLINE_S + 30)

    def _predict_loop(self, client: int) -> None:
        session, turn = requests.Session(), client
        while not self._stop.is_set():
            url = self.replicas.pick(turn)
            turn += 1
            if url is None:
                time.sleep(0.1)
                continue
            body = self.predict_bodies[turn % len(self.predict_bodies)]
            try:
                status = session.post(
                    predict_url(url), data=body, headers={"Content-Type": "application/json"}, timeout=60
                ).status_code
            except requests.RequestException:
                status = None
            with self.tally.lock:
                self.tally.predicts += 1
                self.tally.predict_5xx += status is not None and status >= 500
                self.tally.predict_unreachable += status is None

    def _write_loop(self, prefix: str, every_s: float) -> None:
        session, number = requests.Session(), 0
        while not self._stop.is_set():
            self.enrol(session, f"{prefix} {number}")
            number += 1
            self._stop.wait(every_s)

    def enrol(self, session: requests.Session, name: str, attempts: int = 1_000_000) -> float | None:
        """Enrol `name` until acknowledged (retrying with one key, next replica each time); the time it was acked."""
        body = json.dumps({"identity": name, "images": [{"b64": self.photo_b64}]}).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
            IDEMPOTENCY_HEADER: str(uuid.uuid4()),
        }
        deadline = time.monotonic() + WRITE_DEADLINE_S
        for turn in range(attempts):
            status, retry_after = self._attempt(session, self.replicas.pick(turn), name, body, headers)
            if status == 200:
                return time.monotonic()
            if (status is not None and 400 <= status < 500) or time.monotonic() > deadline:
                return None
            time.sleep(min(retry_after, 5.0))
        return None

    def _attempt(
        self, session: requests.Session, url: str | None, name: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, float]:
        """One try: (HTTP status, or None without an answer; seconds to wait before the next)."""
        status, retry_after = None, 0.2
        sent_in_outage = self.in_outage.is_set()
        if url is not None:
            try:
                answer = session.post(url + GALLERY_PATH, data=body, headers=headers, timeout=60)
                status, retry_after = answer.status_code, float(answer.headers.get("Retry-After", 0.2))
            except requests.RequestException:
                pass
        self._record(name, status, sent_in_outage and self.in_outage.is_set())
        return status, retry_after

    def _record(self, name: str, status: int | None, in_outage: bool) -> None:
        """`in_outage`: sent and answered while the database was down."""
        with self.tally.lock:
            self.tally.write_statuses[status] += 1
            if in_outage:
                self.tally.outage_write_statuses[status] += 1
            if status == 200:
                self.tally.acked.append(name)
            elif status is not None and 400 <= status < 500:
                self.tally.refused.append(name)
            elif status is not None and status >= 500 and status != 503:
                self.tally.write_5xx_other_than_503 += 1


@dataclass
class Outcome:
    tally: Tally
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        statuses = self.tally.outage_write_statuses
        outage = ",".join(str(s) for s in sorted(statuses, key=str)) if statuses else "-"
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.2f}"
        return (
            f"acked={len(self.tally.acked)} lost={self.lost} duplicated={self.duplicated} "
            f"predict_5xx={self.tally.predict_5xx} write_5xx_other_than_503={self.tally.write_5xx_other_than_503} "
            f"outage_write_status={outage} recovery_s={recovery}"
        )


def check_gallery(
    location: Path | str, acked: list[str], outcome: Outcome, listing: dict[str, int] | None = None
) -> None:
    """Every acknowledged enrolment in the gallery (and a replica's listing), exactly once."""
    stored = dict(open_gallery(location).identities())
    for name in acked:
        outcome.lost += name not in stored or (listing is not None and name not in listing)
        outcome.duplicated += stored.get(name, 0) > 1


def run_faults(config: FaultsConfig) -> Outcome:
    tally, token = Tally(), secrets.token_urlsafe(16)
    outcome = Outcome(tally)
    if config.postgres:
        _postgres_scenarios(config, tally, token, outcome)
    _sqlite_kills(config, tally, token, outcome)
    return outcome


def _postgres_scenarios(config: FaultsConfig, tally: Tally, token: str, outcome: Outcome) -> None:
    from facesim.benchmarks.postgres_local import local_postgres

    with local_postgres() as database:
        dsn = database.create_database("bench_faults")
        _create(dsn, config)
        with _replicas(config, dsn, token, 2, ("--gallery-poll-s", "1")) as replicas:
            load = Load(config, replicas, tally, token).start(1, config.enrol_every_s, "pg", config.predict_clients)
            try:
                time.sleep(config.settle_s)
                database.stop("immediate")
                load.in_outage.set()
                outage_ends = time.monotonic() + config.outage_s
                load.enrol(requests.Session(), "probe during the outage", attempts=1)  # at least one answer seen
                time.sleep(max(0.0, outage_ends - time.monotonic()))
                load.in_outage.clear()
                database.start()
                up = time.monotonic()
                acked_at = load.enrol(requests.Session(), "probe after the outage")
                outcome.recovery_s = None if acked_at is None else acked_at - up
                time.sleep(config.settle_s)
                replicas.kill(1)
                outcome.notes.append("replica 2 killed (SIGKILL) mid-load")
                time.sleep(config.settle_s)
            finally:
                load.stop()
            survivor = replicas.pick(0)
            if survivor is None:
                raise RuntimeError("no replica left running to list the gallery")
            listing = requests.get(survivor + GALLERY_PATH, timeout=30).json()["identities"]
        check_gallery(dsn, list(tally.acked), outcome, {item["identity"]: item["count"] for item in listing})


def _sqlite_kills(config: FaultsConfig, tally: Tally, token: str, outcome: Outcome) -> None:
    directory = config.work / "sqlite-gallery"
    _create(directory, config)
    acked_before = len(tally.acked)
    with _replicas(config, directory, token, 1) as replicas:
        load = Load(config, replicas, tally, token).start(2, 0.0, "sqlite", 0)
        try:
            for kill in range(config.kills):
                time.sleep(1.0 + kill * 0.37)  # kills land at different points of the writes
                replicas.kill(0)
                replicas.replace(0, _start(config, directory, token, f"sqlite-restart-{kill}"))
            time.sleep(1.0)
        finally:
            load.stop()
    check_gallery(directory, tally.acked[acked_before:], outcome)
    with sqlite3.connect(directory / DATABASE_NAME) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    outcome.notes.append(f"sqlite: {config.kills} kill -9 mid-enrolment, integrity_check {integrity}")


def _create(location: Path | str, config: FaultsConfig) -> None:
    info = read_model_info(config.model_dir)
    create_gallery(location, GalleryInfo(model_version=info.version, embedding_dim=info.embedding_dim))


def _start(
    config: FaultsConfig, gallery: Path | str, token: str, name: str, extra: tuple[str, ...] = ()
) -> RunningPredictor:
    env = {
        "FACESIM_ADMIN_TOKEN": token,
        "FACESIM_HOME": str(config.work / "home"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **({"FACESIM_YUNET_MODEL": config.yunet_path} if config.yunet_path else {}),
    }
    return start_predictor(config.model_dir, gallery, extra, env, config.work / f"{name}.log")


@contextmanager
def _replicas(
    config: FaultsConfig, gallery: Path | str, token: str, count: int, extra: tuple[str, ...] = ()
) -> Iterator[Replicas]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(count) as pool:
        started = list(pool.map(lambda i: _start(config, gallery, token, f"replica-{i}", extra), range(count)))
    replicas = Replicas(started)
    try:
        yield replicas
    finally:
        replicas.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim bench faults",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--postgres", action="store_true", help="also the PostgreSQL outage and the replica kill")
    parser.add_argument("--model", type=Path, help="model artifact (default: the latest registered)")
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        required=True,
        help="photos with a face (the first is enrolled); repeatable",
    )
    parser.add_argument("--outage-s", type=float, default=FaultsConfig.outage_s, help="how long the database is down")
    parser.add_argument(
        "--settle-s", type=float, default=FaultsConfig.settle_s, help="load before and after each fault"
    )
    parser.add_argument("--enrol-every-s", type=float, default=FaultsConfig.enrol_every_s)
    parser.add_argument("--predict-clients", type=int, default=FaultsConfig.predict_clients)
    parser.add_argument("--kills", type=int, default=FaultsConfig.kills, help="SQLite: kill -9 this many times")
    add_yunet_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from facesim.storage.paths import latest_model

    model = args.model or latest_model()
    if model is None:
        print("facesim bench faults: no --model and no registered model", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="facesim-bench-faults-") as work:
        config = FaultsConfig(
            model_dir=model,
            photos=args.images,
            work=Path(work),
            postgres=args.postgres,
            outage_s=args.outage_s,
            settle_s=args.settle_s,
            enrol_every_s=args.enrol_every_s,
            predict_clients=args.predict_clients,
            kills=args.kills,
            yunet_path=args.yunet_path,
        )
        outcome = run_faults(config)
    tally = outcome.tally
    for note in outcome.notes:
        print(f"# {note}", file=sys.stderr)
    print(
        f"# predicts={tally.predicts} predict_unreachable={tally.predict_unreachable} "
        f"write_statuses={dict(tally.write_statuses)} refused={len(tally.refused)}",
        file=sys.stderr,
    )
    print(outcome.line(), flush=True)
    return 0 if outcome.lost == 0 and outcome.duplicated == 0 and not tally.refused else 1
