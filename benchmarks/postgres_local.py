"""A throwaway PostgreSQL server on this machine (tests, `facesim bench faults`): initdb in a
temporary directory, a free port on 127.0.0.1, stopped (and `-m immediate` killed) on demand.

Debian's server package (scripts/install-tools.sh installs `postgresql-15`). PostgreSQL refuses to
run as root, so as root the server runs as the package's `postgres` user (runuser); the data
directory lives under /tmp, which that user can reach (pytest's own temporary directories are
private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from facesim.inference.local_server import free_port

SUPERUSER = "facesim"


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server installed: run scripts/install-tools.sh (it installs postgresql-15)")
    return Path(found[-1]).parent


@dataclass
class LocalPostgres:
    """One server: `start()` / `stop(mode)` as often as wanted; `data_dir` is what it keeps on disk."""

    root: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def init(self) -> LocalPostgres:
        sockets = self.root / "sockets"
        sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        initdb = [str(server_binaries() / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"]
        _run(self._as_owner() + initdb + ["-E", "UTF8", "--no-sync"])
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root / 'sockets'} -c listen_addresses={self.host} -c fsync=off "
            "-c max_connections=200"
        )
        _run([*self._pg_ctl(), "-l", str(self.root / "server.log"), "-o", options, "start"])

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: as a crash (no checkpoint; the next start recovers from the WAL)."""
        _run([*self._pg_ctl(), "-m", mode, "stop"])

    def _pg_ctl(self) -> list[str]:
        return [*self._as_owner(), str(server_binaries() / "pg_ctl"), "-D", str(self.data_dir), "-w"]

    @staticmethod
    def _as_owner() -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def local_postgres() -> Iterator[LocalPostgres]:
    """A new server, started; stopped and deleted after."""
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="facesim-postgres-"))).init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # stopped already (a test or bench stopped it and left it so)
            server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
