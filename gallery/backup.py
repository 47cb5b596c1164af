"""`facesim gallery backup|restore`: a consistent copy of a gallery while it is served, and back.

A backup is a gallery directory (gallery.json, with the model fingerprint `model_version` and the
gallery's calibration, + gallery.sqlite) plus `backup.json` saying what was copied and when, so
it can be served or inspected as it is. From SQLite it is SQLite's online backup API (a snapshot
of the pages as of one moment, taken while writers go on); from PostgreSQL the rows are read in
one REPEATABLE READ snapshot by the gallery's own code. A restore refuses a gallery of another
model (its embeddings live in another space). Removed identities are in no backup taken after the
removal (removed rows are zeroed, secure_delete), and a restore into a served PostgreSQL gallery
makes every replica read the gallery again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from facesim.gallery.api import GalleryError, GallerySnapshot, is_postgres, redacted
from facesim.gallery.backends import open_gallery
from facesim.gallery.store import DATABASE_NAME, GalleryStore, sqlite_connect

BACKUP_MANIFEST = "backup.json"


@dataclass(frozen=True)
class BackupSummary:
    """backup.json: what a backup holds."""

    source: str  # the gallery it was taken from (a DSN without its password)
    taken: str
    model_version: str
    version: int  # the gallery's change counter at the snapshot
    identities: int
    embeddings: int


def backup_gallery(location: Path | str, out: Path) -> BackupSummary:
    """Copy a gallery (served or not) into the new directory `out`."""
    gallery = open_gallery(location)
    with _staging(out) as staging:
        if isinstance(gallery, GalleryStore):
            with (
                closing(sqlite_connect(gallery.directory / DATABASE_NAME)) as source,
                closing(sqlite_connect(staging / DATABASE_NAME)) as copy,
            ):
                source.backup(copy)  # the online backup API: one consistent snapshot
            shutil.copy2(gallery.directory / "gallery.json", staging / "gallery.json")
        else:
            snapshot = gallery.snapshot()
            _write_rows(GalleryStore.create(staging, snapshot.info), snapshot)
        summary = _summary(GalleryStore(staging), redacted(location))
        (staging / BACKUP_MANIFEST).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def restore_gallery(backup: Path, out: Path | str, model_versions: Collection[str] | None = None) -> BackupSummary:
    """Restore a backup into a new directory, a PostgreSQL database, or the PostgreSQL gallery of the
    same model (whose rows it replaces in one transaction). `model_versions`: refuse unless it is one of
    that model's fingerprints (storage.model_artifact.ModelInfo.fingerprints)."""
    source = _backup_gallery(backup)
    if model_versions is not None and source.info.model_version not in model_versions:
        given = ", ".join(model_versions)
        raise GalleryError(_other_model(backup, source.info.model_version, f"the model given ({given})"))
    if is_postgres(out):
        from facesim.gallery.postgres import restore_into

        restore_into(
            str(out), source.snapshot(), lambda theirs: _other_model(backup, source.info.model_version, theirs)
        )
    else:
        out = Path(out)
        if (out / "gallery.json").is_file():
            theirs = GalleryStore(out).info.model_version
            if theirs != source.info.model_version:
                raise GalleryError(_other_model(backup, source.info.model_version, f"the gallery at {out} ({theirs})"))
            raise GalleryError(f"{out} already holds a gallery: restore into a new directory")
        with _staging(out) as staging:
            with (
                closing(sqlite_connect(source.directory / DATABASE_NAME)) as origin,
                closing(sqlite_connect(staging / DATABASE_NAME)) as copy,
            ):
                origin.backup(copy)
            shutil.copy2(source.directory / "gallery.json", staging / "gallery.json")
    return _summary(source, str(backup))


def _other_model(backup: Path, ours: str, theirs: str) -> str:
    return (
        f"{backup} holds embeddings of model {ours}, not of {theirs}: embeddings of two models live in "
        "different spaces. Restore into a new directory or empty database, or serve the backup's model"
    )


def _backup_gallery(backup: Path) -> GalleryStore:
    if not (backup / BACKUP_MANIFEST).is_file():
        raise GalleryError(
            f"{backup} is not a gallery backup (no {BACKUP_MANIFEST}): make one with `facesim gallery backup`"
        )
    return GalleryStore(backup)


def _summary(gallery: GalleryStore, source: str) -> BackupSummary:
    identities = gallery.identities()
    return BackupSummary(
        source=source,
        taken=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model_version=gallery.info.model_version,
        version=gallery.counters()[0],
        identities=len(identities),
        embeddings=sum(count for _, count in identities),
    )


def _write_rows(store: GalleryStore, snapshot: GallerySnapshot) -> None:
    with closing(sqlite_connect(store.directory / DATABASE_NAME)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO identities(name, thumbnail) VALUES (?, ?)", snapshot.identities)
        db.executemany("INSERT INTO embeddings(id, identity, vector, source) VALUES (?, ?, ?, ?)", snapshot.embeddings)
        db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (snapshot.version,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'removals'", (snapshot.removals,))
        db.execute("COMMIT")


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A new directory written aside and renamed into place when complete (removed on failure)."""
    if out.exists() and any(out.iterdir()):
        raise GalleryError(f"{out} exists and is not empty: choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    staging.rename(out)
