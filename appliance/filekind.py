"""What a path that is not the regular file or folder asked for is, in words for a message."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def kind_of_mode(mode: int) -> str:
    """``a file``, ``a folder``, ``a character device``, ... for an ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "no file or folder")


LINK_LOOP = "a symbolic link loop (the link leads back to itself)"


def kind_of(path: Path) -> str | None:
    """What ``path`` is (links followed; ``a broken link``, LINK_LOOP), None when nothing is
    there."""
    try:
        return kind_of_mode(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return "a broken link" if path.is_symlink() else None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
        raise


def other_than_a_folder(path: Path) -> str | None:
    """What is at ``path`` where that is something other than a folder (``a file``, ``a
    named pipe (FIFO)``, ``a broken link``, LINK_LOOP); None for a folder, for nothing, or
    where it cannot be looked at (making the folder then says why)."""
    try:
        kind = kind_of(path)
    except OSError:
        return None
    return None if kind == "a folder" else kind


def link_to_nothing(link: Path) -> str:
    """What the symbolic link ``link``, which leads to no file, is: LINK_LOOP, or a link to a
    target that does not exist (named)."""
    if kind_of(link) == LINK_LOOP:
        return LINK_LOOP
    return f"a symbolic link to {os.readlink(link)}, which does not exist"


def not_a_file(key: str, path: Path) -> str:
    """Why config key ``key`` names no file at ``path``: not there, or what is there instead
    (a folder, a device), which "file not found" would deny."""
    kind = kind_of(path)
    if kind is None:
        return f"{key}: file not found: {path}"
    return f"{key}: {path} is {kind}" + ("" if kind == "a broken link" else ", not a file")


def not_a_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot be made or used as a folder: it, or the nearest part of its path
    that is there, is something else (``/x/f is a file, not a folder``); None when it is a
    folder or could be made (or cannot be looked at: whatever opens it says why)."""
    for part in (folder, *folder.parents):
        try:
            kind = kind_of(part)
        except OSError:
            return None
        if kind == "a folder":
            return None
        if kind is not None:
            return f"{part} is {kind}" + ("" if kind == "a broken link" else ", not a folder")
    return None
