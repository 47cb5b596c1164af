"""What a local pipeline run leaves behind for people and scripts: a JSON summary and one line.

`facesim pipeline run` writes `WORK_ROOT/summaries/run-<time>.json` and `WORK_ROOT/last-run.json`
(step timings, the test figures, the registered versions and the served model's precision, the
arguments and a fingerprint of the data); docs quote it, and `facesim pipeline run --reuse` reads it back to skip a run whose
data and settings match what is already registered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAST_RUN = "last-run.json"
PROTOCOL_FILES = ("people.txt", "pairs.txt")
# What the one-line summary shows of the evaluate step's metric lines.
HEADLINE_METRICS = ("accuracy", "auc", "tar_at_far_1e-3")


@dataclass(frozen=True)
class StepTiming:
    name: str
    seconds: float
    status: str


@dataclass(frozen=True)
class Registered:
    """A registry version (`v3`) and its directory."""

    version: str
    path: str


@dataclass(frozen=True)
class RunSummary:
    finished: str  # UTC, ISO 8601
    seconds: float
    steps: list[StepTiming]
    metrics: dict[str, dict[str, float]]  # per step: the last `name=value` lines it printed
    model: Registered | None
    gallery: Registered | None
    arguments: dict[str, Any]
    data_fingerprint: str
    command: str
    log: str
    machine: dict[str, Any] = field(default_factory=dict)
    precision: str = ""  # of the registered model: int8 (the quantize step's copy held) or float

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunSummary:
        registered = {key: Registered(**raw[key]) if raw.get(key) else None for key in ("model", "gallery")}
        steps = [StepTiming(**step) for step in raw["steps"]]
        return cls(**{**raw, **registered, "steps": steps})


def machine_facts() -> dict[str, Any]:
    """Enough to read the timings: cores and how loaded the machine was at the end."""
    return {"cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1)}


def model_precision(model_dir: Path) -> str:
    """int8 for a model made by `facesim model quantize`, else float."""
    from facesim.storage.model_artifact import QUANTIZATION, load_model_card

    return "int8" if QUANTIZATION in load_model_card(model_dir).extra else "float"


def data_fingerprint(data: str | Path) -> str:
    """The dataset's path and protocol files: a run over other data, or changed pairs, differs."""
    root = Path(data).resolve()
    digest = hashlib.sha256(str(root).encode())
    for name in PROTOCOL_FILES:
        path = root / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def command_line(argv: list[str]) -> str:
    return shlex.join(["facesim", "pipeline", "run", *argv])


def write_summary(summary: RunSummary, work_root: Path) -> Path:
    """The run's own file and `last-run.json` (replaced atomically); returns the run's file."""
    folder = work_root / "summaries"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(summary), indent=2) + "\n"
    path = folder / f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(text)
    staging = work_root / f".{LAST_RUN}.partial"
    staging.write_text(text)
    staging.replace(work_root / LAST_RUN)
    return path


def read_last_run(work_root: Path) -> RunSummary | None:
    path = work_root / LAST_RUN
    try:
        return RunSummary.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none yet, or written by another version: not reusable


def human_line(summary: RunSummary) -> str:
    """One line: total and per-step time, the test figures, what got registered."""
    steps = ", ".join(f"{_short(step.name)} {step.seconds:.0f} s" for step in summary.steps)
    figures = summary.metrics.get("evaluate-model", {})
    shown = ", ".join(f"test {name} {figures[name]:.3f}" for name in HEADLINE_METRICS if name in figures)
    precision = f" ({summary.precision})" if summary.precision else ""
    registered = (
        f"model {summary.model.version}{precision}, gallery {summary.gallery.version}"
        if summary.model and summary.gallery
        else "nothing registered"
    )
    return f"{summary.seconds / 60:.1f} min ({steps}); {shown or 'no test figures'}; {registered}"


def _short(task: str) -> str:
    return task.split("-")[0]


@dataclass(frozen=True)
class Reuse:
    """The answer to "can this run be skipped?": the summary to reuse, or why not."""

    summary: RunSummary | None
    reason: str


def reusable(arguments: dict[str, Any], work_root: Path, registered: tuple[Path | None, Path | None]) -> Reuse:
    """The last run's summary when it had these arguments and data, and its model and gallery are
    still the latest registered ones (`registered`: the latest model and gallery directories)."""
    last = read_last_run(work_root)
    if last is None or last.model is None or last.gallery is None:
        return Reuse(None, "no earlier run registered a model here")
    changed = sorted(
        key for key in arguments.keys() | last.arguments.keys() if arguments.get(key) != last.arguments.get(key)
    )
    if changed:
        shown = ", ".join(f"{key} {last.arguments.get(key)!r} -> {arguments.get(key)!r}" for key in changed)
        return Reuse(None, f"the settings changed since the last run ({shown})")
    if data_fingerprint(arguments["data"]) != last.data_fingerprint:
        return Reuse(None, "the data's protocol files changed since the last run")
    latest = tuple(str(path) if path else None for path in registered)
    if latest != (last.model.path, last.gallery.path):
        return Reuse(None, "another model or gallery was registered since the last run")
    return Reuse(
        last,
        f"model {last.model.version} and gallery {last.gallery.version}, registered by the run of "
        f"{last.finished}, came from the same data and settings",
    )
