"""The networks `--architecture` offers are one registry (training.config.ARCHITECTURES): the help
names each of them, and the model builder builds exactly those."""

from __future__ import annotations

import argparse

import pytest

from facesim.training.config import ARCHITECTURES, DEFAULT_IMAGE_SIZE, add_config_arguments


def test_the_help_names_every_architecture_of_the_registry() -> None:
    parser = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=1000))
    add_config_arguments(parser)
    help_text = parser.format_help()
    assert set(ARCHITECTURES) == set(DEFAULT_IMAGE_SIZE)
    for name in ARCHITECTURES:
        assert f"{name} ({ARCHITECTURES[name]}, {DEFAULT_IMAGE_SIZE[name]} px)" in help_text
    assert "faceapi_resnet (dlib's face ResNet" in help_text


def test_the_builder_builds_the_networks_of_the_registry() -> None:
    from facesim.training.model import build_embedding_model

    with pytest.raises(ValueError, match="unknown architecture") as refused:
        build_embedding_model("no_such_network", 64, 64)
    assert str(refused.value).endswith(f"choose one of {', '.join(ARCHITECTURES)}")
