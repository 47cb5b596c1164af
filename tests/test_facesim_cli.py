"""The `facesim` dispatcher: every command of the design is listed, and Ctrl-C ends cleanly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facesim import cli

DESIGN_COMMANDS = ("data", "train", "evaluate", "tune", "gallery", "serve", "predict", "ui", "pipeline", "manifests")


def test_help_lists_every_command_and_starts_without_tensorflow():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom facesim.cli import main\ntry: main(['--help'])\n"
            "except SystemExit: print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for command in DESIGN_COMMANDS:
        assert f"    {command}" in result.stdout
    assert result.stdout.strip().endswith("False")  # lazy imports: --help stays fast


def test_unknown_command_exits_non_zero(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        cli.main(["launch"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_ctrl_c_in_a_command_exits_130_without_a_traceback(monkeypatch, capsys: pytest.CaptureFixture[str]):
    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_resolve", lambda target: interrupted)
    assert cli.main(["train", "--data", "d", "--out", "o"]) == 130
    assert capsys.readouterr().err == "facesim train: interrupted\n"
