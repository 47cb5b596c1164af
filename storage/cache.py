"""The cache of aligned face crops: `facesim data prepare` and `prepare_crops` for training.

Layout: OUT/<identity>/<stem>.png (uint8 RGB crops) + OUT/facesim-cache.json (preprocessing,
source, counts, images with no face). An LFW source's protocol files are copied in, so the cache is
itself an LFW-layout root. Each crop is written atomically, so a killed run resumes where it
stopped; crops already present are skipped.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
from tqdm import tqdm

from facesim.faces.detect import YuNetDetector
from facesim.faces.home import facesim_home
from facesim.faces.image import ImageError, read_image
from facesim.faces.preprocess import FacePreprocessor, PreprocessConfig
from facesim.storage.datasets import IdentityDataset
from facesim.storage.lfw import CACHE_MANIFEST, PROTOCOL_FILES, LfwLayout

CHUNK_IMAGES = 16
CACHE_ROOT_ENV = "FACESIM_CACHE"
# A partial crop of another host older than this was left by a killed run (writers finish theirs in
# milliseconds); younger ones may be another pod's, preparing the same shared cache right now.
STALE_PARTIAL_S = 3600.0
# Settings a cache must keep: mixing crops made differently would silently skew training.
PINNED_SETTINGS = ("image_size", "detector_used", "fallback", "template", "subject")


def cache_root() -> Path:
    """`$FACESIM_CACHE`, default `$FACESIM_HOME/cache`: where training keeps its crop caches (one per
    source and preprocessing). A TFJob sets it to the data volume, so every pod shares them."""
    return Path(os.environ.get(CACHE_ROOT_ENV) or facesim_home() / "cache").expanduser()


@dataclass
class PrepareReport:
    out_dir: Path
    detector: str
    total: int = 0  # images considered in this run
    done: int = 0  # crops written now
    skipped: int = 0  # crops already in the cache
    detected: int = 0
    fallback: int = 0  # no face found, centre crop used
    no_face: list[str] = field(default_factory=list)  # "identity/file" of sources with no crop written
    errors: dict[str, str] = field(default_factory=dict)  # "identity/file" -> why it could not be read
    median_ms: float | None = None  # detect + align per image, in the worker

    def summary(self) -> str:
        parts = [f"{self.done} done", f"{self.skipped} skipped (already cached)", f"detector {self.detector}"]
        if self.fallback:
            parts.append(f"{self.fallback} with no face found used the centre crop")
        if self.no_face:
            parts.append(f"{len(self.no_face)} with no face found were left out")
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable")
        if self.median_ms is not None:
            parts.append(f"median {self.median_ms:.1f} ms/image (detect+align)")
        return f"prepared {self.total} images into {self.out_dir}: " + ", ".join(parts)


def source_images(data_dir: Path) -> tuple[Path, LfwLayout | None]:
    """The folder of identity folders, and the LFW layout when the source is one."""
    try:
        layout = LfwLayout.find(data_dir)
    except FileNotFoundError:
        return data_dir, None
    return layout.images, layout


def resolve_config(config: PreprocessConfig) -> tuple[PreprocessConfig, dict]:
    """Pin "auto" to the detector that will run (so workers don't each search or download weights)."""
    preprocessor = FacePreprocessor(config)
    detector = preprocessor.detector
    if isinstance(detector, YuNetDetector):
        config = replace(config, detector="yunet", yunet_path=str(detector.model_path))
    else:
        config = replace(config, detector="haar")
    return config, preprocessor.describe()


def prepare_crops(
    data_dir: str | Path,
    out_dir: str | Path,
    config: PreprocessConfig | None = None,
    workers: int = 1,
    only: Iterable[str] | None = None,
    limit_identities: int | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Align every image of an identity-folder dataset (or LFW root) into the crop cache."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    images_root, layout = source_images(data_dir)
    dataset = IdentityDataset.scan(images_root, only=only, limit=limit_identities)
    config, description = resolve_config(config or PreprocessConfig())
    manifest = _load_manifest(out_dir, description)
    out_dir.mkdir(parents=True, exist_ok=True)
    if layout is not None:
        _copy_protocol_files(layout, out_dir)

    _remove_stale_partials(out_dir)
    report = PrepareReport(out_dir, description["detector_used"])
    known_no_face = set(manifest.get("no_face", []))
    todo = []
    for identity, source in dataset.images():
        crop = out_dir / identity / f"{source.stem}.png"
        relative = f"{identity}/{source.name}"  # how reports name the source image
        report.total += 1
        if crop.exists() or relative in known_no_face:
            report.skipped += 1
        else:
            todo.append((str(source), str(crop), relative))
    timings: list[float] = []
    try:
        for result in _run(todo, config, workers, progress):
            _record(report, result, timings)
    finally:  # also on Ctrl-C: what was written stays, and the manifest says so
        report.median_ms = statistics.median(timings) if timings else None
        _save_manifest(out_dir, manifest, description, data_dir, report)
    return report


def _remove_stale_partials(out_dir: Path) -> None:
    """Crops a killed run was writing: its process is gone (ours: same host), or it is old (another
    pod's); not those another preparer sharing the cache is writing now."""
    now, marker = time.time(), f".{socket.gethostname()}."
    for leftover in out_dir.glob("*/.*.partial.png"):
        pid = leftover.name.split(marker, 1)[1].split(".")[0] if marker in leftover.name else ""
        try:
            if (pid.isdigit() and not _alive(int(pid))) or now - leftover.stat().st_mtime > STALE_PARTIAL_S:
                leftover.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer just renamed it
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_name(path: Path) -> str:
    """Unique across pods sharing the cache (their PIDs may be equal, each in its own PID namespace)."""
    return f".{path.stem}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial{path.suffix}"


def _run(todo: list[tuple[str, str, str]], config: PreprocessConfig, workers: int, progress: bool):
    """Yield one result per image, in-process for one worker, else from a process pool."""
    bar = tqdm(total=len(todo), unit="img", desc="aligning", disable=not progress or not todo)
    # Small chunks keep every worker busy on small jobs; up to CHUNK_IMAGES amortise the calls.
    size = max(1, min(CHUNK_IMAGES, len(todo) // (4 * max(1, workers))))
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    with bar:
        if workers <= 1 or len(chunks) <= 1:
            preprocessor = FacePreprocessor(config)
            for chunk in chunks:
                for result in _align_chunk(chunk, preprocessor):
                    bar.update()
                    yield result
            return
        # spawn, not fork: the caller (training) may already hold TensorFlow's threads.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(config,)) as pool:
            futures = [pool.submit(_align_chunk_in_worker, chunk) for chunk in chunks]
            try:
                for future in as_completed(futures):
                    for result in future.result():
                        bar.update()
                        yield result
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


_worker_preprocessor: FacePreprocessor | None = None


def _init_worker(config: PreprocessConfig) -> None:
    global _worker_preprocessor
    cv2.setNumThreads(1)  # one process per core already
    _worker_preprocessor = FacePreprocessor(config)


def _align_chunk_in_worker(chunk: list[tuple[str, str, str]]) -> list[tuple[str, str, float, str]]:
    assert _worker_preprocessor is not None
    return _align_chunk(chunk, _worker_preprocessor)


def _align_chunk(
    chunk: list[tuple[str, str, str]], preprocessor: FacePreprocessor
) -> list[tuple[str, str, float, str]]:
    """(relative path, outcome, seconds, message) per image; outcome: detected|fallback|no_face|error."""
    results = []
    for source, destination, relative in chunk:
        try:
            rgb = read_image(source)
        except ImageError as error:
            results.append((relative, "error", 0.0, str(error)))
            continue
        start = time.perf_counter()
        aligned = preprocessor.subject_face(rgb)
        seconds = time.perf_counter() - start
        if aligned is None:
            results.append((relative, "no_face", seconds, ""))
            continue
        _write_png_atomically(Path(destination), aligned.crop)
        results.append((relative, "detected" if aligned.detected else "fallback", seconds, ""))
    return results


def _write_png_atomically(path: Path, rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(_partial_name(path))
    if not cv2.imwrite(str(partial), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {partial}: check the disk space and permissions of {path.parent}")
    partial.replace(path)


def _record(report: PrepareReport, result: tuple[str, str, float, str], timings: list[float]) -> None:
    relative, outcome, seconds, message = result
    if outcome == "error":
        report.errors[relative] = message
        return
    timings.append(seconds * 1000.0)
    if outcome == "no_face":
        report.no_face.append(relative)
        return
    report.done += 1
    if outcome == "detected":
        report.detected += 1
    else:
        report.fallback += 1


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / CACHE_MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): delete it to rebuild the cache index") from None


def _load_manifest(out_dir: Path, description: dict) -> dict:
    manifest = read_manifest(out_dir)
    previous = manifest.get("preprocessing")
    if previous:
        changed = [key for key in PINNED_SETTINGS if previous.get(key) != description.get(key)]
        if changed:
            details = ", ".join(f"{key} {previous.get(key)!r} -> {description.get(key)!r}" for key in changed)
            raise ValueError(f"{out_dir} was prepared with other settings ({details}): use another --out or delete it")
    return manifest


def _save_manifest(out_dir: Path, manifest: dict, description: dict, data_dir: Path, report: PrepareReport) -> None:
    no_face = sorted(set(manifest.get("no_face", [])) | set(report.no_face))
    fallback_total = manifest.get("counts", {}).get("fallback", 0) + report.fallback
    errors = {**manifest.get("errors", {}), **report.errors}
    crops = sum(1 for crop in out_dir.glob("*/*.png") if not crop.name.startswith("."))
    manifest.update(
        format=1,
        preprocessing=description,
        source=str(data_dir.resolve()),
        counts={
            "crops": crops,
            "identities": sum(1 for p in out_dir.iterdir() if p.is_dir()),
            "fallback": fallback_total,
            "no_face": len(no_face),
            "errors": len(errors),
        },
        no_face=no_face,
        errors=errors,
        updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    partial = out_dir / _partial_name(out_dir / CACHE_MANIFEST)
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(out_dir / CACHE_MANIFEST)


def _copy_protocol_files(layout: LfwLayout, out_dir: Path) -> None:
    for name in PROTOCOL_FILES:
        source = layout.root / name
        if source.is_file() and not (out_dir / name).is_file():
            shutil.copyfile(source, out_dir / name)


def print_report(report: PrepareReport) -> None:
    print(report.summary())
    for relative, message in list(report.errors.items())[:10]:
        print(f"  unreadable: {relative}: {message}", file=sys.stderr)
