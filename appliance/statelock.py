"""One process per state folder: a second daemon on the same config is refused at start.

Two ``appliance edge`` on one config would both measure and write one outbox, and their MQTT
client ids (the same) would knock each other off the broker every second; two back-office
workers with one client id likewise. Each daemon therefore holds an exclusive ``flock`` on a
file in its ``state_dir`` for as long as it runs (appliance/filelock.py). The kernel drops
the lock when the process ends, kill -9 and power loss included, so a stale lock file never
blocks a restart.
"""

from __future__ import annotations

from pathlib import Path

from appliance.filekind import not_a_folder
from appliance.filelock import LockBusyError, LockOpenError, LockUnsupportedError, exclusive_lock


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
            self._lock = exclusive_lock(path, record_pid=True)  # no link followed
        except LockOpenError as exc:
            raise StateLockError(f"{path}: cannot create the lock file of {what} "
                                 f"({exc.strerror})") from exc
        except LockBusyError as exc:
            raise StateLockError(
                f"another {what}{exc.holder} already runs with {path.parent} as its state "
                f"folder (it holds {path}): stop it first, or {remedy}") from exc
        except LockUnsupportedError as exc:  # NFS without its lock daemon: ENOLCK
            raise StateLockError(f"{path}: cannot lock the state folder of {what} "
                                 f"({exc.strerror}); put state_dir on a local file "
                                 "system") from exc

    def release(self) -> None:
        """Drop the lock (the file stays: removing it could race a starting process)."""
        self._lock.release()
