"""A kiosk whose clock is years behind (a dead CMOS battery: 2000-01-01, no NTP yet) loses no
result: with a fresh reading of its clock its results are stored, their capture placed by it;
without one they are kept as dead letters that say why, and ``results retry`` stores them once
the kiosk's status has read its clock. A garbage time from a clock that reads right is still
refused. The fleet shows each kiosk's clock as last read. SQLite and PostgreSQL, through the
ingest worker's triage and writes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.backoffice.commands import letter_judge
from appliance.backoffice.fleet import clock_text, fleet_json, fleet_table, offset_text
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.synthetic import fleet
from appliance.transport.payloads import Result
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
MINUTE = timedelta(minutes=1)
TOPIC = "appliance/lab/kiosk-1"
Y2K = datetime(2000, 1, 1, tzinfo=UTC)  # where a dead CMOS battery leaves many PC clocks


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_triageclock", open_store) as opened:
        yield opened


def _status(at: datetime, oldest_waiting: timedelta | None = None) -> Inbound:
    """lab/kiosk-1's live status, built now by a clock that reads ``at``, its outbox's oldest
    result ``oldest_waiting`` old (None: not said)."""
    status = fleet.online_status("lab", "kiosk-1").model_copy(update={
        "at": at,
        "outbox_oldest_age_s": None if oldest_waiting is None else oldest_waiting.total_seconds()})
    return Inbound(f"{TOPIC}/status", status.to_json(), 1, 1, retained=False)


def _result(seed: int, captured_at: datetime) -> Result:
    """A result of lab/kiosk-1 whose kiosk wrote ``captured_at``."""
    result = fleet.sample_result(random.Random(seed), "lab", "kiosk-1", seed)
    return result.model_copy(update={"captured_at": captured_at})


def _sorted(*messages: Inbound | Result) -> tuple[Batch, list[Result]]:
    """The messages (a result: on its topic) received now, in one batch, as triage sorts it."""
    return Triage("appliance", 2**20).sort([
        m if isinstance(m, Inbound) else Inbound(f"{TOPIC}/result", m.to_json(), 2, 1)
        for m in messages])


def _ingest(store: Store, *messages: Inbound | Result) -> list[str]:
    """The messages received now, in one batch; the ids stored."""
    batch, _ = _sorted(*messages)
    assert batch.dead_letters == []
    return store.write_batch(batch, *KEEP)


def _stored(store: Store, result: Result) -> tuple[str, datetime]:
    [(captured_at, placed_at)] = store.query(
        "SELECT captured_at, placed_at FROM results WHERE measurement_id = ?",
        (result.measurement_id,))
    return captured_at, datetime.fromisoformat(placed_at)


def test_a_kiosk_clock_at_2000_with_its_live_status_has_its_results_stored(
    store: Store,
) -> None:
    """Before, the status itself and every result were refused as older than 3653 days, the
    results confirmed to the kiosk (which dropped them) and kept only as dead letters."""
    received = datetime.now(UTC)
    new = _result(1, Y2K)

    assert _ingest(store, _status(Y2K), new) == [new.measurement_id]

    captured_at, placed_at = _stored(store, new)
    assert captured_at == "2000-01-01T00:00:00.000000Z"  # as sent
    assert abs(placed_at - received) < MINUTE  # as placed by the clock's reading
    assert store.dead_letters() == []


def test_a_kiosk_clock_at_2000_read_by_an_earlier_status_has_its_results_stored(
    store: Store,
) -> None:
    assert _ingest(store, _status(Y2K + timedelta(seconds=30))) == []
    later = _result(2, Y2K + timedelta(seconds=40))

    assert _ingest(store, later) == [later.measurement_id]
    assert abs(_stored(store, later)[1] - datetime.now(UTC)) < MINUTE


def test_without_a_reading_the_result_is_a_dead_letter_that_retry_stores_after_a_status(
    store: Store,
) -> None:
    """No status read the clock (it went to another worker, or came before this worker
    started): the result is kept whole as a dead letter, still confirmed to its kiosk; once
    the kiosk's status reads the clock, ``results retry`` stores it."""
    new = _result(3, Y2K)
    batch, confirmed = _sorted(new)

    assert store.write_batch(batch, *KEEP) == []
    assert [r.measurement_id for r in confirmed] == [new.measurement_id]  # its kiosk drops it
    (letter,) = store.dead_letters()
    assert letter.payload == new.to_json()
    assert "its kiosk's clock looks wrong" in letter.reason
    assert "appliance results retry" in letter.reason
    assert store.retry_dead_letters(letter_judge(), dry_run=True) == (0, 1)
    assert store.retry_dead_letters(letter_judge()) == (0, 1)  # still no reading

    _ingest(store, _status(Y2K + timedelta(minutes=3)))
    assert store.retry_dead_letters(letter_judge(), dry_run=True) == (1, 0)
    assert store.retry_dead_letters(letter_judge()) == (1, 0)

    assert store.dead_letters() == []
    assert _stored(store, new)[0] == "2000-01-01T00:00:00.000000Z"


def test_a_backlog_stamped_at_2000_and_delivered_after_ntp_set_the_clock_is_stored(
    store: Store,
) -> None:
    """With TLS a kiosk whose clock is at 2000 cannot verify its broker's certificate, so its
    backlog comes after NTP set the clock right: the reading corrects nothing, but the
    outbox's age (which follows the step) vouches that the oldest result is 3 days old."""
    received = datetime.now(UTC)
    backlog = _result(5, Y2K)

    assert _ingest(store, _status(received, timedelta(days=3)), backlog) == [
        backlog.measurement_id]

    captured_at, placed_at = _stored(store, backlog)
    assert captured_at == "2000-01-01T00:00:00.000000Z"
    assert abs(placed_at - (received - timedelta(days=3, minutes=5))) < MINUTE


def test_a_garbage_time_from_a_kiosk_clock_that_reads_right_is_still_refused(
    store: Store,
) -> None:
    junk = _result(4, datetime(1970, 1, 1, tzinfo=UTC))

    batch, _ = _sorted(_status(datetime.now(UTC)), junk)
    assert store.write_batch(batch, *KEEP) == []

    (letter,) = store.dead_letters()
    assert letter.reason.startswith("captured_at: 1970-01-01T00:00:00Z is older than 3653 days")
    assert "also by its kiosk's clock as read" in letter.reason
    assert store.count_results() == 0


def test_a_capture_in_the_year_1_read_by_a_clock_ahead_is_refused_as_a_garbage_time(
    store: Store,
) -> None:
    """A capture stamped 0001-01-01, from a kiosk whose live status read its clock ahead (up
    to the 5 minutes triage allows): placing it (captured_at less how far the clock runs
    ahead) left the calendar, and the store raised OverflowError for the whole batch, which
    the ingest worker then committed row by row, the result set aside as "the store refused
    it: date value out of range". A kiosk's login could so have every batch its results
    landed in written a row a transaction. Now it is refused as any garbage time is, and the
    rest of its batch stored with it."""
    junk = _result(6, datetime(1, 1, 1, tzinfo=UTC))
    good = _result(7, datetime.now(UTC))

    batch, _ = _sorted(_status(datetime.now(UTC) + timedelta(minutes=4)), junk, good)
    assert store.write_batch(batch, *KEEP) == [good.measurement_id]

    (letter,) = store.dead_letters()
    assert letter.reason.startswith("captured_at: 0001-01-01T00:00:00Z is older than 3653 days")
    assert "s ahead), and its outbox's age is not said: a garbage time" in letter.reason


def test_the_fleet_shows_each_kiosk_s_clock_offset_as_last_read(
    store: Store, capsys: pytest.CaptureFixture[str],
) -> None:
    """So an operator sees which kiosk's NTP to fix: the offset, flagged over a minute, and
    when it was read; '-' for a kiosk never read (one seen only through a retained status)."""
    behind = datetime.now(UTC) - timedelta(hours=3, minutes=12)
    _ingest(store, _status(behind))
    retained = fleet.online_status("lab", "kiosk-2")
    _ingest(store, Inbound("appliance/lab/kiosk-2/status", retained.to_json(), 3, 1, True))
    now = datetime.now(UTC) + timedelta(minutes=2)

    header, first, second = fleet_table(store, now).splitlines()[:3]

    column = header.index("CLOCK")
    assert first[column:].startswith("3h 12m behind (check its NTP), read 2m ago ")
    assert "kiosk-2" in second
    assert second[column:].startswith("- ")  # never read: the blank cell
    (read, never) = json.loads(fleet_json(store))
    assert -3 * 3600 - 12 * 60 - 5 < read["clock_ahead_s"] < -3 * 3600 - 12 * 60 + 5
    assert read["clock_read_at"] is not None
    assert (never["clock_ahead_s"], never["clock_read_at"]) == (None, None)
    if not store.postgres:  # the command reads what fleet_table says (a schema: no --store)
        assert main(["fleet", "--store", store.url]) == 0
        assert "behind (check its NTP), read" in capsys.readouterr().out


def test_a_clock_within_a_minute_is_not_flagged() -> None:
    now = datetime.now(UTC)
    device = {"clock_ahead_s": -42.4, "clock_read_at": iso_utc(now - timedelta(seconds=5))}
    assert clock_text(device, now) == "42s behind, read 5s ago"
    assert offset_text(26 * 365.25 * 86400) == "26y"  # a clock at 2000 in 2026


def test_the_fleet_json_says_when_a_kiosk_sent_its_status_by_both_clocks(
    store: Store, capsys: pytest.CaptureFixture[str],
) -> None:
    """`appliance fleet --json` gave neither clock of a kiosk's stored status, which the API
    gives (status_at, status_sent_at): a script could not tell a status of 2000 by a kiosk's
    dead CMOS battery from one sent today."""
    before = datetime.now(UTC) - MINUTE
    _ingest(store, _status(Y2K))
    (listed,) = json.loads(fleet_json(store))
    assert listed["status_at"].startswith("2000-01-01T")  # on main: no such key
    assert datetime.fromisoformat(listed["status_sent_at"]) > before  # the back office's clock
    if not store.postgres:  # the command prints what fleet_json says (a schema: no --store)
        assert main(["fleet", "--json", "--store", store.url]) == 0
        assert json.loads(capsys.readouterr().out) == [listed]


def test_a_clock_years_off_is_said_in_years_and_days() -> None:
    """A clock a dead CMOS battery put at 2000-01-01 read "9835d 22h behind": days by the
    thousand, which nobody reads as 26 years at a glance."""
    now = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    offset_s = (datetime(2000, 1, 1, tzinfo=UTC) - now).total_seconds()
    device = {"clock_ahead_s": offset_s, "clock_read_at": iso_utc(now - timedelta(minutes=2))}
    assert clock_text(device, now) == "26y 339d behind (check its NTP), read 2m ago"
    assert offset_text(400 * 86400 + 7200) == "1y 34d"
    assert offset_text(364 * 86400 + 7200) == "364d 2h"
