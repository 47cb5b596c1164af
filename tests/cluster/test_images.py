"""`facesim images build`: the build command each image gets (no build runs here; the container
tests build and run the images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from facesim.cluster.images import REPO, BuildSettings, build_command, main
from facesim.cluster.resources import Images


def test_podman_builds_mount_the_wheelhouse_and_the_yunet_mirror(tmp_path: Path) -> None:
    yunet = tmp_path / "models" / "yunet.onnx"
    yunet.parent.mkdir()
    yunet.write_bytes(b"weights")
    settings = BuildSettings("podman", Images("reg.test/x", "t1"), "localhost/base:1", tmp_path / "wheels", yunet)
    command = build_command("trainer", settings)
    joined = " ".join(command)
    assert command[:2] == ["podman", "build"] and command[-1] == str(REPO)
    assert f"--file {REPO}/containers/trainer.Dockerfile --tag reg.test/x/facesim-trainer:t1" in joined
    assert f"--ignorefile {REPO}/containers/trainer.Dockerfile.dockerignore" in joined
    assert "--build-arg PYTHON_IMAGE=localhost/base:1" in joined
    assert (
        f"--volume {tmp_path / 'wheels'}:/wheels:ro --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels"
        in joined
    )
    assert f"--volume {yunet.parent}:/yunet:ro --build-arg FACESIM_YUNET_URL=file:///yunet/yunet.onnx" in joined
    assert "FACESIM_YUNET_SHA256=" in joined and "--no-cache" not in command


def test_docker_builds_use_the_dockerfiles_defaults_and_the_package_index() -> None:
    settings = BuildSettings("docker", Images("r", "t"), None, None, None, no_cache=True)
    command = build_command("ui", settings)
    assert command[:2] == ["docker", "build"] and "--no-cache" in command
    assert not any(part.startswith(("PYTHON_IMAGE=", "PIP_")) for part in command)
    assert "--volume" not in command and "--ignorefile" not in command  # docker reads <Dockerfile>.dockerignore


def test_the_tensorflow_predictor_is_the_predictor_dockerfile_with_tensorflow_added() -> None:
    command = build_command("predictor-tensorflow", BuildSettings("podman", Images("r", "t"), None, None, None))
    joined = " ".join(command)
    assert f"--file {REPO}/containers/predictor.Dockerfile --tag r/facesim-predictor-tensorflow:t" in joined
    assert "--build-arg FACESIM_EXTRA=inference-tensorflow" in joined
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "facesim[inference]" in extras["inference-tensorflow"]
    assert any(need.startswith("tensorflow") for need in extras["inference-tensorflow"])
    assert not any(need.startswith("tensorflow") for need in extras["inference"])  # the default image has none


def test_an_unknown_image_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["build", "trainer", "nope"])
    assert exit.value.code == 2
    assert "unknown images nope" in capsys.readouterr().err
