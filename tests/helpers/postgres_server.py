"""A throwaway PostgreSQL server for tests (facesim.benchmarks.postgres_local: initdb in a temporary
directory, a free port, stopped after)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from facesim.benchmarks.postgres_local import LocalPostgres, local_postgres

PostgresServer = LocalPostgres


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    with local_postgres() as server:
        yield server
