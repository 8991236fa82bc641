"""When a result was captured as the back office places it: the moment the retention bound
(retention.py) and the cohort's period count from, kept in ``results.placed_at``.

A result's ``captured_at`` is written by its kiosk's clock. Taken as it is, a clock that runs
behind (a dead CMOS battery: a date years back) had each new result removed by the next hourly
retention run, and confirmed to its kiosk and not stored at all once a run had recorded its
cut-off: data accepted and lost, though the operator chose to keep it for N days. A clock
ahead is bounded already: the ingest refuses a capture more than 5 minutes ahead of its receipt
(triage.py). So the ingest worker places each new result's capture, as it stores it:

- its ``captured_at`` corrected by its kiosk's clock reading (erasure_clock.py) when one was
  taken within ``READING_FRESH`` of its receipt, as written otherwise;
- never later than its receipt (``received_at``, the back office's clock);
- never earlier than the oldest result its kiosk said it held (the ``outbox_oldest_age_s``
  of the status that gave the fresh reading, and ``MARGIN`` for that status's delay): the
  outbox ages follow a step of the kiosk's clock (appliance/transport/wallclock.py), so a
  backlog a week old is placed a week back, a capture stamped by a clock years behind and
  delivered after NTP put the clock right is not. Without a fresh reading that reports its
  outbox, never earlier than ``BACKLOG_MAX`` before its receipt: a kiosk drops a result
  older than that unsent by default (``edge.outbox_max_age_h``, 720 h).

So an operator can rely on: no result is kept more than ``retention_days`` after the back
office received it (and the hour to the next run), and none is removed before
``retention_days`` after its placed capture. What is left: a kiosk whose outbox age cannot be
read (an empty or unreadable outbox says none) and whose clock was stepped between a capture
and its delivery has it placed up to ``BACKLOG_MAX`` before its receipt; a kiosk that held a
backlog across a power-off that reset its clock reports the backlog's age as 0, so its
results are placed at their receipt and kept up to that much longer than N days after their
capture; a result removed already that its kiosk sends again (its ack was lost) without such a
reading is placed at most ``BACKLOG_MAX`` back, so it is stored again where that lies after
the newest cut-off (erasure.py's ``_drop_erased``), until a later run removes it. ``results
retry`` and ``release`` receive a result when they store it, so its receipt is then (its dead
letter counted from its first receipt). Results stored before migration 20 were placed at
their capture as written, never later than their receipt.

A capture more than ``MAX_AGE`` before its receipt, as placed by a fresh reading of its
kiosk's clock (as written where none is fresh), is not stored: a kiosk keeps no result that
long, so it is an unset clock (1970) or a garbage year. A clock years behind (a dead CMOS
battery: 2000-01-01) read by a status in the same batch or within ``READING_FRESH`` has its
results stored, ``captured_at`` as sent and ``placed_at`` as placed, and so has a backlog
stamped by such a clock and delivered after NTP set it right, where the reading's outbox age
vouches for it (with TLS, a kiosk whose clock is before its broker's certificate cannot
connect until then); without such a reading
(the status went to another worker, or the back office started after the kiosk connected)
the result is kept as a dead letter that says its kiosk's clock looks wrong, and ``results
retry``, run while its kiosk is online (a status a minute reads its clock), stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from appliance.backoffice.erasure_clock import MARGIN, READING_FRESH, ClockReading, HeldResult
from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc, second_text
from appliance.backoffice.store_connection import StoreConnection
from appliance.transport.bootstamp import BootStamp

BACKLOG_MAX = timedelta(hours=720)  # edge.outbox_max_age_h's default
# a capture placed further back than this before its receipt is no kiosk's (this docstring)
MAX_AGE = timedelta(days=3653)
_IN_CHUNK = 500
_DEVICE, _SITE, _CAPTURED, _RECEIVED = (RESULT_COLUMNS.index(name) for name in (
    "device_id", "site", "captured_at", "received_at"))


class KioskReading(NamedTuple):
    """A kiosk's clock as one live status read it, and the age of the oldest result its
    outbox held then (None: empty, unreadable or not said)."""

    clock: ClockReading
    oldest_waiting: timedelta | None


# (site, device id, how far its clock runs ahead in seconds, when read, the age of the oldest
# result its outbox held in seconds or None, where in its boot the kiosk built the status or
# None: appliance/transport/bootstamp.py): a live status's reading (triage.py)
StatusReading = tuple[str, str, float, str, float | None, BootStamp | None]
# Whether the store keeps a reading (its time read; its status's boot, twice, and time since
# that boot) as its kiosk's (devices.*, its status as stored before the reading's batch): read
# no earlier than the one kept, by a status later in its boot than the stored status where both
# say one boot. A status the broker queued for a stopped worker reads the clock behind by its
# wait; the stored status, later in the boot, read it as it came (status_order.py).
READING_KEPT = (
    "(clock_read_at IS NULL OR clock_read_at <= ?) AND (CAST(? AS TEXT) IS NULL OR "
    "status_boot IS NULL OR status_boot <> ? OR status_since_boot_ms < ?)")


def reading_kept(reading: StatusReading, read_at: str | None, boot: str | None,
                 since_boot_ms: int | None) -> bool:
    """``READING_KEPT`` in Python, against a kiosk's stored reading's time and status stamp."""
    if read_at is not None and read_at > reading[3]:
        return False
    stamp = reading[5]
    return (stamp is None or boot is None or since_boot_ms is None or boot != stamp[0]
            or since_boot_ms < stamp[1])


def kept_parameters(reading: StatusReading) -> tuple[str, str | None, str | None, int | None]:
    """``READING_KEPT``'s parameters of ``reading``."""
    stamp = reading[5]
    return (reading[3], *((None, None, None) if stamp is None else
                          (stamp[0], stamp[0], stamp[1])))


def placed_capture(captured_at: datetime, received_at: datetime,
                   reading: KioskReading | None) -> datetime:
    """When a result written ``captured_at`` by its kiosk and received at ``received_at`` was
    captured, by the back office's clock (the rule: this module's docstring)."""
    fresh = reading is not None and abs(received_at - reading.clock.read_at) <= READING_FRESH
    if reading is None or not fresh:
        return min(max(captured_at, received_at - BACKLOG_MAX), received_at)
    earliest = (received_at - BACKLOG_MAX if reading.oldest_waiting is None
                else reading.clock.read_at - reading.oldest_waiting - MARGIN)
    return min(max(reading.clock.corrected(captured_at), earliest), received_at)


def unplaceable(captured_at: datetime, received_at: datetime,
                reading: KioskReading | None) -> str | None:
    """Why a result written ``captured_at`` and received at ``received_at`` is not stored (its
    dead letter's reason), or None: its capture, by a fresh reading of its kiosk's clock or
    as written without one, lies more than ``MAX_AGE`` before its receipt, and no fresh
    reading's outbox age says that nothing its kiosk held was that old."""
    oldest = received_at - MAX_AGE
    fresh = reading is not None and abs(received_at - reading.clock.read_at) <= READING_FRESH
    if reading is None or not fresh:
        capture, vouched = captured_at, False
    else:  # an outbox's ages follow a step of its clock: a capture stamped before NTP set it
        capture = reading.clock.corrected(captured_at)
        vouched = reading.oldest_waiting is not None and (
            reading.clock.read_at - reading.oldest_waiting - MARGIN >= oldest)
    if capture >= oldest or vouched:
        return None
    written = f"captured_at: {second_text(iso_utc(captured_at))} is older than {MAX_AGE.days} days"
    if reading is not None and fresh:
        seconds = reading.clock.ahead.total_seconds()
        return (f"{written}, also by its kiosk's clock as read ({abs(seconds):.0f} s "
                f"{'ahead' if seconds >= 0 else 'behind'}), and its outbox's age is not "
                "said: a garbage time; not stored")
    return (f"{written}: its kiosk's clock looks wrong (not read within "
            f"{READING_FRESH.total_seconds() / 60:.0f} min); run `appliance results retry` "
            "while the kiosk is online (its status reads the clock) to store it")


class PlacedCaptures(StoreConnection):
    """``_placed_captures``, mixed into ``Store`` through the ingest writes."""

    def _placed_captures(
        self, cur: Any, rows: Sequence[tuple[Any, ...]], in_batch: Sequence[StatusReading] = ()
    ) -> tuple[list[tuple[tuple[Any, ...], str]], list[HeldResult]]:
        """Each of ``rows`` (RESULT_COLUMNS order) with its placed capture (stored-time text),
        by its kiosk's newest reading (``_newest_readings``: stored, or among ``in_batch``, the
        statuses of the batch that stores them: a kiosk's birth status comes with its
        backlog); and those not to store (``unplaceable``), with why."""
        readings = self._newest_readings(cur, {row[_DEVICE] for row in rows}, in_batch)
        placed, refused = [], []
        for row in rows:
            captured_at, received_at = (datetime.fromisoformat(row[_CAPTURED]),
                                        datetime.fromisoformat(row[_RECEIVED]))
            kiosk = readings.get((row[_SITE], row[_DEVICE]))
            why = unplaceable(captured_at, received_at, kiosk)
            if why is None:
                placed.append((row, iso_utc(placed_capture(captured_at, received_at, kiosk))))
            else:
                refused.append(HeldResult(row, why))
        return placed, refused

    def _newest_readings(self, cur: Any, devices: set[str], in_batch: Sequence[StatusReading]
                         ) -> dict[tuple[str, str], KioskReading]:
        """The reading of the clock of each kiosk with a device id of ``devices`` that the
        store keeps once ``in_batch`` (a batch's live statuses' readings) is written: stored,
        or the batch's where the store keeps it (``READING_KEPT``), so never one of a status
        sent before the stored one (a queue replayed), which reads the clock behind by its
        wait."""
        stored = self._stored_clocks(cur, devices)
        readings = {key: found[0] for key, found in stored.items() if found[0] is not None}
        for reading in sorted(in_batch, key=lambda reading: reading[:4]):  # as _read_clocks
            key = (reading[0], reading[1])
            _, read_at, boot, since_boot_ms = stored.get(key, (None, None, None, None))
            if reading_kept(reading, read_at, boot, since_boot_ms):
                readings[key] = _reading(*reading[2:5])
                stored[key] = (readings[key], reading[3], boot, since_boot_ms)
        return readings

    def _kiosk_readings(self, cur: Any, devices: set[str]) -> dict[tuple[str, str],
                                                                   KioskReading]:
        """The stored reading of the clock of each kiosk with a device id of ``devices``."""
        return {key: found[0] for key, found in self._stored_clocks(cur, devices).items()
                if found[0] is not None}

    def _stored_clocks(self, cur: Any, devices: set[str]) -> dict[
            tuple[str, str], tuple[KioskReading | None, str | None, str | None, int | None]]:
        """Each kiosk's with a device id of ``devices``: its stored clock reading (None: none),
        when taken, and its stored status's boot and time since that boot (None: not said)."""
        found: dict[tuple[str, str],
                    tuple[KioskReading | None, str | None, str | None, int | None]] = {}
        names = sorted(devices)
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            cur.execute(self._sql(
                "SELECT site, device_id, clock_ahead_s, clock_read_at, outbox_oldest_age_s, "
                "status_boot, status_since_boot_ms FROM devices WHERE device_id IN "
                f"({','.join('?' * len(chunk))})"), chunk)
            for site, device, ahead_s, read_at, oldest_s, boot, since_ms in cur.fetchall():
                reading = None if read_at is None else _reading(ahead_s, read_at, oldest_s)
                found[str(site), str(device)] = (
                    reading, None if read_at is None else str(read_at),
                    None if boot is None else str(boot),
                    None if since_ms is None else int(since_ms))
        return found


def _reading(ahead_s: float, read_at: str, oldest_s: float | None) -> KioskReading:
    return KioskReading(
        ClockReading(timedelta(seconds=float(ahead_s)), datetime.fromisoformat(read_at)),
        None if oldest_s is None else timedelta(seconds=float(oldest_s)))
