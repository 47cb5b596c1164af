"""dlib's face ResNet as ported to TF.js by face-api: finding, checking and reading its weights.

The files are a TF.js weights manifest (JSON, no topology) and one `.bin`: tensors stored one after
another in manifest order, each either uint8-quantised (`value = byte * scale + min`) or plain
little-endian float32. Each file is checked against its sha256 before it is read.

Where the weights come from, first found wins: `--weights DIR`, `$FACESIM_FACEAPI_WEIGHTS`, the
cache `$FACESIM_HOME/models/faceapi-resnet`, then the npm package `@vladmandic/face-api@1.7.15`
fetched with the ordinary npm client (tarball checksummed) into that cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesim.faces.home import facesim_home

WEIGHTS_ENV = "FACESIM_FACEAPI_WEIGHTS"
MANIFEST = "face_recognition_model-weights_manifest.json"
BINARY = "face_recognition_model.bin"
FILE_SHA256 = {
    MANIFEST: "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    BINARY: "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
}
FACEAPI_IMAGE_SIZE = 150  # dlib's chip
TEMPLATE = "dlib-chip-5pt"  # faces.align.TEMPLATES: YuNet's points where dlib's chip puts them
NPM_PACKAGE = "@vladmandic/face-api@1.7.15"
NPM_TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
PROVENANCE = {
    "name": "dlib_face_recognition_resnet_model_v1, as ported to TF.js by face-api",
    "source": f"npm {NPM_PACKAGE}, folder model/",
    "licence": "network and weights: public domain (dlib-models, Davis King); TF.js port: MIT (face-api, Vladimir Mandic)",
    "trained_on": "~3M faces of 7,485 identities, none of them LFW people (dlib-models README)",
}
HOW_TO_GET = (
    f"give --weights DIR (a folder with {MANIFEST} and {BINARY}), set ${WEIGHTS_ENV}, "
    f"or install npm so that `npm pack {NPM_PACKAGE}` can fetch them"
)


class WeightsError(ValueError):
    """The pretrained weights are missing, altered or unreadable; the message says what to do."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    scale: float | None  # None: stored as float32
    minimum: float = 0.0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size if self.scale is not None else 4 * self.size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, expected: dict[str, str] = FILE_SHA256) -> dict[str, str]:
    """Each file's sha256, checked; raises WeightsError naming the first missing or altered file."""
    found = {}
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{path} does not exist: {HOW_TO_GET}")
        found[name] = sha256_file(path)
        if found[name] != digest:
            raise WeightsError(
                f"{path} has sha256 {found[name]}, expected {digest}: the file is damaged or another version; "
                f"fetch it again ({HOW_TO_GET})"
            )
    return found


def read_manifest(path: Path) -> list[Tensor]:
    try:
        groups = json.loads(path.read_text())
        return [
            Tensor(
                spec["name"],
                tuple(int(n) for n in spec["shape"]),
                spec["quantization"]["scale"] if "quantization" in spec else None,
                spec["quantization"]["min"] if "quantization" in spec else 0.0,
            )
            for group in groups
            for spec in group["weights"]
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{path} is not a TF.js weights manifest ({error})") from None


def decode(tensors: list[Tensor], data: bytes) -> dict[str, np.ndarray]:
    """The float32 value of every tensor, read in manifest order from the concatenated `.bin` data."""
    expected = sum(t.nbytes for t in tensors)
    if expected != len(data):
        raise WeightsError(f"the weights data holds {len(data)} bytes but the manifest describes {expected}")
    values, offset = {}, 0
    for tensor in tensors:
        if tensor.scale is None:
            flat = np.frombuffer(data, "<f4", tensor.size, offset).astype(np.float32)
        else:
            raw = np.frombuffer(data, np.uint8, tensor.size, offset).astype(np.float32)
            flat = raw * np.float32(tensor.scale) + np.float32(tensor.minimum)
        values[tensor.name] = flat.reshape(tensor.shape)
        offset += tensor.nbytes
    return values


def load_weights(folder: Path, expected: dict[str, str] = FILE_SHA256) -> dict[str, np.ndarray]:
    """Checked and decoded weights of a folder holding the manifest and its `.bin` files."""
    verify_files(folder, expected)
    manifest_path = folder / MANIFEST
    tensors = read_manifest(manifest_path)
    paths = [path for group in json.loads(manifest_path.read_text()) for path in group["paths"]]
    return decode(tensors, b"".join((folder / path).read_bytes() for path in paths))


def cache_dir() -> Path:
    return facesim_home() / "models" / "faceapi-resnet"


def locate_weights(explicit: str | Path | None = None, allow_npm: bool = True) -> Path:
    """The folder to read, by the routes of the module docstring; every route is checksummed."""
    if explicit:
        folder = Path(explicit)
        verify_files(folder)
        return folder
    if os.environ.get(WEIGHTS_ENV):
        folder = Path(os.environ[WEIGHTS_ENV])
        verify_files(folder)
        return folder
    cached = cache_dir()
    if all((cached / name).is_file() for name in FILE_SHA256):
        verify_files(cached)
        return cached
    if allow_npm and shutil.which("npm"):
        return fetch_from_npm(cached)
    raise WeightsError(f"no faceapi-resnet weights found: {HOW_TO_GET}")


def fetch_from_npm(dest: Path) -> Path:
    """`npm pack` the face-api package, check the tarball, and unpack the two weight files into `dest`."""
    with tempfile.TemporaryDirectory(prefix="facesim-npm-") as work:
        try:
            result = subprocess.run(
                ["npm", "pack", NPM_PACKAGE, "--silent"], cwd=work, capture_output=True, text=True, timeout=600
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WeightsError(f"`npm pack {NPM_PACKAGE}` failed ({error}): {HOW_TO_GET}") from None
        tarballs = list(Path(work).glob("*.tgz"))
        if result.returncode or not tarballs:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no tarball"]
            raise WeightsError(f"`npm pack {NPM_PACKAGE}` failed ({detail[0]}): {HOW_TO_GET}")
        if sha256_file(tarballs[0]) != NPM_TARBALL_SHA256:
            raise WeightsError(f"the npm tarball of {NPM_PACKAGE} does not have the expected sha256; not using it")
        staging = Path(work) / "weights"
        staging.mkdir()
        with tarfile.open(tarballs[0]) as archive:
            for name in FILE_SHA256:
                member = archive.extractfile(f"package/model/{name}")
                if member is None:
                    raise WeightsError(f"the npm tarball of {NPM_PACKAGE} lacks model/{name}")
                (staging / name).write_bytes(member.read())
        verify_files(staging)
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILE_SHA256:
            shutil.move(str(staging / name), dest / name)
    return dest


def assign_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Set a `faceapi_resnet` Keras model's layers from the decoded tensors, folding each conv's affine
    `scale` layer into its kernel and bias; every tensor must be used exactly once."""
    used: set[str] = set()
    for layer in model.layers:
        if layer.name == "fc":
            layer.set_weights([weights["fc"]])
            used.add("fc")
        elif type(layer).__name__ == "Conv2D":
            prefix = layer.name.replace("_conv1", "/conv1").replace("_conv2", "/conv2")
            names = [
                f"{prefix}/conv/filters",
                f"{prefix}/conv/bias",
                f"{prefix}/scale/weights",
                f"{prefix}/scale/biases",
            ]
            missing = [name for name in names if name not in weights]
            if missing:
                raise WeightsError(f"the weights lack {', '.join(missing)} (layer {layer.name})")
            kernel, bias, scale, shift = (weights[name] for name in names)
            layer.set_weights([kernel * scale, bias * scale + shift])
            used.update(names)
    unused = sorted(set(weights) - used)
    if unused:
        raise WeightsError(f"the weights hold tensors the network has no place for: {', '.join(unused[:5])}")


def build_pretrained_network():
    """The `faceapi_resnet` Keras network at dlib's chip size (weights still random: `assign_weights`)."""
    from facesim.training.model import FACEAPI_EMBEDDING_DIM, build_embedding_model

    return build_embedding_model("faceapi_resnet", FACEAPI_IMAGE_SIZE, FACEAPI_EMBEDDING_DIM)
