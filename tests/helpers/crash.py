"""Crash tests: stop a process at a named point (the FACESIM_TEST_PAUSE hook, storage/faults.py),
prove it stopped there, SIGKILL it, and check what it left behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from facesim.storage.faults import PAUSE_VARIABLE


def pause_env(point: str, occurrence: int, marker: Path) -> dict[str, str]:
    """Environment that pauses a process the `occurrence`-th time it reaches `point`."""
    return {PAUSE_VARIABLE: f"{point}:{occurrence}:{marker}"}


def wait_for_pause(marker: Path, process: subprocess.Popen, timeout_s: float = 120) -> int:
    """The pid that reached the pause point (the process must still be running)."""
    deadline = time.monotonic() + timeout_s
    while not (marker.exists() and marker.read_text()):
        assert process.poll() is None, f"exited with {process.returncode} before reaching the pause point"
        assert time.monotonic() < deadline, "the pause point was never reached"
        time.sleep(0.02)
    return int(marker.read_text())


def kill_9(pid: int, process: subprocess.Popen) -> None:
    os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)


def kill_9_while_paused(writer: subprocess.Popen, marker: Path, while_paused: Callable[[], None]) -> list[str]:
    """Wait for `writer` (its stdout a pipe) to pause, run `while_paused` (the checks of what the
    open transaction shows others), SIGKILL it there; returns what it printed (its acknowledgements)."""
    try:
        assert wait_for_pause(marker, writer) == writer.pid
        while_paused()
        kill_9(writer.pid, writer)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    return writer.stdout.read().split()


def write_transaction_open(database: Path) -> bool:
    """Whether some connection holds the database's write lock, i.e. is between BEGIN and COMMIT."""
    probe = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error), error
        return True
    finally:
        probe.close()


def integrity_check(database: Path) -> str:
    """SQLite's own check (opening the file also rolls back what a killed writer left half done)."""
    with sqlite3.connect(database) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def orphan_embeddings(database: Path) -> int:
    """Embedding rows whose identity row is missing: what a half-written enrolment would leave."""
    with sqlite3.connect(database) as db:
        query = "SELECT COUNT(*) FROM embeddings WHERE identity NOT IN (SELECT name FROM identities)"
        return db.execute(query).fetchone()[0]
