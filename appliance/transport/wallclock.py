"""Noticing the wall clock jump, so that ages kept as wall-clock times survive the jump.

A kiosk without a battery-backed clock boots with an old date and measures with it until NTP
first syncs, which moves the wall clock by weeks or months at once; a date set by hand does the
same, either way. The outbox keeps each result's commit time as a wall-clock time (it must
survive a restart), so such a jump made every waiting result look months old, and the age
limit dropped them all. Against the time since boot, which runs on through a suspend and never
jumps, a jump shows as the wall clock moving more (or less) than the time that passed.

Only the results committed in this boot follow a jump: those of an earlier boot were timed by
that boot's clock. The time since boot starts again at each boot, so a kiosk that booted with
the clock it saved at shutdown (hours behind) and then synced took the hours it was off for a
jump, and moved the results it had committed before it was switched off by them too: they
looked that much younger, outlived the age limit by as long, and the status's oldest age read
hours short. The outbox keeps the boot it last wrote in (``BootRows``) with the last sequence
number committed before that boot.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

CLOCK_JUMP_S = 60.0  # NTP slews by at most 0.5 ms/s: a larger step between two looks is a jump
_SINCE_BOOT = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")  # a new random UUID at each boot (Linux)

ClockReading = tuple[float, float]  # (wall clock, time since boot), both in seconds


def clock_now() -> ClockReading:
    """The wall clock and the time since boot, read together."""
    return time.time(), time.clock_gettime(_SINCE_BOOT)


class JumpWatch:
    """How far the wall clock jumped since the reading last marked ``seen``."""

    def __init__(self) -> None:
        self._seen = clock_now()

    def jump_s(self, now: ClockReading) -> float:
        """Seconds the wall clock moved beyond the time that passed (0.0: no jump)."""
        jump_s = (now[0] - self._seen[0]) - (now[1] - self._seen[1])
        return jump_s if abs(jump_s) > CLOCK_JUMP_S else 0.0

    def seen(self, now: ClockReading) -> None:
        """Ages are right as of this reading (the jump up to it is accounted for)."""
        self._seen = now


def boot_id() -> int:
    """This boot's id as a positive 63-bit number (0 where the system does not say it)."""
    try:
        return int(BOOT_ID_FILE.read_text(encoding="ascii").strip().replace("-", ""), 16) >> 65
    except (OSError, ValueError):
        return 0


class BootRows:
    """Which outbox rows this boot committed: those past ``floor``, the last sequence number
    committed before it (kept in the outbox's ``counters`` as ``boot_id`` and ``boot_floor``)."""

    def __init__(self) -> None:
        self.boot = boot_id()
        self._floor: int | None = None

    def floor(self, db: sqlite3.Connection) -> int:
        """The floor, recorded in ``db`` (inside the caller's write) when the outbox last wrote
        in another boot: all its rows then are of earlier boots."""
        if not self.boot:  # the system does not say its boots apart: every row follows
            return 0
        stored = dict(db.execute("SELECT name, value FROM counters WHERE name IN "
                                 "('boot_id', 'boot_floor')").fetchall())
        if stored.get("boot_id") == self.boot:
            return int(stored.get("boot_floor", 0))
        if self._floor is None:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            self._floor = int(row[0]) if row else 0
        db.executemany("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)",
                       [("boot_id", self.boot), ("boot_floor", self._floor)])
        return self._floor
