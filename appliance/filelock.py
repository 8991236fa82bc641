"""One process at a time on a file or a folder: an exclusive ``flock``, refused at once when held.

A command that must not run twice on the same thing (``appliance demo`` on a store, a
``pathology run`` into a results folder) takes ``exclusive_lock`` on a lock file or on the
folder itself and keeps it while it runs. It never waits: a lock another process holds is
``LockBusyError`` at once, which the command turns into a refusal naming what to do. The kernel
drops the lock when the holder exits, kill -9 included, so no stale lock ever blocks the next
run; a lock file stays, holding the pid of the last process that took it (``record_pid``)
and what that process was (``command``), which the next refusal names. The three ways it can
fail are told apart, so that nobody is sent looking for another process when the path cannot
be made or its file system takes no locks (NFS without its lock daemon).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from appliance.sidefile import open_side_file

_HOLDER_BYTES = 128  # the most of a lock file read for its holder's pid and command


class LockError(OSError):
    """The lock cannot be taken; ``filename`` is the path, ``strerror`` says why, the subclass
    at which step."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class LockOpenError(LockError):
    """The lock file or folder cannot be made or opened (read-only, no such place, ...)."""


class LockUnsupportedError(LockError):
    """The file system takes no locks (ENOLCK, EOPNOTSUPP); nobody holds it."""


class LockBusyError(LockError):
    """Another process holds the lock; ``holder`` reads `` (pid N)`` when it wrote its pid
    (`` (pid N: COMMAND)`` when it wrote what it is too), else ''."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(errno.EWOULDBLOCK, f"locked by another process{holder}", str(path))
        self.holder = holder


class FileLock:
    """An exclusive lock held on an open descriptor (``fd``) until ``release`` or exit."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (a lock file stays: removing it could race a process taking it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def exclusive_lock(
    path: Path, *, folder: bool = False, record_pid: bool = False, command: str = ""
) -> FileLock:
    """The exclusive lock of ``path``: a lock file, or with ``folder`` the folder itself (made
    with its parents when missing); ``record_pid`` writes this process's pid into the file, and
    ``command`` (one printable line) after it, for the next refusal to name. LockBusyError,
    LockOpenError or LockUnsupportedError otherwise."""
    fd = _opened(path, folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = "" if folder else _holder(fd)
        os.close(fd)
        raise LockBusyError(path, holder) from exc
    except OSError as exc:
        os.close(fd)
        raise LockUnsupportedError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    if record_pid:
        with contextlib.suppress(OSError):  # the pid is for a refusal's message only
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {command}".rstrip().encode() + b"\n")
    return FileLock(fd)


def _opened(path: Path, folder: bool) -> int:
    """A descriptor of the folder ``path`` or of the lock file ``path`` (made if missing; a
    link, a FIFO or a device in its place is LockOpenError, saying what is there)."""
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_side_file(path, create=True)  # a link is not written through
    except OSError as exc:
        raise LockOpenError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _holder(fd: int) -> str:
    """`` (pid N)`` of the process that holds the lock, `` (pid N: COMMAND)`` when it wrote what
    it is, '' before it has written its pid."""
    line = os.pread(fd, _HOLDER_BYTES, 0).decode(errors="replace").split("\n", 1)[0]
    pid, _, command = line.strip().partition(" ")
    if not pid.isdigit():
        return ""
    return f" (pid {pid}: {command})" if command.isprintable() and command else f" (pid {pid})"
