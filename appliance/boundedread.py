"""Reading a whole small file that whoever can write its folder could swap for something else:
opened without waiting (a pipe there would wait for a writer for ever), checked on the opened
descriptor to be a regular file (a link to a device such as /dev/zero would never end), and read
no further than one byte past its limit. Callers turn the two refusals into their own errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from appliance.filekind import link_to_nothing


class NotRegularFileError(ValueError):
    """What is at the path (a link followed) is a pipe, a device, a socket or a folder."""


class TooLargeError(ValueError):
    """The file holds more bytes than its limit."""


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (a link to one too), at most ``limit`` of them;
    NotRegularFileError or TooLargeError otherwise, OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path}: not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"{path}: more than {limit} bytes")
    return data


def what_is_there(path: Path, kind: str, missing: str = "") -> str | None:
    """What is at ``path`` when it is no regular file (a link to one is), said of a ``kind``
    such as "model file": a folder, something else (a pipe, a socket, a device) or nothing
    ("``missing`` not found", ``kind`` unless given); None for a regular file."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"a folder, not a {kind}"
    if path.exists():
        return f"not a regular file (a pipe, socket or device), not a {kind}"
    if path.is_symlink():  # a link that leads to nothing: "not found" denied what ls shows
        return f"{link_to_nothing(path)}, not a {kind}"
    return f"{missing or kind} not found"
