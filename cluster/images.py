"""`facesim images build [IMAGE...] [--runtime podman|docker] [--registry R --tag T] [--base IMAGE]`:
the four images of containers/ built from this clone, each one's size printed.

The names are the ones `facesim manifests` renders (the same registry and tag defaults), so
`facesim emulate --runtime podman` runs the rendered pods on exactly these images. With podman,
pip installs from a wheelhouse prepared on this machine (`pip wheel` into a cache folder outside
the clone, refilled only when the requirements or constraints.txt change) mounted into the build:
no network in the build, and the wheelhouse and podman's layer cache serve every clone here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from facesim.cluster.resources import Images
from facesim.faces.detect import find_yunet_weights

REPO = Path(__file__).resolve().parents[1]
IMAGE_NAMES = ("trainer", "predictor", "ui", "pipeline")
# Images built only when named: another image's Dockerfile with other build arguments.
VARIANTS = {"predictor-tensorflow": ("predictor", {"FACESIM_EXTRA": "inference-tensorflow"})}
# What scripts/base-image.sh makes here; the official python:3.11-slim-bookworm where it is absent.
LOCAL_BASE = "localhost/facesim-base:3.11-bookworm"
BUILD_PYTHON = (3, 11)  # the images' Python: the wheelhouse's wheels are built for it
WHEELS_MOUNT = "/wheels"
YUNET_MOUNT = "/yunet"
STAMP = ".facesim-requirements.sha256"


class ImageBuildError(RuntimeError):
    """A build cannot go on; the message says what to do."""


def default_wheelhouse() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "facesim" / "wheels"


def _parser() -> argparse.ArgumentParser:
    images = Images()
    parser = argparse.ArgumentParser(prog="facesim images", description="Build the facesim container images.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="build the images of containers/ and print their sizes",
        description="Build the trainer, predictor, ui and pipeline images of containers/ from this clone, "
        "named as `facesim manifests` renders them (REGISTRY/facesim-NAME:TAG), and print each one's size.",
    )
    build.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"any of {', '.join([*IMAGE_NAMES, *VARIANTS])} (default: the first four; predictor-tensorflow is "
        "the predictor with TensorFlow beside ONNX Runtime, for --runtime tensorflow and size comparisons)",
    )
    build.add_argument("--runtime", choices=("podman", "docker"), default="podman", help="default: %(default)s")
    build.add_argument("--registry", default=images.registry, help="image name prefix (default: %(default)s)")
    build.add_argument("--tag", default=images.tag, help="image tag (default: %(default)s)")
    build.add_argument(
        "--base",
        help=f"Python base image (default: {LOCAL_BASE} when it exists, made by scripts/base-image.sh; "
        "else the Dockerfiles' python:3.11-slim-bookworm)",
    )
    build.add_argument(
        "--wheels",
        type=Path,
        default=default_wheelhouse(),
        metavar="DIR",
        help="wheelhouse podman builds install from (default: %(default)s); docker builds use the package index",
    )
    build.add_argument("--no-cache", action="store_true", help="build every layer anew (a cold build)")
    return parser


@dataclass(frozen=True)
class BuildSettings:
    runtime: str
    images: Images
    base: str | None  # None: the Dockerfile's own default
    wheels: Path | None  # None: pip uses the package index
    yunet: Path | None  # weights the trainer, predictor and pipeline images bake in
    no_cache: bool = False


def _runtime_output(runtime: str, *args: str) -> str:
    result = subprocess.run([runtime, *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise ImageBuildError(f"`{runtime} {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def image_exists(runtime: str, image: str) -> bool:
    check = ["image", "exists", image] if runtime == "podman" else ["image", "inspect", image]
    return subprocess.run([runtime, *check], capture_output=True, check=False).returncode == 0


def image_size_bytes(runtime: str, image: str) -> int:
    return int(_runtime_output(runtime, "image", "inspect", "--format", "{{.Size}}", image))


def requirements(*extras: str) -> list[str]:
    """The images' requirements (containers/requirements.py, the script their builds run)."""
    script = REPO / "containers" / "requirements.py"
    command = [sys.executable, str(script), "--pyproject", str(REPO / "pyproject.toml"), *extras]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def fill_wheelhouse(wheels: Path, echo) -> None:
    """Every wheel the four images install, for the images' Python; skipped while the
    requirements and constraints.txt are those of the last fill."""
    if sys.version_info[:2] != BUILD_PYTHON:
        raise ImageBuildError(
            f"the wheelhouse is built with this Python ({sys.version.split()[0]}), and the images run "
            f"{'.'.join(map(str, BUILD_PYTHON))}: run facesim from a Python {'.'.join(map(str, BUILD_PYTHON))} "
            "environment, or give --wheels a wheelhouse made for it"
        )
    wanted = [*requirements("pipeline", "ui"), "setuptools>=77"]  # setuptools: the build backend
    constraints = REPO / "constraints.txt"
    digest = hashlib.sha256("\n".join(wanted).encode() + constraints.read_bytes()).hexdigest()
    stamp = wheels / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    wheels.mkdir(parents=True, exist_ok=True)
    echo(f"images: filling the wheelhouse {wheels} (pip wheel)")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)]
    command += ["--find-links", str(wheels), "--constraint", str(constraints), *wanted]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise ImageBuildError(f"pip wheel failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    stamp.write_text(digest + "\n")


def build_command(name: str, settings: BuildSettings) -> list[str]:
    source, variant_args = VARIANTS.get(name, (name, {}))
    dockerfile = REPO / "containers" / f"{source}.Dockerfile"
    command = [settings.runtime, "build", "--file", str(dockerfile), "--tag", settings.images.image(name)]
    for key, value in variant_args.items():
        command += ["--build-arg", f"{key}={value}"]
    if settings.runtime == "podman":  # docker reads <Dockerfile>.dockerignore itself (BuildKit)
        command += ["--layers", "--ignorefile", f"{dockerfile}.dockerignore"]
    if settings.no_cache:
        command += ["--no-cache"]
    if settings.base:
        command += ["--build-arg", f"PYTHON_IMAGE={settings.base}"]
    if settings.wheels is not None:
        command += ["--volume", f"{settings.wheels}:{WHEELS_MOUNT}:ro"]
        command += ["--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={WHEELS_MOUNT}"]
    if settings.yunet is not None:
        digest = hashlib.sha256(settings.yunet.read_bytes()).hexdigest()
        command += ["--volume", f"{settings.yunet.parent}:{YUNET_MOUNT}:ro"]
        command += ["--build-arg", f"FACESIM_YUNET_URL=file://{YUNET_MOUNT}/{settings.yunet.name}"]
        command += ["--build-arg", f"FACESIM_YUNET_SHA256={digest}"]
    return [*command, str(REPO)]


def build(name: str, settings: BuildSettings) -> tuple[int, float]:
    """Build one image (its output goes to stderr); its size in bytes and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run(build_command(name, settings), stdout=sys.stderr, check=False)
    if result.returncode:
        raise ImageBuildError(f"building {settings.images.image(name)} failed (exit {result.returncode}; see above)")
    return image_size_bytes(settings.runtime, settings.images.image(name)), time.monotonic() - started


def settings_from_args(args: argparse.Namespace, echo) -> BuildSettings:
    if shutil.which(args.runtime) is None:
        raise ImageBuildError(f"{args.runtime} is not installed: run scripts/install-tools.sh")
    if not (REPO / "containers").is_dir():
        raise ImageBuildError(
            f"no containers/ beside facesim's sources ({REPO}): run it from a clone of the repository"
        )
    base = args.base or (LOCAL_BASE if image_exists(args.runtime, LOCAL_BASE) else None)
    echo(f"images: base {base or 'the Dockerfiles default (python:3.11-slim-bookworm)'}")
    wheels = None
    if args.runtime == "podman":  # docker build cannot mount a folder into its RUN steps
        wheels = args.wheels.resolve()
        fill_wheelhouse(wheels, echo)
    yunet = find_yunet_weights(allow_download=False) if args.runtime == "podman" else None
    return BuildSettings(args.runtime, Images(args.registry, args.tag), base, wheels, yunet, args.no_cache)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    known = [*IMAGE_NAMES, *VARIANTS]
    unknown = sorted(set(args.images) - set(known))
    if unknown:
        parser.error(f"unknown images {', '.join(unknown)}: choose from {', '.join(known)}")

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        settings = settings_from_args(args, echo)
        for name in args.images or IMAGE_NAMES:
            echo(f"images: building {settings.images.image(name)}")
            size, seconds = build(name, settings)
            print(f"{settings.images.image(name)} size={size / 1e6:.0f}MB build_s={seconds:.0f}", flush=True)
    except (ImageBuildError, ValueError) as error:
        print(f"facesim images: {error}", file=sys.stderr)
        return 1
    return 0
