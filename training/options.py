"""Options declared once: a dataclass field's metadata is its command-line option and its checks.

A field declared `name: int = field(default=1, metadata=option("help", at_least=1))` gets, from that
declaration alone: the argparse option `--name` (`add_options`), its place in the argv that parses
back into an equal instance (`to_args`, what a TFJob, a trial or a pipeline step passes on), and the
message of every declared check it fails (`option_problems`). The argparse type comes from the
field's annotation: int and float options, bool as `--name/--no-name`, `dict[str, str]` as a
repeated `--name KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

OPTION = "option"  # the key of a field's metadata that holds its Option
Config = TypeVar("Config")
ArgumentAdder = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Option:
    """One field's command-line option and the checks its value must pass (None: unchecked)."""

    help: str = ""
    flag: str = ""  # default: --<field name with dashes>
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    at_least: float | None = None
    at_least_why: str = ""  # said after "must be at least N"
    at_most: float | None = None  # with at_least: "must be LOW..HIGH"
    positive: bool = False
    finite: bool = False
    not_negative: bool = False  # all such fields are named in one message
    add: ArgumentAdder | None = None  # an option declared elsewhere and shared by other commands (--yunet)

    def value_problems(self, flag: str, value: Any) -> list[str]:
        """What is wrong with `value`, one message per failed check (None passes: "the default")."""
        if value is None:
            return []
        found: list[str] = []
        if self.choices and value not in self.choices:
            found.append(f"{flag} must be one of {', '.join(self.choices)}")
        if self.finite and not math.isfinite(value):  # nan slips past every comparison below
            found.append(f"{flag} must be a finite number")
        if self.at_least is not None and self.at_most is not None:
            if not self.at_least <= value <= self.at_most:
                found.append(f"{flag} must be {self.at_least:g}..{self.at_most:g}")
        elif self.at_least is not None and value < self.at_least:
            why = f" ({self.at_least_why})" if self.at_least_why else ""
            found.append(f"{flag} must be at least {self.at_least:g}{why}")
        if self.positive and value <= 0:
            found.append(f"{flag} must be positive")
        return found


def option(help: str = "", **checks: Any) -> dict[str, Option]:
    """A field's metadata: `field(default=..., metadata=option("what it does", at_least=1))`."""
    return {OPTION: Option(help=help, **checks)}


@dataclass(frozen=True)
class _Declared:
    field: dataclasses.Field
    option: Option
    kind: type  # the annotation without None: int, float, str, bool, dict

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.field.name.replace("_", "-")

    @property
    def default(self) -> Any:
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return dataclasses.MISSING


def declared(kind: type) -> list[_Declared]:
    """Every field of the dataclass `kind` with its Option; a field without one is an error (it
    would have no flag and silently drop out of `to_args`)."""
    hints = typing.get_type_hints(kind)
    found = []
    for field in dataclasses.fields(kind):
        if OPTION not in field.metadata:
            raise TypeError(f"{kind.__name__}.{field.name} has no option(...) in its metadata")
        found.append(_Declared(field, field.metadata[OPTION], _without_none(hints[field.name])))
    return found


def flag_of(kind: type, name: str) -> str:
    """The command-line flag of the field `name` of `kind` (KeyError when it has no such field)."""
    for item in declared(kind):
        if item.field.name == name:
            return item.flag
    raise KeyError(f"{kind.__name__} has no field {name!r}")


def _without_none(annotation: Any) -> type:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _without_none(kind)
    return typing.get_origin(annotation) or annotation


def add_options(parser: argparse.ArgumentParser, kind: type) -> None:
    """One option per field of `kind`, in declaration order."""
    for item in declared(kind):
        if item.option.add is not None:
            item.option.add(parser)
            continue
        settings: dict[str, Any] = {"help": item.option.help}
        if item.option.metavar:
            settings["metavar"] = item.option.metavar
        if item.option.choices:
            settings["choices"] = item.option.choices
        if item.default is dataclasses.MISSING:
            settings["required"] = True
        else:
            settings["default"] = item.default
        if item.kind is bool:
            settings["action"] = argparse.BooleanOptionalAction
        elif item.kind is dict:
            settings.update(action="append", default=[], metavar=item.option.metavar or "KEY=VALUE")
        elif item.kind in (int, float):
            settings["type"] = item.kind
        parser.add_argument(item.flag, **settings)


def from_namespace(kind: type[Config], args: argparse.Namespace) -> Config:
    """The `kind` of parsed options (fields the parser did not add keep their defaults); ValueError
    for a malformed KEY=VALUE, and whatever `kind` itself refuses."""
    values: dict[str, Any] = {}
    for item in declared(kind):
        name = item.field.name
        if not hasattr(args, name):
            continue
        values[name] = _pairs(item.flag, getattr(args, name)) if item.kind is dict else getattr(args, name)
    return kind(**values)


def _pairs(flag: str, items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        pairs[key] = text
    return pairs


def to_args(config: Any, exclude: Collection[str] = ()) -> list[str]:
    """The argv that `add_options` parses back into `config` (without the fields in `exclude`, for a
    caller that sets those itself): required fields always, the others when they differ from the default."""
    args: list[str] = []
    for item in declared(type(config)):
        name, value = item.field.name, getattr(config, item.field.name)
        if name in exclude:
            continue
        if item.kind is dict:
            args += [part for key, text in value.items() for part in (item.flag, f"{key}={text}")]
        elif item.default is dataclasses.MISSING or value != item.default:
            if isinstance(value, bool):
                args.append(item.flag if value else "--no-" + item.flag[2:])
            elif value is not None:
                args += [item.flag, str(value)]
    return args


def option_problems(config: Any, kind: type | None = None) -> list[str]:
    """The message of every declared check `config` fails, in declaration order; the fields that
    must not be negative share one message. `kind`: check only the options of this base class."""
    found: list[str] = []
    not_negative: list[str] = []
    negative = False
    for item in declared(kind or type(config)):
        value = getattr(config, item.field.name)
        found += item.option.value_problems(item.flag, value)
        if item.option.not_negative:
            not_negative.append(item.flag)
            negative = negative or (value is not None and value < 0)
    if negative:
        named = ", ".join(not_negative[:-1]) + " and " + not_negative[-1] if len(not_negative) > 1 else not_negative[0]
        found.append(f"{named} must not be negative")
    return found
