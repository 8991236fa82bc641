"""Printing a command's output where standard output may refuse it (``> file`` on a full disk,
``> /dev/full``, a file over its size limit): one line on stderr naming standard output and the
system's reason, exit 1, never a traceback. A reader that left (``| head``, BrokenPipeError) is
cli.main's to end quietly.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable


class StdoutError(Exception):
    """Standard output failed a write; the text is the system's reason."""


def emit(text: str) -> None:
    """Print ``text`` and flush it; StdoutError when standard output fails the write."""
    try:
        print(text)  # nothing at all when started with standard output closed (`>&-`)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        from appliance.cli import silence_stdout  # noqa: PLC0415  (cli imports every command)

        silence_stdout()  # what stays buffered would fail again at exit, as a traceback
        raise StdoutError(exc.strerror or str(exc)) from exc


def refused_line(command: str, exc: StdoutError) -> str:
    """The line a command says on stderr when standard output refused its output."""
    return f"{command}: cannot write to standard output: {exc}"


def print_out(command: str, text: str) -> int:
    """Print ``text`` to standard output and flush it: 0, or 1 after saying on stderr that it
    could not be written."""
    try:
        emit(text)
    except StdoutError as exc:
        print(refused_line(command, exc), file=sys.stderr)
        return 1
    return 0


def stdout_checked(
    command: str,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """A command handler whose ``emit`` calls may meet a refusing standard output: said in
    one line and exit 1 (before, ``analyze --json > out.json`` on a full disk, ``calibrate``,
    ``models show`` and ``config check`` ended in a traceback)."""

    def wrap(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(handler)
        def checked(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except StdoutError as exc:
                print(refused_line(command, exc), file=sys.stderr)
                return 1

        return checked

    return wrap
