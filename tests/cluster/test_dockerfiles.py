"""The images (Docker cannot run here): pinned base, non-root user, only the component's extra, the right entrypoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
IMAGES = {"trainer": "training", "predictor": "inference", "ui": "ui", "pipeline": "pipeline"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def parser_directives(dockerfile: Path) -> dict[str, str]:
    """BuildKit's parser directives: `# key=value` comment lines before anything else in the file."""
    directives: dict[str, str] = {}
    for line in dockerfile.read_text().splitlines():
        match = re.fullmatch(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*", line)
        if not match:
            break
        directives[match.group(1).lower()] = match.group(2)
    return directives


@pytest.mark.parametrize("image", IMAGES)
def test_syntax_directive_names_the_official_dockerfile_frontend(image: str) -> None:
    """BuildKit pulls the `# syntax=` image as its frontend: anything but docker/dockerfile fails the build."""
    directives = parser_directives(REPO / "containers" / f"{image}.Dockerfile")
    assert re.fullmatch(r"docker/dockerfile:1(\.\d+){0,2}", directives.get("syntax", "")), directives


def test_the_directive_reader_sees_a_misnamed_frontend(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("# syntax=containers/dockerfile:1\n# a comment\nFROM python:3.11.14-slim\n")
    assert parser_directives(broken) == {"syntax": "containers/dockerfile:1"}


@pytest.mark.parametrize("image, extra", IMAGES.items())
def test_image_is_pinned_non_root_and_installs_only_its_extra(image: str, extra: str) -> None:
    steps = instructions(REPO / "containers" / f"{image}.Dockerfile")
    base = next(args for op, args in steps if op == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim(-\w+)?|PYTHON_IMAGE=python@sha256:[0-9a-f]{64}", base)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    defaults = dict(args.split("=", 1) for op, args in steps if op == "ARG" and "=" in args)
    installs = [  # build arguments at their defaults (the predictor's extra is one)
        re.sub(r"\$\{(\w+)\}", lambda name: defaults[name.group(1)], " ".join(args.split()))
        for op, args in steps
        if op == "RUN" and "pip install" in args
    ]
    assert installs == [  # the dependencies, then facesim alone (a source change leaves the first layer cached)
        f"python requirements.py {extra} > requirements.txt "
        "&& pip install --constraint constraints.txt --requirement requirements.txt",
        "pip install --no-deps .",
    ]
    assert extra in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # The user switch comes after installing (root installs) and before anything runs.
    ops = [op for op, _ in steps]
    assert ops.index("USER") > max(i for i, (op, args) in enumerate(steps) if "pip install" in args)


def test_images_match_what_the_resources_run() -> None:
    from facesim.cluster.inference_service import PREDICTOR_PORT
    from facesim.cluster.resources import NON_ROOT_UID
    from facesim.training.tfjob import TFJOB_PORT
    from facesim.ui.cluster import UI_PORT

    ports = {"trainer": TFJOB_PORT, "predictor": PREDICTOR_PORT, "ui": UI_PORT}
    for image, port in ports.items():
        steps = instructions(REPO / "containers" / f"{image}.Dockerfile")
        assert ("EXPOSE", str(port)) in steps
        assert any(op == "RUN" and f"--uid {NON_ROOT_UID}" in args for op, args in steps)
        assert dict(steps)["USER"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"


@pytest.mark.parametrize("image", ["predictor", "ui"])
def test_servers_in_images_listen_on_every_interface_explicitly(image: str) -> None:
    """Outside a container both servers bind 127.0.0.1; the images say 0.0.0.0 themselves."""
    steps = instructions(REPO / "containers" / f"{image}.Dockerfile")
    (command,) = [json.loads(args) for op, args in steps if op == "CMD"]
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_requirements_script_lists_core_and_the_extras_with_their_references_expanded() -> None:
    import subprocess
    import sys

    script = REPO / "containers" / "requirements.py"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = subprocess.run(
        [sys.executable, str(script), "--pyproject", str(REPO / "pyproject.toml"), "tuning"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    extras = project["optional-dependencies"]
    expected = [
        *project["dependencies"],
        *extras["training"],
        *[r for r in extras["tuning"] if not r.startswith("facesim")],
    ]
    assert listed == list(dict.fromkeys(expected))  # core, training (tuning's reference), then tuning's own
    assert not any(r.startswith("facesim") for r in listed)
    unknown = subprocess.run([sys.executable, str(script), "nope"], capture_output=True, text=True, cwd=REPO)
    assert unknown.returncode != 0 and "no extra 'nope'" in unknown.stderr


def test_no_image_leaves_the_source_folder_as_its_working_directory() -> None:
    """There `python -c "import facesim..."` imports the sources (without the component packages), not the install."""
    for image in IMAGES:
        steps = instructions(REPO / "containers" / f"{image}.Dockerfile")
        workdirs = [args for op, args in steps if op == "WORKDIR"]
        assert workdirs[-1] == "/home/facesim"
