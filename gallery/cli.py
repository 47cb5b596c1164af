"""`facesim gallery build|init|list|calibrate|purge|backup|restore`: embed identity folders into a
gallery artifact, show one, erase removed rows for good, copy one and restore it."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesim.faces.detect import add_yunet_argument
from facesim.faces.image import ImageError, read_image, thumbnail_jpeg
from facesim.faces.preprocess import FacePreprocessor
from facesim.gallery.api import (
    Gallery,
    GalleryError,
    GalleryInfo,
    GalleryUnavailable,
    gallery_location,
    is_postgres,
    redacted,
)
from facesim.gallery.backends import create_gallery, open_gallery
from facesim.gallery.index import DEFAULT_APPROXIMATE_THRESHOLD, LiveGalleryIndex
from facesim.gallery.store import GalleryStore
from facesim.storage.datasets import IdentityDataset
from facesim.storage.lfw import LfwLayout
from facesim.storage.model_artifact import Embedder, ModelError, preprocessor_for, read_model_info

EMBED_BATCH = 64
FEATURED = 8


@dataclass(frozen=True)
class BuildOptions:
    max_images_per_identity: int = 10
    min_images: int = 1
    limit_identities: int | None = None
    identities: tuple[str, ...] = ()  # only these (all of a root when empty)


@dataclass
class BuildReport:
    identities: int = 0
    embeddings: int = 0
    images_skipped: list[str] = field(default_factory=list)  # unreadable, or no usable face
    identities_skipped: list[str] = field(default_factory=list)  # fewer than min_images faces


def identity_folders(data_dirs: list[Path], options: BuildOptions) -> dict[str, list[Path]]:
    """identity -> image paths over every data root (an LFW root means its images folder), the
    identities with the most images first."""
    found: dict[str, list[Path]] = {}
    for root in data_dirs:
        images_root = LfwLayout.find(root).images if (root / "pairs.txt").is_file() else root
        for name, paths in IdentityDataset.scan(images_root).identities.items():
            if not options.identities or name in options.identities:
                found.setdefault(name, []).extend(paths)
    missing = set(options.identities) - set(found)
    if missing:
        raise FileNotFoundError(
            f"identities not found under {', '.join(map(str, data_dirs))}: {', '.join(sorted(missing))}"
        )
    chosen = most_photographed(found, options.limit_identities)
    return {name: found[name][: options.max_images_per_identity] for name in chosen}


def most_photographed(found: dict[str, list[Path]], limit: int | None) -> list[str]:
    """The `limit` identities with the most images (all when None), most first, ties by name. A demo
    gallery then holds the people a visitor is likeliest to try (LFW: George_W_Bush, Colin_Powell, ...)."""
    return sorted(found, key=lambda name: (-len(found[name]), name))[:limit]


@dataclass(frozen=True)
class IndexOptions:
    """The FAISS index saved with a new gallery, so the first `facesim serve` loads it instead of building it."""

    directory: Path | None = None  # default: index/ inside a gallery directory; none for PostgreSQL
    approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD


def build_gallery(
    model_dir: Path,
    data_dirs: list[Path],
    out: Path | str,
    options: BuildOptions,
    yunet_path: str | None = None,
    index: IndexOptions = IndexOptions(),
) -> BuildReport:
    """Embed each identity's images into a new gallery: a directory (written aside, then renamed) or a
    PostgreSQL database (filled identity by identity, each in its own transaction)."""
    folders = identity_folders(data_dirs, options)
    if not folders:
        raise FileNotFoundError(f"no identity folders with images under {', '.join(map(str, data_dirs))}")
    info = read_model_info(model_dir)
    source = {
        "data": [str(d) for d in data_dirs],
        "options": options.__dict__ | {"identities": list(options.identities)},
        "featured": list(folders)[:FEATURED],  # the most photographed: the UI's sample searches
    }
    gallery_info = GalleryInfo(model_version=info.version, embedding_dim=info.embedding_dim, source=source)
    embed = _Embedding(preprocessor_for(info, yunet_path), Embedder(info))
    if is_postgres(out):
        store = create_gallery(str(out), gallery_info)
        report = _fill(store, folders, embed, options)
        save_gallery_index(store, index.directory, index.approximate_threshold)
        return report
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GalleryError(f"{out} exists and is not empty: choose a new --out (galleries are versioned artifacts)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        store = GalleryStore.create(staging, gallery_info)
        report = _fill(store, folders, embed, options)
        save_gallery_index(store, index.directory or staging / "index", index.approximate_threshold)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


@dataclass(frozen=True)
class _Embedding:
    preprocessor: FacePreprocessor
    embedder: Embedder


def _fill(store: Gallery, folders: dict[str, list[Path]], embed: _Embedding, options: BuildOptions) -> BuildReport:
    report = BuildReport()
    progress = tqdm(total=sum(map(len, folders.values())), desc="gallery", unit="img")
    for name, paths in folders.items():
        _add_identity(store, name, paths, embed.preprocessor, embed.embedder, options, report)
        progress.update(len(paths))
    progress.close()
    return report


def save_gallery_index(store: Gallery, directory: Path | None, approximate_threshold: int) -> Path | None:
    """Build and save the gallery's FAISS index (nothing below the threshold: exact search needs none)."""
    if directory is None:
        return None
    live = LiveGalleryIndex(store, approximate_threshold, directory)
    live.refresh()
    return live.save()


def _add_identity(
    store: Gallery,
    name: str,
    paths: list[Path],
    preprocessor: FacePreprocessor,
    embedder: Embedder,
    options: BuildOptions,
    report: BuildReport,
) -> None:
    """Embed one identity's usable images and add them in one transaction (or skip the identity)."""
    crops: list[np.ndarray] = []
    sources: list[str] = []
    thumbnail: bytes | None = None
    for path in paths:
        try:
            rgb = read_image(path)
        except ImageError as error:
            report.images_skipped.append(str(error))
            continue
        face = preprocessor.subject_face(rgb)
        if face is None:
            report.images_skipped.append(f"{path}: no face found")
            continue
        crops.append(face.crop)
        sources.append(path.name)
        thumbnail = thumbnail or thumbnail_jpeg(rgb, face.face)
    if len(crops) < max(1, options.min_images):
        report.identities_skipped.append(name)
        return
    vectors = np.concatenate(
        [embedder.embed(np.stack(crops[i : i + EMBED_BATCH])) for i in range(0, len(crops), EMBED_BATCH)]
    )
    store.add(name, vectors, thumbnail=thumbnail, sources=sources)
    report.identities += 1
    report.embeddings += len(vectors)


OUT_HELP = (
    "new gallery: a directory (SQLite, one machine), or a PostgreSQL DSN postgresql://USER@HOST:PORT/DB "
    "(an empty database, shared by predictor replicas; a password may come from $PGPASSWORD)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesim gallery", description="Build and inspect identity galleries.")
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = commands.add_parser(
        "build",
        help="embed identity folders into a new gallery",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument("--model", required=True, type=Path, help="model artifact directory")
    build.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="folder of identity folders, or an LFW root (repeat to combine several)",
    )
    build.add_argument("--out", required=True, type=gallery_location, help=OUT_HELP)
    build.add_argument("--max-images-per-identity", type=int, default=BuildOptions.max_images_per_identity)
    build.add_argument(
        "--min-images", type=int, default=BuildOptions.min_images, help="skip identities with fewer usable face images"
    )
    build.add_argument(
        "--limit-identities", type=int, default=None, help="keep the N identities with the most images (ties by name)"
    )
    build.add_argument("--identity", action="append", default=[], help="only this identity (repeatable)")
    add_yunet_argument(build)
    build.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="also register the gallery in the local registry under NAME (what `facesim serve` "
        "uses by default is NAME=default)",
    )
    build.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="save the FAISS index here (default: index/ inside a gallery directory; for PostgreSQL only "
        "when given, e.g. a volume the replicas share as `facesim serve --index-dir`)",
    )
    build.add_argument(
        "--approximate-threshold",
        type=int,
        default=DEFAULT_APPROXIMATE_THRESHOLD,
        help="save an index when the gallery holds at least this many embeddings (below, search is exact)",
    )
    init = commands.add_parser("init", help="create an empty gallery for a model (to fill by enrolment)")
    init.add_argument("--model", required=True, type=Path, help="model artifact directory")
    init.add_argument("--out", required=True, type=gallery_location, help=OUT_HELP)
    init.add_argument("--register", metavar="NAME", default=None, help="also register it in the local registry")
    show = commands.add_parser("list", help="list a gallery's identities and counts")
    show.add_argument("--gallery", required=True, type=gallery_location, help="gallery directory or PostgreSQL DSN")
    purge = commands.add_parser(
        "purge",
        help="rewrite a gallery's files so that removed identities leave no copy (PostgreSQL: VACUUM FULL)",
        description="PostgreSQL keeps removed rows' old versions in its table, index and TOAST files until "
        "they are rewritten: this rewrites the gallery's tables (an exclusive lock while it runs; writes and "
        "reads wait) and checkpoints. SQLite galleries zero removed rows at once; this compacts the file. "
        "WAL segments and base backups are not touched (docs/gallery.md, Erasure).",
    )
    purge.add_argument("gallery", type=gallery_location, help="gallery directory or PostgreSQL DSN")
    backup = commands.add_parser(
        "backup",
        help="a consistent copy of a gallery, also while it is served",
        description="Copy a gallery (directory or PostgreSQL DSN) into the new directory OUT: a gallery "
        "directory (SQLite, with the model fingerprint and calibration in gallery.json) and backup.json. "
        "Writers go on meanwhile; the copy is one snapshot.",
    )
    backup.add_argument("gallery", type=gallery_location, help="gallery directory or PostgreSQL DSN")
    backup.add_argument("out", type=Path, help="new directory for the backup")
    restore = commands.add_parser(
        "restore",
        help="restore a backup into a new directory or a PostgreSQL database",
        description="Restore a `facesim gallery backup` into a new directory, an empty PostgreSQL database, "
        "or the PostgreSQL gallery of the same model (its rows are replaced in one transaction; serving "
        "replicas read it again). A gallery of another model is refused.",
    )
    restore.add_argument("backup", type=Path, help="backup directory (from `facesim gallery backup`)")
    restore.add_argument("--out", required=True, type=gallery_location, help="new directory or PostgreSQL DSN")
    restore.add_argument("--model", type=Path, default=None, help="refuse unless the backup is this model's")
    calibrate = commands.add_parser(
        "calibrate",
        help="choose the gallery's own same-person threshold at a target false-accept rate",
        description="Threshold at --far from the gallery's genuine pairs (same identity) and impostor pairs "
        "(different identities), recorded in gallery.json; the predictor then decides with it. "
        "Refuses when the pairs are too few for that rate.",
    )
    calibrate.add_argument("--gallery", required=True, type=Path, help="gallery directory")
    calibrate.add_argument("--far", type=float, default=1e-3, help="target false-accept rate (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        actions = {
            "build": _build_main,
            "init": _init_main,
            "list": _list_main,
            "calibrate": _calibrate_main,
            "purge": _purge_main,
            "backup": _backup_main,
            "restore": _restore_main,
        }
        return actions[args.action](args)
    except (GalleryError, ModelError, FileNotFoundError, ValueError) as error:
        print(f"facesim gallery: {error}", file=sys.stderr)
        return 2
    except GalleryUnavailable as error:
        print(f"facesim gallery: {error.detail}", file=sys.stderr)
        return 3


def _build_main(args: argparse.Namespace) -> int:
    for name, value in (("--max-images-per-identity", args.max_images_per_identity), ("--min-images", args.min_images)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
    options = BuildOptions(args.max_images_per_identity, args.min_images, args.limit_identities, tuple(args.identity))
    _check_register(args)
    index = IndexOptions(args.index_dir, args.approximate_threshold)
    report = build_gallery(args.model, args.data, args.out, options, args.yunet_path, index)
    print(f"gallery {redacted(args.out)}: {report.identities} identities, {report.embeddings} embeddings")
    if report.images_skipped:
        print(
            f"  {len(report.images_skipped)} images skipped (unreadable or no usable face), e.g. {report.images_skipped[0]}"
        )
    if report.identities_skipped:
        print(f"  {len(report.identities_skipped)} identities with fewer than {args.min_images} faces (skipped)")
    _register(args)
    return 0


def _init_main(args: argparse.Namespace) -> int:
    _check_register(args)
    info = read_model_info(args.model)
    if not is_postgres(args.out) and args.out.exists() and any(args.out.iterdir()):
        raise GalleryError(f"{args.out} exists and is not empty: choose a new --out")
    store = create_gallery(
        args.out,
        GalleryInfo(
            model_version=info.version,
            embedding_dim=info.embedding_dim,
            source={"data": [], "note": "created empty (facesim gallery init)"},
        ),
    )
    print(f"gallery {store.location}: empty, for model {info.version}")
    _register(args)
    return 0


def _check_register(args: argparse.Namespace) -> None:
    if args.register and is_postgres(args.out):
        raise GalleryError(
            "--register takes gallery directories; give a PostgreSQL gallery to `facesim serve --gallery`"
        )


def _calibrate_main(args: argparse.Namespace) -> int:
    from facesim.gallery.calibrate import calibrate_gallery

    result = calibrate_gallery(GalleryStore(args.gallery), args.far)
    print(
        f"gallery {args.gallery}: threshold {result.threshold:.4f} at FAR {result.far:.2e} (target {result.target_far:g}), "
        f"TAR {result.tar:.3f}, from {result.genuine_pairs} genuine and {result.impostor_pairs} impostor pairs"
    )
    return 0


def _register(args: argparse.Namespace) -> None:
    if args.register:
        from facesim.storage.paths import register_gallery

        version = register_gallery(args.out, args.register)
        print(f"registered as gallery {args.register} {version}")


def _purge_main(args: argparse.Namespace) -> int:
    store = open_gallery(args.gallery)
    seconds = store.purge()
    print(f"gallery {store.location}: rewritten in {seconds:.2f} s; removed identities leave no copy in its files")
    return 0


def _backup_main(args: argparse.Namespace) -> int:
    from facesim.gallery.backup import backup_gallery

    summary = backup_gallery(args.gallery, args.out)
    print(
        f"backup {args.out}: {summary.identities} identities, {summary.embeddings} embeddings of gallery "
        f"{summary.source} at version {summary.version} (model {summary.model_version})"
    )
    return 0


def _restore_main(args: argparse.Namespace) -> int:
    from facesim.gallery.backup import restore_gallery

    model_versions = read_model_info(args.model).fingerprints if args.model else None
    summary = restore_gallery(args.backup, args.out, model_versions)
    print(
        f"gallery {redacted(args.out)}: restored {summary.identities} identities, {summary.embeddings} "
        f"embeddings (model {summary.model_version}) from {args.backup}"
    )
    return 0


def _list_main(args: argparse.Namespace) -> int:
    store = open_gallery(args.gallery)
    identities = store.identities()
    version, _ = store.counters()
    print(
        f"gallery {store.location}: version {version}, model {store.info.model_version}, "
        f"{len(identities)} identities, {sum(c for _, c in identities)} embeddings"
    )
    for name, count in identities:
        print(f"  {count:4d}  {name}")
    return 0
