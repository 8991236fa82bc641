"""The order of a kiosk's statuses: whose details (state aside: camera, outbox, versions) the
fleet shows, when the kiosk's clock cannot say which status it sent last.

A status says its kiosk's time ``at``. Ordered by it, a kiosk whose clock stepped back (an RTC
reset, a wrong NTP server, an operator) sent each later status "before" the one stored, and the
fleet kept that one's outbox depth, camera and versions until the kiosk's clock passed its old
time again: years, after a dead CMOS battery. So the store orders a kiosk's statuses by when
each was sent as the back office's clock places it (``devices.status_sent_at``):

- a live "online" status (built as it is sent: erasure_clock.py) at its receipt, as the
  worker sorts it (one held over its kiosk's rate, the newest of its kiosk's, as it is let in:
  status_rate.py);
- any other at its ``at`` less how far its kiosk's clock runs ahead as its latest live status
  read it (in the same batch, else as stored; none read: as written), never after its write (a
  moment after its receipt). That is its last will, written when the kiosk connected, so it
  keeps the details of the connection's later online statuses; the "offline" of a clean stop;
  and a retained copy that the broker hands out at a worker's subscribe, sent at any time
  before: a copy of the stored status is placed where that one is, so it changes nothing.
  Placed that way more than ``MARGIN`` after its write, a status was sent before its kiosk's
  clock stepped back (none is sent after it is received): it is placed at its ``at`` as
  written, by the clock as it was then, so a retained copy of a status from before the step,
  replayed later, does not write over the live ones after it.

Of two placed alike the later received wins, as before.

Two statuses that say where in one boot their kiosk built them (its boot's id, the time
since that boot and that when their link connected, user properties beside the payload:
appliance/transport/bootstamp.py) are ordered by that time instead, whatever the clocks did
and however long a broker held one (``STORED_SENT_LATER``, ``sent_later``). So a worker back
from a stop, taking the live statuses the broker queued for it, writes none of them over a
newer one another worker stored (placed at its late receipt, each won), nor the state of one
over a newer one's (``STATE_REPLAYED``: an online status no later than the stored one, a
last will of an earlier link than the stored status's); and a last will, stamped as its link
connected, keeps the details of every status its link sent after it, also where the kiosk's
clock stepped back by about the link's age (placed by the reading after the step, it won).
What is left: statuses without a stamp (a kiosk not yet updated, a system that does not say
its boots apart) and of two boots are ordered by the back office's clock as above, queue and
steps alike. A stamped live status no later in its boot than the one stored reads no clock,
neither for the store nor for its batch's results (placed_capture.READING_KEPT): queued, it
would read it behind by its wait (erasure_clock.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from appliance.backoffice.erasure_clock import MARGIN
from appliance.backoffice.placed_capture import PlacedCaptures, StatusReading
from appliance.backoffice.schema import DEVICE_COLUMNS, iso_utc
from appliance.transport.payloads import utc_now

_STATE, _LAST_SEEN, _STATUS_AT, _SENT_AT, _BOOT, _SINCE_BOOT, _LINK = (
    DEVICE_COLUMNS.index(name) for name in (
        "state", "last_seen", "status_at", "status_sent_at", "status_boot",
        "status_since_boot_ms", "status_link_ms"))
# Whether the state of a status written (excluded.*) is older news than the stored one's
# (devices.*), in one boot: an online one sent no later than the stored status (a queue
# replayed), an offline one of an earlier link than the stored status's (a last will, stamped
# as its link connected, is news after every status of its own link, not after the next's).
STATE_REPLAYED = (
    "(devices.status_boot = excluded.status_boot AND CASE WHEN excluded.state = 'online' "
    "THEN devices.status_since_boot_ms >= excluded.status_since_boot_ms "
    "ELSE devices.status_link_ms > excluded.status_link_ms END)")
# Whether the status written (excluded.*) tells nothing newer than the stored one (devices.*),
# in one boot: its state is older news, or it was sent no later than the stored status and
# says the same state (a queue replayed to a worker back from a stop, a retained copy, the
# stored status again). The back office heard it, or a newer one, before: it leaves last_seen,
# so a worker back from a stop does not make a kiosk whose last will came meanwhile look seen.
SEEN_BEFORE = (
    f"({STATE_REPLAYED} OR (devices.status_boot = excluded.status_boot AND "
    "devices.status_since_boot_ms >= excluded.status_since_boot_ms AND "
    "devices.state = excluded.state))")
# Whether the stored status (devices.*) was sent after the one written (excluded.*): by the
# time since boot where both were stamped in one boot, else by the back office's placing.
STORED_SENT_LATER = (
    "(CASE WHEN devices.status_boot = excluded.status_boot "
    "THEN devices.status_since_boot_ms > excluded.status_since_boot_ms "
    "ELSE devices.status_sent_at > excluded.status_sent_at END)")


def placed_sending(at: datetime, ahead: timedelta | None, written: datetime) -> datetime:
    """When a status its kiosk stamped ``at`` was sent, by the back office's clock, with its
    kiosk's clock read ``ahead`` (None: never read), as it is written at ``written``."""
    try:
        sent = at - (ahead or timedelta(0))
    except OverflowError:  # a reading that places it outside the years 1-9999: none
        sent = at
    if sent > written + MARGIN:  # stamped before its kiosk's clock stepped back
        sent = at
    return min(sent, written)


class StatusOrder(PlacedCaptures):
    """``_sent_statuses``, mixed into ``Store`` through the ingest writes."""

    def _sent_statuses(self, cur: Any, rows: Sequence[tuple[Any, ...]],
                       in_batch: Sequence[StatusReading]) -> list[tuple[Any, ...]]:
        """``rows`` (DEVICE_COLUMNS order) with the sending of each not placed yet (a live
        online one's is its receipt) placed by its kiosk's newest clock reading: stored, or
        among ``in_batch`` (this batch's live statuses') where the store keeps it
        (placed_capture.READING_KEPT)."""
        unplaced = [row for row in rows if row[_SENT_AT] is None]
        if not unplaced:
            return list(rows)
        readings = self._newest_readings(cur, {str(row[1]) for row in unplaced}, in_batch)
        ahead = {key: reading.clock.ahead for key, reading in readings.items()}
        written = utc_now()
        return [row if row[_SENT_AT] is not None else (*row[:_SENT_AT], iso_utc(placed_sending(
            datetime.fromisoformat(row[_STATUS_AT]), ahead.get((row[0], row[1])), written)),
            *row[_SENT_AT + 1:]) for row in rows]


def latest_statuses(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row a device for its statuses of one batch (DEVICE_COLUMNS order, in arrival order,
    each one's sending placed): what the store's upserts leave of them written one after
    another, in one upsert (store_writes.py).

    A kiosk's statuses are latest-wins: of several in one batch the older change nothing the
    store keeps, so a flood of them on its own status topic costs one upsert a batch, not one
    a status (status_rate.py bounds it across batches). The row holds the last one's
    ``state`` (written as it comes, but for one whose state is older news than one before's:
    ``state_replayed``), the latest ``last_seen`` (but that of one heard before:
    ``seen_before``), and the rest of the one sent
    last (this module's order), the later of two alike: so a last will ("offline") that comes
    after a newer online status still leaves its camera, outbox and versions."""
    merged: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in rows:
        before = merged.get(key := (str(row[0]), str(row[1])))
        if before is None:
            merged[key] = row
            continue
        newest = before if sent_later(before, row) else row
        state = before[_STATE] if state_replayed(before, row) else row[_STATE]
        seen = before[_LAST_SEEN] if seen_before(before, row) else max(before[_LAST_SEEN],
                                                                        row[_LAST_SEEN])
        merged[key] = (*row[:_STATE], state, seen, *newest[_STATUS_AT:])
    return list(merged.values())


def sent_later(first: tuple[Any, ...], second: tuple[Any, ...]) -> bool:
    """Whether the status of row ``first`` was sent after that of ``second`` (DEVICE_COLUMNS
    order, each one's sending placed): ``STORED_SENT_LATER`` in Python."""
    if first[_BOOT] is not None and first[_BOOT] == second[_BOOT]:
        return bool(first[_SINCE_BOOT] > second[_SINCE_BOOT])
    return bool(first[_SENT_AT] > second[_SENT_AT])


def state_replayed(first: tuple[Any, ...], second: tuple[Any, ...]) -> bool:
    """Whether the state of row ``second`` is older news than that of row ``first``:
    ``STATE_REPLAYED`` in Python."""
    if first[_BOOT] is None or first[_BOOT] != second[_BOOT]:
        return False
    if second[_STATE] == "online":
        return bool(first[_SINCE_BOOT] >= second[_SINCE_BOOT])
    return first[_LINK] is not None and second[_LINK] is not None and first[_LINK] > second[_LINK]


def seen_before(first: tuple[Any, ...], second: tuple[Any, ...]) -> bool:
    """Whether row ``second`` tells nothing newer than row ``first``: ``SEEN_BEFORE`` in
    Python."""
    return state_replayed(first, second) or (
        first[_BOOT] is not None and first[_BOOT] == second[_BOOT]
        and first[_SINCE_BOOT] >= second[_SINCE_BOOT] and first[_STATE] == second[_STATE])
