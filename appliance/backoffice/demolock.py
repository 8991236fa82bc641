"""One ``appliance demo`` at a time on a store: a second one is refused at once.

Every demo names its kiosks the same (``demo/kiosk-demo-1`` ...), so two demos on one store
(both on ./state by default) mixed their results, and the first one's closing fleet table
showed the other's kiosks as online. While a demo runs it holds an exclusive ``flock`` on a
lock file beside a SQLite store (in the state folder for a PostgreSQL one; appliance/filelock.py).
The kernel drops the lock when the demo exits, kill -9 included, so none is left stuck; the file
stays, holding the pid of the last demo that took it, which a refusal names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.filelock import LockBusyError, LockOpenError, LockUnsupportedError, exclusive_lock

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
    try:
        lock = exclusive_lock(path, record_pid=True)
    except LockOpenError as exc:
        raise DemoLockError(f"cannot make the lock file {path} ({exc.strerror}); give a "
                            "writable --store or --config, or run it with --throwaway") from exc
    except LockBusyError as exc:
        raise DemoLockError(
            f"another demo{exc.holder} runs on this store now ({path} is locked): the two "
            "would mix their kiosks and results; wait for it to end, or run this one with "
            "--throwaway, or give it another --store or --config") from exc
    except LockUnsupportedError as exc:
        raise DemoLockError(f"cannot lock {path} ({exc.strerror}); give a --store on a "
                            "local disk, or run it with --throwaway") from exc
    with lock:
        yield
