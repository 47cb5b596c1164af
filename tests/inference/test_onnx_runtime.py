"""The predictor without TensorFlow: `facesim serve` (ONNX Runtime by default) answers with a real model
while an import hook refuses TensorFlow, Keras and tf2onnx; and both runtimes embed alike."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import requests

from facesim.inference.local_server import local_predictor

# Loaded at the interpreter's start (sitecustomize): any import of these modules fails and is logged.
NO_TENSORFLOW_HOOK = """
import importlib.abc, os, sys

BLOCKED = ("tensorflow", "tf_keras", "keras", "tf2onnx")


class RefuseTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["FACESIM_TEST_IMPORT_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is not installed in the predictor image")
        return None


sys.meta_path.insert(0, RefuseTensorFlow())
"""


def test_serving_onnx_never_imports_tensorflow(
    tiny_model_dir: Path, tiny_gallery_dir: Path, yunet_path: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_TENSORFLOW_HOOK)
    attempts = tmp_path / "imports.log"
    attempts.write_text("")
    env = {
        "PYTHONPATH": str(hook),
        "FACESIM_TEST_IMPORT_LOG": str(attempts),
        "FACESIM_HOME": str(tmp_path / "home"),
        "FACESIM_YUNET_MODEL": str(yunet_path),
    }
    photo = base64.b64encode((lfw_dir / "lfw-deepfunneled" / "Tony_Blair" / "Tony_Blair_0001.jpg").read_bytes())
    with local_predictor(tiny_model_dir, tiny_gallery_dir, env=env, log_path=tmp_path / "log") as url:
        answer = requests.post(
            f"{url}/v1/models/facenet:predict",
            json={"instances": [{"image": {"b64": photo.decode()}, "top_k": 1}]},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    faces = answer.json()["predictions"][0]["faces"]
    assert faces and all(len(face["embedding"]) == 64 for face in faces)
    np.testing.assert_allclose([np.linalg.norm(face["embedding"]) for face in faces], 1.0, atol=1e-4)
    assert all(len(face["matches"]) == 1 for face in faces)  # searched the gallery
    assert attempts.read_text() == "", f"the predictor imported {attempts.read_text().split()}"
