"""The retention bound counts from each capture as the back office places it, not as the
kiosk's clock wrote it: a clock behind by years does not have new results removed at the next
run (or dropped at ingest once a run recorded its cut-off), while a real backlog is still
removed by its capture; SQLite and PostgreSQL, through the ingest worker's triage and writes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.backoffice.erasure_clock import MARGIN, READING_FRESH, ClockReading
from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.placed_capture import BACKLOG_MAX, KioskReading, placed_capture
from appliance.backoffice.retention import cut_off
from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc, result_row
from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.synthetic import fleet
from appliance.transport.payloads import Result
from tests.store_helpers import BACKENDS, PG_URL, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
YEAR = 365 * DAY
TOPIC = "appliance/lab/kiosk-1"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_retention_clock", open_store) as opened:
        yield opened


def _status(ahead: timedelta, oldest_waiting: timedelta | None = None) -> Inbound:
    """lab/kiosk-1's live status, built now by a clock ``ahead`` of this one, its outbox's
    oldest result ``oldest_waiting`` old."""
    status = fleet.online_status("lab", "kiosk-1").model_copy(update={
        "at": datetime.now(UTC) + ahead,
        "outbox_oldest_age_s": None if oldest_waiting is None else oldest_waiting.total_seconds()})
    return Inbound(f"{TOPIC}/status", status.to_json(), 1, 1, retained=False)


def _result(seed: int, captured_at: datetime) -> Result:
    """A result of lab/kiosk-1 whose kiosk wrote ``captured_at``."""
    result = fleet.sample_result(random.Random(seed), "lab", "kiosk-1", seed)
    return result.model_copy(update={"captured_at": captured_at})


def _ingest(store: Store, *messages: Inbound | Result) -> list[str]:
    """The messages (a result: on its topic) received now, in one batch; the ids stored."""
    batch, _ = Triage("appliance", 2**20).sort([
        m if isinstance(m, Inbound) else Inbound(f"{TOPIC}/result", m.to_json(), 2, 1)
        for m in messages])
    assert batch.dead_letters == []
    return store.write_batch(batch, *KEEP)


def _placed(store: Store, result: Result) -> datetime:
    [(placed_at,)] = store.query("SELECT placed_at FROM results WHERE measurement_id = ?",
                                 (result.measurement_id,))
    return datetime.fromisoformat(placed_at)


def test_a_kiosk_clock_two_years_behind_keeps_its_new_results_for_the_bound(
    store: Store,
) -> None:
    """A dead CMOS battery: the clock reads two years back, and its birth status comes in the
    batch of its first result. Before, that result was removed by the next retention run."""
    received = datetime.now(UTC)
    new = _result(1, received - 2 * YEAR)

    assert _ingest(store, _status(-2 * YEAR), new) == [new.measurement_id]

    assert store.prune_before(cut_off(30), "root").results == 0
    assert abs(_placed(store, new) - received) < MINUTE
    assert store.covered_period().captured_from == iso_utc(_placed(store, new))


def test_after_a_retention_run_a_kiosk_clock_behind_still_has_its_results_stored(
    store: Store,
) -> None:
    """Once a run had recorded its cut-off, each new result of a clock behind it was
    confirmed to its kiosk (which dropped it) and not stored."""
    _ingest(store, _status(timedelta(0), 40 * DAY), _result(1, datetime.now(UTC) - 40 * DAY))
    assert store.prune_before(cut_off(30), "root").results == 1
    new = _result(2, datetime.now(UTC) - 2 * YEAR)

    assert _ingest(store, _status(-2 * YEAR), new) == [new.measurement_id]
    assert store.query("SELECT measurement_id FROM results") == [(new.measurement_id,)]


def test_a_capture_stamped_before_ntp_set_the_clock_is_placed_by_the_outbox_age(
    store: Store,
) -> None:
    """Stamped by a clock five years behind, delivered two hours later after NTP put the
    clock right: the reading cannot correct it, but the kiosk's outbox (whose ages follow
    the step) says nothing it holds is older than two hours."""
    received = datetime.now(UTC)
    stamped = _result(1, received - 5 * YEAR)

    _ingest(store, _status(timedelta(0), 2 * HOUR), stamped)

    assert store.prune_before(cut_off(1), "root").results == 0
    assert received - 2 * HOUR - MARGIN - MINUTE < _placed(store, stamped) < received


def test_a_real_backlog_is_placed_at_its_capture_and_removed_by_it(store: Store) -> None:
    """The bound still counts from the capture: a week-old backlog the kiosk's outbox vouches
    for goes with a five-day bound. (Also so before; shown so that the fix keeps it.)"""
    backlog = _result(1, datetime.now(UTC) - 7 * DAY)

    _ingest(store, _status(timedelta(0), 7 * DAY + HOUR), backlog)

    assert abs(_placed(store, backlog) - backlog.captured_at) < MINUTE  # the reading's error

    assert store.prune_preview(cut_off(8)) == (0, 0)
    assert store.prune_before(cut_off(5), "root").results == 1


def test_a_kiosk_clock_never_read_is_placed_at_most_a_backlog_before_its_receipt(
    store: Store,
) -> None:
    """Without a reading, a capture written two years back is placed no further back than a
    kiosk keeps a result unsent (30 days): a one-year bound keeps it, a 29-day bound does not."""
    received = datetime.now(UTC)
    unread = _result(1, received - 2 * YEAR)

    _ingest(store, unread)

    assert store.prune_preview(cut_off(365)) == (0, 0)
    assert store.prune_preview(cut_off(29)) == (1, 0)
    assert abs(_placed(store, unread) - (received - BACKLOG_MAX)) < MINUTE


def test_a_result_is_never_placed_after_its_receipt(store: Store) -> None:
    """A clock a few minutes ahead (the ingest takes up to 5): placed at its receipt, so no
    result is kept longer than the bound after the back office received it."""
    ahead = _result(1, datetime.now(UTC) + 4 * MINUTE)

    _ingest(store, ahead)

    [(received_at,)] = store.query("SELECT received_at FROM results")
    assert _placed(store, ahead) == datetime.fromisoformat(received_at)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_20_places_stored_results_at_their_capture_at_most_their_receipt(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"test_retention_clock_{uuid.uuid4().hex[:12]}"
    received = datetime(2026, 11, 26, tzinfo=UTC)
    old, ahead = _result(1, received - 3 * DAY), _result(2, received + 4 * MINUTE)
    with monkeypatch.context() as before_20:  # a store as it was before migration 20
        before_20.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:19])
        store = open_store(url, pg_schema=schema)
    try:
        store.write(f"INSERT INTO results ({','.join(RESULT_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(RESULT_COLUMNS))})",
                    [result_row(r, iso_utc(received), r.to_json().decode()) for r in (old, ahead)])
        assert store.migrate() == [version for version, _, _ in MIGRATIONS[19:]]  # 20 on
        assert _placed(store, old) == old.captured_at
        assert _placed(store, ahead) == received
    finally:
        if schema is not None:
            store.drop_postgres_schema(schema)
        store.close()


SECONDS_10_YEARS = 10 * 366 * 86400


@settings(max_examples=300, deadline=None)
@given(stamped_s=st.floats(-SECONDS_10_YEARS, 300), read_before_s=st.floats(-3600, 3600),
       ahead_s=st.floats(-SECONDS_10_YEARS, 300),
       oldest_s=st.none() | st.floats(0, 90 * 86400))
def test_a_placed_capture_is_never_after_its_receipt_nor_before_what_its_kiosk_vouches(
    stamped_s: float, read_before_s: float, ahead_s: float, oldest_s: float | None
) -> None:
    """The two promises, whatever a kiosk's clock says: placed at most at its receipt (so kept
    at most the bound after it), and no earlier than a backlog its kiosk's outbox vouches for
    (a fresh reading), or ``BACKLOG_MAX`` (none)."""
    received = datetime(2026, 12, 5, 12, tzinfo=UTC)
    captured = received + timedelta(seconds=stamped_s)
    reading = KioskReading(ClockReading(timedelta(seconds=ahead_s),
                                        received - timedelta(seconds=read_before_s)),
                           None if oldest_s is None else timedelta(seconds=oldest_s))

    for kiosk in (reading, None):
        placed = placed_capture(captured, received, kiosk)
        assert placed <= received
        fresh = kiosk is not None and abs(read_before_s) <= READING_FRESH.total_seconds()
        if fresh and oldest_s is not None:
            earliest = reading.clock.read_at - timedelta(seconds=oldest_s) - MARGIN
            assert placed >= min(earliest, received)
        else:
            assert placed >= received - BACKLOG_MAX
