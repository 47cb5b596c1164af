"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, a free port, stopped after.

Debian's server package (scripts/setup.sh installs it). PostgreSQL refuses to run as root, so as
root the server runs as the package's `postgres` user (runuser); the data directory lives under
/tmp, which that user can reach (pytest's own temporary directories are private to root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from facesim.inference.local_server import free_port

SUPERUSER = "facesim"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server installed: run scripts/setup.sh (it installs postgresql-15)")
    return Path(found[-1]).parent


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    binaries = server_binaries()
    root = Path(tempfile.mkdtemp(prefix="facesim-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    _run(
        run_as + [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    pg_ctl = run_as + [str(binaries / "pg_ctl"), "-D", str(data), "-w"]
    _run(pg_ctl + ["-l", str(root / "server.log"), "-o", options, "start"])
    try:
        yield PostgresServer("127.0.0.1", port)
    finally:
        _run(pg_ctl + ["-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
