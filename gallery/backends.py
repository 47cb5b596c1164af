"""Opening a gallery by its location: a directory (SQLite, store.py) or a PostgreSQL DSN (postgres.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from facesim.gallery.api import Gallery, GalleryError, GalleryInfo, GalleryUnavailable, is_postgres
from facesim.gallery.store import GalleryStore

# A replica starting while its database is down retries this often at most (so it is ready soon after).
MAX_OPEN_BACKOFF_S = 2.0

log = logging.getLogger(__name__)


def open_gallery(location: str | Path) -> Gallery:
    """A gallery directory (SQLite) or a PostgreSQL DSN."""
    if is_postgres(location):
        from facesim.gallery.postgres import PostgresGallery

        return PostgresGallery(str(location))
    return GalleryStore(location)


def wait_for_gallery(location: str | Path, wait_s: float) -> Gallery:
    """Open a gallery whose database may still be starting: retry with backoff (doubling from 0.25 s
    to MAX_OPEN_BACKOFF_S) for up to `wait_s` seconds, then give up saying why."""
    deadline, delay, logged = time.monotonic() + wait_s, 0.25, False
    while True:
        try:
            return open_gallery(location)
        except GalleryUnavailable as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GalleryError(
                    f"gave up after waiting {wait_s:g} s for the gallery database (--gallery-wait-s): {error.detail}"
                ) from None
            if not logged:
                log.warning("waiting up to %g s for the gallery database: %s", wait_s, error.detail)
                logged = True
            time.sleep(min(delay, left))
            delay = min(2 * delay, MAX_OPEN_BACKOFF_S)


def create_gallery(location: str | Path, info: GalleryInfo) -> Gallery:
    if is_postgres(location):
        from facesim.gallery.postgres import PostgresGallery

        return PostgresGallery.create(str(location), info)
    return GalleryStore.create(location, info)
