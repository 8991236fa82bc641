"""What a path that is not the regular file or folder asked for is, in words for a message."""

from __future__ import annotations

import stat
from pathlib import Path

_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def kind_of_mode(mode: int) -> str:
    """``a file``, ``a folder``, ``a character device``, ... for an ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "no file or folder")


def kind_of(path: Path) -> str | None:
    """What ``path`` is (links followed; ``a broken link``), None when nothing is there."""
    try:
        return kind_of_mode(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return "a broken link" if path.is_symlink() else None


def not_a_file(key: str, path: Path) -> str:
    """Why config key ``key`` names no file at ``path``: not there, or what is there instead
    (a folder, a device), which "file not found" would deny."""
    kind = kind_of(path)
    if kind is None:
        return f"{key}: file not found: {path}"
    return f"{key}: {path} is {kind}" + ("" if kind == "a broken link" else ", not a file")
