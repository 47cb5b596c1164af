"""One name per option across commands: every command that takes the YuNet weights takes `--yunet`."""

from __future__ import annotations

import argparse
import re

import pytest

from facesim.cli import SUBCOMMANDS, main
from facesim.faces.detect import OLD_YUNET_OPTIONS, add_yunet_argument

# The commands known to find faces; the scan below must find at least these.
TAKE_YUNET = {"data prepare", "train", "evaluate", "gallery build", "serve", "bench serve"}


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0, command
    return capsys.readouterr().out


def _actions(help_text: str) -> list[str]:
    """The sub-actions of a command: a usage line ending in {a,b} or a positional COMMAND/ACTION
    whose choices are listed beneath it."""
    usage = help_text.split("\n\n")[0]
    if listed := re.search(r"\{([\w,-]+)\}\s*$", usage):
        return listed.group(1).split(",")
    if not re.search(r"\b(COMMAND|ACTION) \.\.\.", usage):
        return []
    positional = help_text.split("positional arguments:")[1].split("\n\n")[0]
    return re.findall(r"^    (\w[\w-]*)\s", positional, flags=re.MULTILINE)


def _commands(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Every command and action, with its --help text."""
    helps: dict[str, str] = {}
    for sub in SUBCOMMANDS:
        text = _help(sub.name, capsys)
        actions = _actions(text)
        helps.update({f"{sub.name} {a}": _help(f"{sub.name} {a}", capsys) for a in actions} or {sub.name: text})
    return helps


@pytest.mark.integration  # builds the kfp pipeline's graph (kfp inspects the call stack per task: seconds under pytest)
def test_every_command_that_takes_yunet_weights_calls_the_option_yunet(capsys: pytest.CaptureFixture[str]) -> None:
    helps = _commands(capsys)
    taking = {command for command, text in helps.items() if "yunet" in text.lower()}
    assert taking >= TAKE_YUNET
    for command in taking:
        assert re.search(r"--yunet ONNX\b", helps[command]), command
        for old in OLD_YUNET_OPTIONS:
            assert old not in helps[command], f"{command} lists {old}: old names stay hidden aliases"


@pytest.mark.parametrize("spelling", ["--yunet", *OLD_YUNET_OPTIONS])
def test_old_spellings_still_parse_into_the_same_setting(spelling: str) -> None:
    parser = argparse.ArgumentParser()
    add_yunet_argument(parser)
    assert parser.parse_args([spelling, "w.onnx"]).yunet_path == "w.onnx"
    assert parser.parse_args([]).yunet_path is None
