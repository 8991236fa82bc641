"""Noticing a measured file saved over in place: which files a folder source looks at again.

A picture written again under its own name (a microscope tool that always saves
``capture.jpg``) changes neither the folder's listing nor the folder's modification time; only
the file's own size and modification time tell. Looking at every file at every poll would cost
a folder of years of captures a share of a core, so each look covers the ``HOT_FILES`` files
with the newest modification times (a tool that saves one name again keeps it the newest) and a
slice of the others, so that every file is looked at within ``SWEEP_S``.

A new size or time says that a file may hold a new picture; for the hot files the picture's
digest says whether it does, so a file whose time alone moved (copied over with its time kept,
touched) is not measured twice.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable

import numpy as np

from appliance.capture.replayed import FileStamp

HOT_FILES = 32
SWEEP_S = 60.0


def picture_digest(rgb: np.ndarray) -> bytes:
    """What identifies a picture: a digest of every pixel."""
    return hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest()


class SavedOverWatch:
    """The measured files to look at again: the newest ones at every look, the rest in turn."""

    def __init__(self, look_every_s: float) -> None:
        self.look_every_s = look_every_s
        self._hot: dict[str, int] = {}  # name -> modification time (ns) as measured
        # name -> digest and the file as it was read, for hot files read this run
        self._pictures: dict[str, tuple[bytes, FileStamp]] = {}
        self._sweep_at = 0
        self._next_look_s = 0.0

    def remember(self, stamp: FileStamp, digest: bytes | None = None) -> None:
        """A file read (with its picture's digest) or found measured by an earlier run."""
        self._hot[stamp.name] = stamp.mtime_ns
        if digest is not None:
            self._pictures[stamp.name] = (digest, stamp)
        if len(self._hot) > HOT_FILES:
            self.forget(min(self._hot, key=self._hot.__getitem__))

    def remember_newest(self, stamps: Iterable[FileStamp]) -> None:
        """Files measured by an earlier run: the newest of them are the hot ones."""
        for stamp in heapq.nlargest(HOT_FILES, stamps, key=lambda s: s.mtime_ns):
            self.remember(stamp)

    def forget(self, name: str) -> None:
        """A file gone, or no longer among the newest."""
        self._hot.pop(name, None)
        self._pictures.pop(name, None)

    def forget_picture(self, stamp: FileStamp) -> None:
        """Forget the picture read from the file as ``stamp`` (it gave no result): the file
        saved again with it is read as new."""
        before = self._pictures.get(stamp.name)
        if before is not None and before[1] == stamp:
            del self._pictures[stamp.name]

    def read_before(self, name: str, digest: bytes) -> FileStamp | None:
        """The file as it was when the very picture a file read again holds was read from it
        before; None for a new picture."""
        before = self._pictures.get(name)
        return before[1] if before is not None and before[0] == digest else None

    def names_to_look_at(self, names: list[str], now_s: float) -> list[str]:
        """The hot files and the sweep's next slice of ``names`` (empty between looks)."""
        if now_s < self._next_look_s or not names:
            return []
        self._next_look_s = now_s + self.look_every_s
        per_look = math.ceil(len(names) * self.look_every_s / SWEEP_S)
        start = self._sweep_at if self._sweep_at < len(names) else 0
        self._sweep_at = start + per_look
        swept = names[start : self._sweep_at]
        return list(self._hot.keys() | set(swept))
