"""Noticing the wall clock jump, so that ages kept as wall-clock times survive the jump.

A kiosk without a battery-backed clock boots with an old date and measures with it until NTP
first syncs, which moves the wall clock by weeks or months at once; a date set by hand does the
same, either way. The outbox keeps each result's commit time as a wall-clock time (it must
survive a restart), so such a jump made every waiting result look months old, and the age
limit dropped them all. Against the time since boot, which runs on through a suspend and never
jumps, a jump shows as the wall clock moving more (or less) than the time that passed.
"""

from __future__ import annotations

import time

CLOCK_JUMP_S = 60.0  # NTP slews by at most 0.5 ms/s: a larger step between two looks is a jump
_SINCE_BOOT = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)

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
