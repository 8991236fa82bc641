"""One picture measured once, whatever names it has in the watched folder.

A folder source (capture/folder.py) digests each picture it reads (``picture_digest``). A
picture read already, under another name (a hard link, a copy, the file renamed) or under this
name as the file was before (saved again with the same picture), is not measured again: the
file as it is now is recorded measured once that picture's result is committed, so a restart
does not measure it under a new id either. The record of measured files keeps each picture's
digest (capture/replayed.py), so a picture measured by an earlier run is known too. A picture
that gave no result (the quality gate refused it, its measurement failed, or a commit the outbox
refused dropped its result, to be measured again) counts as not read: the files waiting on it
are read again, and the first of them is measured. The source's reading thread and the
outbox's commit thread both call in, one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from appliance.capture.replayed import FileStamp, ReplayRecord


class PicturesRead:
    """The pictures read and not yet recorded measured, and the files waiting on them."""

    def __init__(self) -> None:
        self.record: ReplayRecord | None = None  # none: nothing is recorded (no state_dir)
        # name -> (the file as read, as it is now) for a file holding a picture read before
        # whose result was not committed yet (recorded as it is now then)
        self._waiting: dict[str, tuple[FileStamp, FileStamp]] = {}
        # pictures read and not yet recorded measured: digest -> the file read, and back
        self._unrecorded: dict[bytes, FileStamp] = {}
        self._digest_of: dict[FileStamp, bytes] = {}
        self._lock = threading.Lock()  # the commit thread records too

    def read_before(self, stamp: FileStamp, digest: bytes) -> FileStamp | None:
        """The file as it was when this very picture was read before (this run, or recorded
        measured by any run) under another name or stamp; None for a picture not read before
        (noted now, until its result is recorded)."""
        with self._lock:
            before = self._unrecorded.get(digest)
            if before is None and self.record is not None:
                before = self.record.holding_picture(digest)
            if before is None or before == stamp:
                self._unrecorded[digest] = stamp
                self._digest_of[stamp] = digest
                return None
            return before

    def same_picture(self, before: FileStamp, now: FileStamp, digest: bytes) -> None:
        """Record the file as it is ``now`` once its picture's result (read as it was
        ``before``) is committed, so a restart does not measure it again under a new id; it
        waits on that result also without a record, to be read again should none come."""
        with self._lock:
            waiting = self._waiting.get(now.name)
            if waiting is not None and waiting[1] == before:  # ``before`` itself waits
                before = waiting[0]
            if self.record is not None and self.record.holds(before):
                self._waiting.pop(now.name, None)
                self.record.record([now], {now: digest})
            else:
                self._waiting[now.name] = (before, now)
                self._digest_of.setdefault(now, digest)

    def committed(self, stamps: list[FileStamp]) -> None:
        """Record files whose results the outbox has committed (or refused as full, counted
        dropped), and those waiting on them."""
        if self.record is None:
            return
        with self._lock:
            committed = set(stamps)
            later = [now for before, now in self._waiting.values() if before in committed]
            self._waiting = {name: waiting for name, waiting in self._waiting.items()
                             if waiting[0] not in committed}
            digests = {s: self._digest_of.pop(s) for s in [*stamps, *later]
                       if s in self._digest_of}
            for digest in digests.values():
                self._unrecorded.pop(digest, None)  # the record holds it now
            self.record.record([*stamps, *later], digests)  # a name's later stamp replaces

    def not_measured(self, stamp: FileStamp) -> list[FileStamp]:
        """Forget the picture read from the file as ``stamp``, which gave no result (refused
        by the quality gate, its measurement failed, or a refused commit dropped its result);
        returns the files that waited on it, as they were read, to be read again."""
        with self._lock:
            digest = self._digest_of.pop(stamp, None)
            if digest is not None and self._unrecorded.get(digest) == stamp:
                del self._unrecorded[digest]
            twins = [now for before, now in self._waiting.values() if before == stamp]
            self._waiting = {name: waiting for name, waiting in self._waiting.items()
                             if waiting[0] != stamp}
            for twin in twins:
                self._digest_of.pop(twin, None)
            return twins

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget the files not among ``names`` (deleted from the folder)."""
        listed = set(names)
        with self._lock:
            self._waiting = {n: w for n, w in self._waiting.items() if n in listed}
            self._digest_of = {s: d for s, d in self._digest_of.items() if s.name in listed}
            self._unrecorded = {d: s for d, s in self._unrecorded.items() if s.name in listed}
