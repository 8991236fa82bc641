"""What an outbox lost, and its count: the outbox's ``dropped()`` and its high-water mark.

A result is counted as dropped where the outbox's policy dropped it (size, age: committed in the
outbox's own ``counters`` table with the write that dropped it), where a commit that held it was
refused (a full disk: the 8-byte tally beside the outbox, appliance/transport/losttally.py), and
where the outbox lost rows it had (cut to 0 bytes, deleted, replaced: told by the high-water mark
beside it, appliance/transport/highwater.py). What neither file could take waits in memory and is
folded into the next write that commits, so the count never under-reports. The outbox
(appliance/transport/outbox.py) calls these under its lock, inside its own transactions.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from appliance.transport import highwater, outbox_file


def count_dropped(db: sqlite3.Connection, count: int) -> None:
    """Add ``count`` to the dropped count committed in the outbox (in an open write)."""
    db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (count,))


def read_dropped(db: sqlite3.Connection) -> int:
    """The dropped count committed in the outbox."""
    return int(db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0])


class OutboxLosses:
    """The losses of the outbox at ``path`` not in its file yet, and the files beside it that
    keep them (none for ``side_files=False``: a copy being built by a repair)."""

    def __init__(self, path: Path, side_files: bool) -> None:
        self.path = path
        self._tally = outbox_file.lost_tally(path) if side_files else None
        self._mark = outbox_file.high_water(path) if side_files else None
        self._unsaved = 0  # lost while neither file could take a write
        self._saved = 0  # the count committed in the outbox, as last read
        self._seq_floor = 0  # a lost outbox's last seq: its sequence goes on from there

    def found_lost_rows(self, db: sqlite3.Connection, depth: int) -> bool:
        """Whether the outbox lost rows since its mark (said in the journal, and held here to
        be counted, with the sequence going on from the mark, by the next write)."""
        if self._mark is None:
            return False
        try:
            now = highwater.current(db, depth)
        except sqlite3.Error:  # unreadable counters: found when the outbox is used
            return False
        if self._mark.found is None:  # a new mark (or an outbox from before marks): kept now
            self._mark.record(now)
            return False
        lost = highwater.lost_since(self._mark, self.path, now)
        if lost is None:
            return False
        self._seq_floor = self._mark.found.last_seq
        self._unsaved += lost
        return True

    def add(self, count: int) -> None:
        """Count results that never reached the outbox file (a refused commit)."""
        if self._tally is None or not self._tally.add(count):
            self._unsaved += count

    def fold(self, db: sqlite3.Connection) -> int:
        """Commit (in the open write) what waits in memory: the dropped count, and the
        sequence going on from a lost outbox's mark; returns the count folded in."""
        if self._seq_floor:
            highwater.raise_seq(db, self._seq_floor)
        unsaved = self._unsaved
        if unsaved:
            count_dropped(db, unsaved)
        return unsaved

    def folded(self, db: sqlite3.Connection, depth: int, unsaved: int) -> None:
        """After the commit of a write that folded ``unsaved`` in: forget it, mark the outbox."""
        self._unsaved -= unsaved
        self._seq_floor = 0
        self.record_mark(db, depth)

    def record_mark(self, db: sqlite3.Connection, depth: int) -> None:
        """Overwrite the high-water mark with what is committed now (after a commit)."""
        if self._mark is None or self._seq_floor:  # a lost outbox's mark stays until counted
            return
        with contextlib.suppress(sqlite3.Error):  # unread: the mark lags, never runs ahead
            self._mark.record(highwater.current(db, depth))

    def total(self, saved: int | None) -> int:
        """Every result lost, ever, given the committed count just read (None: unreadable, the
        last value read stands)."""
        if saved is not None:
            self._saved = saved
        tallied = self._tally.value if self._tally is not None else 0
        return self._saved + tallied + self._unsaved

    def close(self) -> None:
        """Close the files beside the outbox."""
        if self._tally is not None:
            self._tally.close()
            self._tally = None
        if self._mark is not None:
            self._mark.close()
            self._mark = None
