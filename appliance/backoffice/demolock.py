"""One ``appliance demo`` at a time on a store: a second one is refused at once.

Every demo names its kiosks the same (``demo/kiosk-demo-1`` ...), so two demos on one store
(both on ./state by default) mixed their results, and the first one's closing fleet table
showed the other's kiosks as online. While a demo runs it holds an exclusive ``flock`` on a
lock file beside a SQLite store (in the state folder for a PostgreSQL one). The kernel drops the
lock when the demo exits, kill -9 included, so none is left stuck; the file stays, holding the
pid of the last demo that took it, which a refusal names.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "demo.lock"


class DemoLockError(RuntimeError):
    """Another demo runs on the store, or its lock cannot be taken; the text says what to do."""


def lock_path(store_url: str, state_dir: str) -> Path:
    """The demo lock of a store: beside a SQLite store's file, else in ``state_dir``."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///")).parent / LOCK_NAME
    return Path(state_dir) / LOCK_NAME


@contextmanager
def demo_lock(path: Path) -> Iterator[None]:
    """Hold the demo lock at ``path`` for the ``with`` block; DemoLockError when it is held."""
    fd = _locked(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _locked(path: Path) -> int:
    """A descriptor of the lock file (made if missing) holding its exclusive flock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DemoLockError(f"cannot make the lock file {path} ({exc.strerror or exc}); "
                            "give a writable --store or --config, or run it with "
                            "--throwaway") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = _holder(fd)
        os.close(fd)
        raise DemoLockError(
            f"another demo{holder} runs on this store now ({path} is locked): the two would "
            "mix their kiosks and results; wait for it to end, or run this one with "
            "--throwaway, or give it another --store or --config") from exc
    except OSError as exc:  # a file system without locks
        os.close(fd)
        raise DemoLockError(f"cannot lock {path} ({exc.strerror or exc}); give a --store on a "
                            "local disk, or run it with --throwaway") from exc
    return fd


def _holder(fd: int) -> str:
    """`` (pid N)`` of the demo that holds the lock, '' before it has written its pid."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""
