"""One process per state folder: a second daemon on the same config is refused at start.

Two ``appliance edge`` on one config would both measure and write one outbox, and their MQTT
client ids (the same) would knock each other off the broker every second; two back-office
workers with one client id likewise. Each daemon therefore holds an exclusive ``flock`` on a
file in its ``state_dir`` for as long as it runs. The kernel drops the lock when the process
ends, kill -9 and power loss included, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from appliance.filekind import not_a_folder
from appliance.sidefile import open_side_file


class StateLockError(RuntimeError):
    """Another process holds the lock: the message names it and the folder."""


class StateDirError(StateLockError):
    """The state folder is no folder (a file, a device, a broken link): a config error."""


class StateLock:
    """An exclusive lock on ``path`` held until ``release`` (or the process ends)."""

    def __init__(self, path: Path, what: str,
                 remedy: str = "give this one its own state_dir") -> None:
        """``what`` names the daemon in the refusal, ``remedy`` says how to run a second one."""
        self.path = path
        if problem := not_a_folder(path.parent):  # mkdir would say only "File exists"
            raise StateDirError(f"state_dir: {problem}; set state_dir to a folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = open_side_file(path, create=True)  # no link followed
        except OSError as exc:
            raise StateLockError(f"{path}: cannot create the lock file of {what} "
                                 f"({exc.strerror or exc})") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            raise self._refusal(exc, what, remedy) from exc
        with contextlib.suppress(OSError):  # the pid is for the message only
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())

    def _refusal(self, error: OSError, what: str, remedy: str) -> StateLockError:
        """Another process holds the lock (EWOULDBLOCK), or the file system takes no locks
        (NFS without its lock daemon: ENOLCK), which no other daemon has to do with."""
        path = self.path
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            return StateLockError(
                f"{path}: cannot lock the state folder of {what} ({error.strerror or error}); "
                "put state_dir on a local file system"
            )
        return StateLockError(
            f"another {what}{self._holder()} already runs with {path.parent} as its state "
            f"folder (it holds {path}): stop it first, or {remedy}"
        )

    def _holder(self) -> str:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return ""
        return f" (pid {text})" if text.isdigit() else ""

    def release(self) -> None:
        """Drop the lock (the file stays: removing it could race a starting process)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
