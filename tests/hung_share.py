"""A folder that stops answering as a hung network share does, without a network share.

An NFS or SMB mount whose server stops answering blocks every stat and listing under it in the
kernel. A test cannot make a local folder do that (no FUSE, no NFS server here), so this blocks
those calls at the boundary with the OS instead: ``os.stat`` and ``os.scandir`` (pathlib's
stat, is_dir, read_bytes' size check and every listing go through them) on a path inside the
folder wait while the share is hung, on whichever thread makes them, as the kernel would.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class HungShare:
    """Makes calls on ``folder`` block while hung; counts the calls blocked right now."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = os.fsdecode(folder)
        self._answering = threading.Event()
        self._answering.set()
        self._lock = threading.Lock()
        self.blocked = 0  # calls waiting for the share now
        self.blocked_most = 0  # the most ever waiting at once
        monkeypatch.setattr(os, "stat", self._blocking(os.stat))
        monkeypatch.setattr(os, "scandir", self._blocking(os.scandir))

    def hang(self) -> None:
        """The server stops answering."""
        self._answering.clear()

    def answer(self) -> None:
        """The server answers again: every blocked call goes on."""
        self._answering.set()

    def _inside(self, path: Any) -> bool:
        if isinstance(path, int):  # a file descriptor
            return False
        name = os.fsdecode(os.fspath(path))
        return name == self.folder or name.startswith(self.folder + os.sep)

    def _blocking(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def blocking(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            if self._inside(path) and not self._answering.is_set():
                with self._lock:
                    self.blocked += 1
                    self.blocked_most = max(self.blocked_most, self.blocked)
                self._answering.wait()
                with self._lock:
                    self.blocked -= 1
            return call(path, *args, **kwargs)

        return blocking
