"""Whether a result of an erased subject that arrives after the erasure was captured after it
(the person came back and agreed again), judged by the back office's clock, not the kiosk's.

A result's ``captured_at`` is written by its kiosk's clock, which may run ahead (a wrong
setting, a hostile kiosk), behind (a dead CMOS battery resets it to the past until NTP steps
it) or be stepped between a capture and its delivery. Taken on trust, a clock a day ahead
brings an erased subject's old results back (captured "after" the erasure), and one an hour
behind throws a new consent's result away. So the back office reads each kiosk's clock itself:
every live "online" status (built as it is sent; not a retained copy, not the last will,
written when the kiosk connected) says the kiosk's time ``at``, and its receipt the back
office's, so ``at`` minus the receipt is how far the kiosk runs ahead (store_writes.py keeps
the latest reading in ``devices``). Its error is the status's delay (seconds) and the drift
since; ``MARGIN`` covers both.

A result received at or before the erasure (both by the back office's clock) was captured
before it. A later one's capture is its ``captured_at`` corrected by a reading taken within
``READING_FRESH`` of its receipt (without one, ``captured_at`` as written), and the two ways
of being wrong are not treated alike. Storing a result captured before the erasure breaks the
erasure, so a result is stored only on the evidence of a fresh reading that holds for the
moment of its capture too: received within ``LIVE`` of that capture, which lies more than
``MARGIN`` after the erasure. Whatever lies more than ``MARGIN`` before the erasure is not
stored (confirmed to its kiosk, as a re-sent erased result is), fresh reading or not: the
erasure wins where the clock cannot be trusted. Anything else, placed after the erasure or
near it but without that evidence (a kiosk never read, read long ago, a result sent long
after its capture: a backlog, from across a reboot that may have stepped the clock; one
within the margin), is held: kept as a dead letter that says why (its kiosk is told it may
drop it, since the letter is its copy), stored by ``appliance results release --result ID``
when the person did agree again, removed by erasing the subject again. Holding rather than
storing keeps the erasure; holding rather than dropping keeps a new consent's result, which
nobody could bring back. What is left: a clock stepped within a live result's few minutes;
a new consent's result captured by a clock that ran behind and was put right before a fresh
reading (a backlog across an NTP step): placed before the erasure, it is not stored; and a
status the broker queued for a stopped worker, which reads the clock behind by as long as it
waited, so that a result queued with it, captured before an erasure made while no worker
ran, may be placed after it (the erasure's own tombstones still hold what it removed). A
status stamped with its kiosk's boot (appliance/transport/bootstamp.py) no later in it than
the one stored keeps no reading (placed_capture.READING_KEPT), so no later batch judges by it,
and its own batch's results are placed by the stored one (placed_capture.py), also where the
store takes that batch part by part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from appliance.backoffice.schema import iso_utc, second_text

MARGIN = timedelta(minutes=5)  # a reading's error: the status's delay and the drift since
LIVE = timedelta(minutes=10)  # received later than this after its capture: from a backlog
READING_FRESH = timedelta(minutes=10)  # statuses come every 60 s and after each result
Verdict = Literal["before", "after", "held"]
HELD = "held for release"  # how a held result's dead-letter reason begins


@dataclass(frozen=True)
class ClockReading:
    """How far a kiosk's clock ran ahead of the back office's (negative: behind) when its
    latest live status was received, at ``read_at`` (the back office's clock)."""

    ahead: timedelta
    read_at: datetime

    def corrected(self, captured_at: datetime) -> datetime:
        """``captured_at`` (by the kiosk's clock) by the back office's: less how far the clock
        ran ahead. A capture so near the calendar's first moment (0001-01-01, which a payload
        may carry) that the correction leaves it reads as that moment, and likewise at its
        last: raised, the OverflowError failed the ingest's whole batch. Either is a garbage
        time, refused as one (placed_capture.py)."""
        try:
            return captured_at - self.ahead
        except OverflowError:
            edge = datetime.min if self.ahead > timedelta(0) else datetime.max
            return edge.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Erasure:
    """A subject's newest erasure: its audit record's id and when (the back office's clock)."""

    erasure_id: int
    erased_at: datetime


@dataclass(frozen=True)
class HeldResult:
    """A result kept as a dead letter instead of stored (one of an erased subject held, or one
    whose capture cannot be placed: placed_capture.py): its row (in RESULT_COLUMNS order) and
    its dead letter's reason."""

    row: tuple[Any, ...]
    reason: str


def judged(captured_at: datetime, received_at: datetime, erasure: Erasure,
           reading: ClockReading | None) -> tuple[Verdict, str]:
    """Whether a result of an erased subject was captured before or after ``erasure``, or
    cannot be told (held), and why in words."""
    if received_at <= erasure.erased_at:
        return "before", "received before the erasure"
    fresh = reading is not None and abs(received_at - reading.read_at) <= READING_FRESH
    if reading is None or not fresh:
        capture = captured_at
        as_read = f"captured {_second(capture)} by a kiosk clock " + (
            "never read" if reading is None else f"last read {_second(reading.read_at)}")
    else:
        capture = reading.corrected(captured_at)
        as_read = f"captured {_second(capture)} by its kiosk clock read {_ahead(reading)}"
    if capture < erasure.erased_at - MARGIN:
        return "before", as_read
    if not fresh:
        return "held", as_read
    return _live(capture, received_at, erasure, as_read)


def _live(capture: datetime, received_at: datetime, erasure: Erasure,
          as_read: str) -> tuple[Verdict, str]:
    """``judged`` for a result whose capture, by a fresh reading of its kiosk's clock, was
    at ``capture`` (the back office's clock), not before the erasure's margin."""
    late = received_at - capture
    if late > LIVE:
        return "held", f"{as_read}; from a backlog ({_minutes(late)} min later)"
    if late < -MARGIN:
        return "held", f"{as_read}; after its receipt: the clock was stepped"
    if capture > erasure.erased_at + MARGIN:
        return "after", as_read
    return "held", f"{as_read}; within {_minutes(MARGIN)} min of the erasure"


def held_reason(measurement_id: str, erasure: Erasure, why: str) -> str:
    """A held result's dead-letter reason, within the 200 characters the terminal shows of
    one (times to the second): that it is held and the id that releases it, the erasure of
    its subject, why."""
    return (f"{HELD} (--result {measurement_id}): erasure {erasure.erasure_id} of its "
            f"subject at {_second(erasure.erased_at)}; {why}")


def _ahead(reading: ClockReading) -> str:
    seconds = reading.ahead.total_seconds()
    return f"{abs(seconds):.0f} s {'ahead' if seconds >= 0 else 'behind'}"


def _second(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 to the second."""
    return second_text(iso_utc(moment))


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:.0f}"
