"""The files of a folder that could not be loaded, and when each is read again.

A file that cannot be loaded may still be being written: it is read again once its size or
modification time changes, or once after it has stayed unchanged for ``settle_s``; a file
still broken then is broken for good (reported once by the source) and left alone until it
changes. At most one read a poll, so a file being written is not read in a busy loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.capture.replayed import FileStamp


@dataclass
class _LoadFailure:
    """A file that could not be loaded, as it was then."""

    stamp: FileStamp
    failed_mono_s: float
    reported: bool = False


class LoadFailures:
    """The files whose last load failed, by name."""

    def __init__(self, poll_s: float, settle_s: float) -> None:
        self.poll_s, self.settle_s = poll_s, settle_s
        self._by_name: dict[str, _LoadFailure] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def due(self, stamp: FileStamp, now_s: float) -> bool:
        """Whether to read the file now: it has not failed, or (at most once a poll) it
        changed since, or it has settled unchanged and is not yet broken for good."""
        failure = self._by_name.get(stamp.name)
        if failure is None:
            return True
        waited_s = now_s - failure.failed_mono_s
        if waited_s < self.poll_s:
            return False
        if stamp != failure.stamp:
            return True
        return not failure.reported and waited_s >= self.settle_s

    def failed(self, stamp: FileStamp, now_s: float) -> bool:
        """Note that the file as ``stamp`` shows it did not load; True when it failed as it is
        already: broken for good, left alone until it changes."""
        previous = self._by_name.get(stamp.name)
        if previous is not None and previous.stamp == stamp:
            previous.reported = True
            return True
        self.read_later(stamp, now_s)
        return False

    def read_later(self, stamp: FileStamp, now_s: float) -> None:
        """Read the file again once it changes or settles (it changed while it was read)."""
        self._by_name[stamp.name] = _LoadFailure(stamp, now_s)

    def loaded(self, name: str) -> None:
        """The file loaded: forget its failures."""
        self._by_name.pop(name, None)

    def keep_only(self, names: set[str]) -> None:
        """Forget the files no longer in the folder."""
        self._by_name = {n: f for n, f in self._by_name.items() if n in names}
