"""What ``appliance <command> --help`` says beyond the options: a description and examples.

Areas register their commands with a one-line ``help``; this module adds the longer description
and two or three example command lines (``COMMAND_HELP``, in one place: cli_help_text.py) to
every command, and a help formatter that shows each option's default. ``apply_help`` walks the
finished parser.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import textwrap
from collections.abc import Iterator
from typing import Any

from appliance.cli_help_text import COMMAND_HELP

HELP_WIDTH = 78


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends ``(default: X)`` where help omits it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default in (None, False, "", argparse.SUPPRESS, [], ()) or action.option_strings == []:
            return text
        shown = _shown(default)
        if names_default(text, default):
            return text
        return f"{text} (default: {shown})" if text else f"default: {shown}"

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        """As argparse does, but a subcommand a command runs without is shown in brackets
        (``appliance console [COMMAND ...]``: the console itself starts without one)."""
        text = super()._format_args(action, default_metavar)
        if action.nargs == argparse.PARSER and not action.required:
            return f"[{text}]"
        return text


def _shown(default: object) -> str:
    """A default as help shows it: 900 for 900.0, 128,128 for a tuple."""
    if isinstance(default, tuple):
        return ",".join(map(_shown, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


def names_default(text: str, default: object) -> bool:
    """Whether help text already gives the default: says "default", or shows the value in
    parentheses ("(900)" for 900.0, "(config.yaml)")."""
    if "default" in text:
        return True
    for inner in re.findall(r"\(([^()]*)\)", text):
        if inner == _shown(default) or inner == str(default):
            return True
        with contextlib.suppress(TypeError, ValueError):
            if isinstance(default, int | float) and float(inner) == float(default):
                return True
    return False


def apply_help(parser: argparse.ArgumentParser) -> None:
    """Give every command its description, examples and the default-showing formatter."""
    for path, command in _commands(parser, ""):
        command.formatter_class = ExampleFormatter
        if path in COMMAND_HELP:
            description, examples = COMMAND_HELP[path]
            command.description = textwrap.fill(description, HELP_WIDTH)
            command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)


def command_paths(parser: argparse.ArgumentParser) -> list[str]:
    """Paths of every command, groups (``models repo``) and leaves (``models repo init``)."""
    return [path for path, _ in _commands(parser, "")]


def command_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser of every command, groups and leaves."""
    return [command for _, command in _commands(parser, "")]


def leaf_commands(parser: argparse.ArgumentParser) -> list[str]:
    """Paths of the commands that run something (``results query``, ``analyze``, ...)."""
    return [path for path, command in _commands(parser, "") if not _subcommands(command)]


def _commands(
    parser: argparse.ArgumentParser, prefix: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for name, command in _subcommands(parser).items():
        path = f"{prefix} {name}".strip()
        yield path, command
        yield from _commands(command, path)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = _subcommand_action(parser)
    return {} if action is None else dict(action.choices)


def chosen_parser(parser: argparse.ArgumentParser,
                  parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the subcommand ``parsed`` chose, as deep as it went ("synth he"), for a
    refusal that shows its usage; ``parser`` itself when none was chosen."""
    action = _subcommand_action(parser)
    chosen = None if action is None else action.choices.get(getattr(parsed, action.dest, None))
    return parser if chosen is None else chosen_parser(chosen, parsed)


def _subcommand_action(parser: argparse.ArgumentParser) -> Any:
    """The parser's subcommands action, or None (``Any``: argparse's class is private)."""
    # Private names, fenced here: argparse has no public way to list subcommands, and
    # _actions / _SubParsersAction are stable since Python 3.2 (tests/test_cli.py fails
    # loudly if that changes: it checks every command has examples).
    for action in parser._actions:  # noqa: SLF001  (no public list of subcommands)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001  (same reason)
            return action
    return None
