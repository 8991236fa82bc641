"""Printing a command's output where standard output may refuse it (``> file`` on a full disk,
``> /dev/full``, a file over its size limit): one line on stderr naming standard output and the
system's reason, exit 1, never a traceback. A reader that left (``| head``, BrokenPipeError) is
cli.main's to end quietly.

While a command runs, ``sys.stdout`` writes to the same file through ``_StdoutFile``, whose
failed writes raise StdoutError: an OSError from ``print`` does not say which file refused it,
and after it the buffer is empty, so nothing later could tell standard output's failure from a
file's. Every command's printing is so covered, not only the ones that use ``emit``.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class StdoutError(Exception):
    """Standard output failed a write; the text is the system's reason. Not an OSError, so a
    command's own handling of its files' errors does not take it for one of them."""


class _StdoutFile(io.FileIO):
    """Standard output's file descriptor, whose failed writes raise StdoutError."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        """Write as FileIO does; a failure other than a closed pipe is StdoutError."""
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.strerror or str(exc)) from exc


@contextmanager
def watched_stdout() -> Iterator[None]:
    """Run the block with ``sys.stdout`` writing through _StdoutFile. Only the process's own
    standard output is watched (a test's capture is left alone); the old stream comes back
    after the block."""
    original = sys.stdout
    try:
        fd = original.fileno() if original is sys.__stdout__ and original is not None else -1
    except (OSError, ValueError):  # no file behind it
        fd = -1
    if fd < 0:
        yield
        return
    original.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_StdoutFile(fd, "w", closefd=False)), encoding=original.encoding,
        errors=original.errors, line_buffering=bool(original.line_buffering),
    )
    try:
        yield
    finally:
        watched, sys.stdout = sys.stdout, original
        try:
            watched.flush()
        except (OSError, StdoutError):  # said by the command already, or a reader that left
            silence_stdout()  # what is left would fail again when the stream is collected
        watched.detach()


def refused_line(command: str, exc: StdoutError) -> str:
    """The line a command says on stderr when standard output refused its output."""
    return f"{command}: cannot write to standard output: {exc}"


def emit(text: str) -> None:
    """Print ``text`` and flush it; StdoutError when standard output fails the write."""
    print(text)  # nothing at all when started with standard output closed (`>&-`)
    if sys.stdout is not None:
        sys.stdout.flush()


def print_out(command: str, text: str) -> int:
    """Print ``text`` to standard output and flush it: 0, or 1 after saying on stderr that it
    could not be written."""
    try:
        emit(text)
    except StdoutError as exc:
        silence_stdout()
        print(refused_line(command, exc), file=sys.stderr)
        return 1
    return 0


def silence_stdout() -> None:
    """Point standard output at /dev/null: what stays buffered would fail again at exit."""
    from appliance.cli import silence_stdout as to_devnull  # noqa: PLC0415  (cli imports us)

    to_devnull()
