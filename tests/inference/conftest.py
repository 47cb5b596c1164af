"""Inference fixtures: a real PostgreSQL server for the shared-gallery tests (started here, never skipped)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.postgres_server import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway server for the whole session (initdb in a temporary directory, torn down after)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres: PostgresServer) -> str:
    """A new, empty database for one test."""
    return postgres.create_database(f"gallery_{uuid.uuid4().hex[:12]}")
