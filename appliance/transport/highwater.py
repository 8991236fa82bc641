"""The outbox's high-water mark: what it had committed, kept beside it to notice when it is gone.

An outbox truncated to 0 bytes, deleted, or replaced by an empty (or older) database opens as a
sound outbox with fewer rows: SQLite cannot tell that results waited in it. After each commit
the outbox overwrites, in place, 24 bytes beside itself (``outbox.sqlite3.highwater``): the
highest sequence number it has committed, how many results wait, and its dropped count. An
outbox that opens with a highest sequence number below the mark has lost rows it had:
``lost_since`` says so in the journal, and the outbox (appliance/transport/outbox.py) counts
them as dropped and goes on numbering from the mark, so the loss is said and counted once.
A repair, which renumbers the rows it recovers, goes on from the mark too
(appliance/transport/outbox_repair.py).

The mark is written after the outbox's commit (fsync'd) and is not fsync'd itself: it rides on
the kernel's write-back, so it costs no extra fsync per result. It can lag the outbox after a
power cut, never run ahead of it, so it never reports a loss that did not happen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

from appliance.sidefile import open_side_file

log = logging.getLogger(__name__)
_FORMAT = "<qqq"  # last committed seq, results waiting, dropped count (little-endian int64)
SIZE = struct.calcsize(_FORMAT)
SUFFIX = ".highwater"
MAX_COUNT = 1 << 48  # no kiosk commits more (a result a second for 8 million years)


@dataclass(frozen=True)
class Mark:
    """What the outbox held after its last recorded commit."""

    last_seq: int
    waiting: int
    dropped: int


class HighWater:
    """The mark beside the outbox at ``outbox``, open while the outbox is; ``found`` is what
    it said at opening (None: new, cut short or not a mark, so no loss can be told). OSError
    when it cannot be made."""

    def __init__(self, outbox: Path) -> None:
        self.path = outbox.with_name(outbox.name + SUFFIX)
        self._fd = open_side_file(self.path, create=True)
        try:
            self.found = _parsed(os.pread(self._fd, SIZE, 0))
        except OSError:
            os.close(self._fd)
            raise

    def record(self, mark: Mark) -> None:
        """Overwrite the mark in place (a full disk takes it once the file has its block)."""
        with contextlib.suppress(OSError):  # the mark lags: a later loss is under-reported
            os.pwrite(self._fd, struct.pack(_FORMAT, mark.last_seq, mark.waiting, mark.dropped), 0)

    def close(self) -> None:
        """Close the file (the mark stays in it)."""
        os.close(self._fd)


def read_mark(outbox: Path) -> Mark | None:
    """The mark beside the outbox at ``outbox`` without making one (None: none to be read)."""
    try:
        fd = open_side_file(outbox.with_name(outbox.name + SUFFIX), create=False)
    except OSError:
        return None
    try:
        return _parsed(os.pread(fd, SIZE, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _parsed(data: bytes) -> Mark | None:
    """The mark these bytes hold (None: cut short or garbled)."""
    values = struct.unpack(_FORMAT, data) if len(data) == SIZE else None
    if not values or min(values) < 0 or max(values) > MAX_COUNT:
        return None  # cut short, or garbled: followed, it would stop the outbox numbering
    return Mark(*values)


def current(db: sqlite3.Connection, waiting: int) -> Mark:
    """The mark of the outbox ``db`` as committed now (``waiting``: its row count)."""
    row = db.execute(
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), "
        "(SELECT value FROM counters WHERE name = 'dropped')"
    ).fetchone()
    return Mark(int(row[0] or 0), waiting, int(row[1] or 0))


def raise_seq(db: sqlite3.Connection, floor: int) -> None:
    """Make the outbox's next sequence number follow ``floor`` (in the caller's transaction),
    so that its sequence never restarts below what it had committed."""
    raised = db.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'outbox'", (floor,)
    ).rowcount
    if not raised:  # no row was ever inserted: SQLite has no entry for the table yet
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (floor,))


def shortfall(found: Mark | None, last_seq: int, dropped: int) -> tuple[int, int] | None:
    """What an outbox that has committed up to ``last_seq`` and counted ``dropped`` lacks of
    what its mark ``found`` says it had: (results that waited in it, up to the commits it
    lacks; the dropped count it had beyond ``dropped``); None when it lacks no commit."""
    if found is None or found.last_seq <= last_seq:
        return None
    return min(found.waiting, found.last_seq - last_seq), max(0, found.dropped - dropped)


def lost_since(mark: HighWater, outbox: Path, now: Mark) -> int | None:
    """How many results to count as dropped because the outbox at ``outbox`` holds fewer
    commits than its mark says it made (said in the journal): those that waited in it, up to
    the commits it lacks, and the dropped count it had; None when it lost nothing."""
    found = mark.found
    short = shortfall(found, now.last_seq, now.dropped)
    if found is None or short is None:
        return None
    unaccounted, earlier = short
    log.log(
        logging.ERROR if unaccounted or earlier else logging.WARNING,
        "%s: the outbox lost results it held: it has committed up to result #%d, but %s says it "
        "had committed up to #%d with %d waiting; it was emptied, cut short, replaced or "
        "restored from an older copy: %d result(s) are unaccounted for (counted dropped, with "
        "the %d it had counted before); new results are kept as before", outbox, now.last_seq,
        mark.path, found.last_seq, found.waiting, unaccounted, earlier,
    )
    return unaccounted + earlier
