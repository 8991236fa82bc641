"""Asking for a password on the terminal, echo off, read no further than a limit.

``getpass.getpass`` reads the typed line whole: with no terminal it reads standard input, where
a pipe of endless bytes without a newline (``cat /dev/zero |``) is read until memory runs out.
This asks on the controlling terminal as getpass does where standard input is a terminal (echo
off), and reads standard input without a prompt where it is none (a pipe, a file), but reads
at most one character past the limit, and refuses a longer line before anything is stored.
Restoring the terminal discards what was typed past the limit (``TCSAFLUSH``), so the shell
never reads the rest of a password as a command.
"""

from __future__ import annotations

import io
import os
import sys
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_NOT_TEXT = "password: not UTF-8 text; type it again, or use --password-file"


def ask_new_password(limit_chars: int) -> str:
    """A new password, without its newline: typed twice on the controlling terminal, echo
    off, as a typo typed blind would lock its user out; where standard input is no terminal
    (``echo "$PW" | ...``, a file, a script's input) its first line, with no prompt, as
    nobody is there to read one (a pipe has no typo to catch). EOFError when the input ended,
    ValueError when a line is longer than ``limit_chars`` or not text, or the two typed
    differ."""
    if sys.stdin is None or not sys.stdin.isatty():  # None: started with standard input closed
        return _ask_on(sys.stdin or io.StringIO(), None, "", limit_chars)
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:  # a terminal, but not this process's controlling one: ask on it
        return _ask_on(sys.stdin, sys.stderr, "password: ", limit_chars)
    with io.TextIOWrapper(io.FileIO(fd, "w+")) as terminal:
        first = _ask_on(terminal, terminal, "password: ", limit_chars)
        if _ask_on(terminal, terminal, "again: ", limit_chars) != first:
            raise ValueError("the two passwords differ")
        return first


def _ask_on(source: TextIO, shown_on: TextIO | None, prompt: str, limit_chars: int) -> str:
    """The line read from ``source`` after ``prompt`` on ``shown_on`` (None: no prompt; see
    ask_new_password)."""
    with _echo_off(source):
        _show(shown_on, prompt)
        try:
            # the password, its newline and one more: a longer line is told by its length
            line = source.readline(limit_chars + 2)
            line.encode("utf-8")  # standard input may hold undecodable bytes as surrogates
        except UnicodeError:
            raise ValueError(_NOT_TEXT) from None
    _show(shown_on, "\n")  # the newline the unechoed typing did not show
    if not line:
        raise EOFError
    password = line.removesuffix("\n").removesuffix("\r")
    if len(password) > limit_chars:
        raise ValueError(f"password: longer than {limit_chars} characters; nothing was stored")
    return password


def _show(shown_on: TextIO | None, text: str) -> None:
    if shown_on is not None:
        shown_on.write(text)
        shown_on.flush()


@contextmanager
def _echo_off(source: TextIO) -> Iterator[None]:
    """Within the block a terminal ``source`` does not show what is typed; leaving it restores
    the terminal and discards input not read (TCSAFLUSH). Anything else is read as it is."""
    try:
        fd = source.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):  # not a terminal (a pipe, a file, a StringIO)
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO  # the local modes
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
