"""The small files kept beside what they guard, opened safely: the outbox's high-water mark and
lost tally (appliance/transport/), a daemon's state lock (appliance/statelock.py) and the
demo's (appliance/filelock.py), the model repository's lock files (appliance/updates/repofiles.py).

Each is a few bytes overwritten in place. Opened as found, a link in its place would have those
bytes written into whatever file it points to, and a FIFO would hold the opening (and with it
the daemon's start) until something wrote into it. ``open_side_file`` opens only a regular file
and never follows a link; anything else is an OSError naming the path and what is there.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class SideFileError(OSError):
    """What is in a side file's place is no regular file; ``filename`` is it, ``strerror`` says
    what is there."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def open_side_file(path: Path, *, create: bool) -> int:
    """A descriptor of the regular file ``path`` for reading and writing (made when ``create``
    and missing; read only when not). OSError when it cannot be opened; SideFileError when a
    link, a FIFO, a folder or a device is there."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK  # no link followed; a FIFO does not wait for a writer
    flags |= os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SideFileError(exc.errno, "a link, not followed; move it aside",
                                str(path)) from exc
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise SideFileError(errno.EINVAL, f"not a regular file (a {_kind(mode)}); move it aside",
                            str(path))
    return fd


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "folder"
    return "device or socket"
