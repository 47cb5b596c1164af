"""The networks `--architecture` offers are one registry (training.config.ARCHITECTURES): the help
names each of them, and the model builder builds exactly those."""

from __future__ import annotations

import pytest

from facesim.cli import main
from facesim.training.config import ARCHITECTURE_NOTES, ARCHITECTURES, DEFAULT_IMAGE_SIZE


@pytest.mark.parametrize("command", ["train", "bench train"])
def test_the_help_names_every_architecture_of_the_registry(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: the names are not wrapped apart
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert set(ARCHITECTURES) == set(DEFAULT_IMAGE_SIZE)
    for name in ARCHITECTURES:
        assert f"{name} ({ARCHITECTURE_NOTES[name]}, {DEFAULT_IMAGE_SIZE[name]} px)" in help_text
    assert "faceapi_resnet (dlib's face ResNet" in help_text


def test_the_builder_builds_the_networks_of_the_registry() -> None:
    from facesim.training.model import build_embedding_model

    with pytest.raises(ValueError, match="unknown architecture") as refused:
        build_embedding_model("no_such_network", 64, 64)
    assert str(refused.value).endswith(f"choose one of {', '.join(ARCHITECTURES)}")
