"""An erased subject's results that arrive after the erasure are judged by the back office's
reading of its kiosk's clock, not by the kiosk's clock alone: a clock ahead does not bring
old results back, a clock behind does not lose a new consent's, and what cannot be told is
held as a dead letter an operator releases or erases; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.commands import letter_judge
from appliance.backoffice.erasure import Selector
from appliance.backoffice.erasure_clock import (
    HELD,
    MARGIN,
    READING_FRESH,
    ClockReading,
    Erasure,
    judged,
)
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.schema import dead_letter, device_row, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.payloads import Result, Status
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
STATUS_TOPIC = "appliance/lab/kiosk-1/status"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_erasure_clock", open_store) as opened:
        yield opened


def _erase(store: Store, subject: str) -> datetime:
    """Erase ``subject`` now; when, by the store's record."""
    store.erase(Selector("subject", subject), "carol")
    rows = store.query("SELECT MAX(erased_at) FROM erasures WHERE kind = 'subject'")
    return datetime.fromisoformat(rows[0][0])


def _result(subject: str, seed: int, captured_at: datetime) -> Result:
    """A result of ``subject`` from lab/kiosk-1 whose kiosk wrote ``captured_at``."""
    result = fleet.sample_result(random.Random(seed), "lab", "kiosk-1", seed, subject)
    return result.model_copy(update={"captured_at": captured_at})


def _deliver(store: Store, result: Result, received_at: datetime) -> list[str]:
    """``result`` received by the ingest worker at ``received_at``; the ids stored."""
    row = result_row(result, iso_utc(received_at), result.to_json().decode())
    return store.write_batch(Batch(results=[row]), *KEEP)


def _status(ahead: timedelta) -> Status:
    """lab/kiosk-1's birth status, built now by a clock ``ahead`` of this one."""
    return fleet.online_status("lab", "kiosk-1").model_copy(
        update={"at": datetime.now(UTC) + ahead})


def _clock_read(store: Store, ahead: timedelta) -> datetime:
    """lab/kiosk-1's live status, its clock ``ahead`` of this one, through the ingest's triage
    into the store; a moment just after the back office read it."""
    batch, _ = Triage("appliance", 2**20).sort(
        [Inbound(STATUS_TOPIC, _status(ahead).to_json(), 1, 1, retained=False)])
    store.write_batch(batch, *KEEP)
    return datetime.now(UTC)


def _read_at(store: Store, ahead: timedelta, read_at: datetime) -> None:
    """lab/kiosk-1's clock read ``ahead`` at ``read_at`` (a moment this test's clock has not
    reached, or a clock the triage would refuse): the batch the ingest worker writes."""
    status = device_row(_status(ahead), iso_utc(read_at))
    store.write_batch(Batch(statuses=[status], clock_readings=[
        ("lab", "kiosk-1", ahead.total_seconds(), iso_utc(read_at), None, None)]), *KEEP)


def _stored(store: Store) -> set[str]:
    return {str(row[0]) for row in store.select_results(["measurement_id"])}


def test_a_kiosk_clock_a_day_ahead_does_not_bring_back_an_erased_subjects_backlog(
    store: Store,
) -> None:
    """Captured an hour before the erasure by a clock a day ahead, delivered from the kiosk's
    outbox a day later: before, its captured_at lay after the erasure and it was stored. Its
    kiosk's clock, never read, cannot place it: it is held for an operator (its kiosk may
    drop its copy), and erasing the subject again removes it."""
    erased_at = _erase(store, "subj-1")
    old = _result("subj-1", 1, erased_at - HOUR + DAY)

    fresh = _deliver(store, old, erased_at + DAY + HOUR)

    assert fresh == []
    assert _stored(store) == set()
    [letter] = store.dead_letters()
    assert letter.reason == (
        f"{HELD} (--result {old.measurement_id}): erasure 1 of its subject at "
        f"{iso_utc(erased_at)[:19]}Z; captured {iso_utc(old.captured_at)[:19]}Z by a kiosk "
        "clock never read")
    assert json.loads(letter.payload) == json.loads(old.to_json())
    store.erase(Selector("subject", "subj-1"), "carol")
    assert store.dead_letters() == []


def test_a_backlog_placed_before_the_erasure_by_a_fresh_clock_reading_is_not_stored(
    store: Store,
) -> None:
    """The same result, with the kiosk's clock read a day ahead as it delivers: corrected,
    its capture lies before the erasure, so it is confirmed and neither stored nor kept."""
    erased_at = _erase(store, "subj-1")
    old = _result("subj-1", 1, erased_at - HOUR + DAY)
    _read_at(store, DAY, erased_at + DAY + HOUR - MINUTE)

    fresh = _deliver(store, old, erased_at + DAY + HOUR)

    assert fresh == []
    assert _stored(store) == set()
    assert store.dead_letters() == []


def test_a_kiosk_clock_an_hour_behind_does_not_lose_a_new_consents_result(
    store: Store,
) -> None:
    """The person came back 6 minutes after the erasure and agreed again; the kiosk's clock,
    an hour behind, wrote a capture time before the erasure: before, the result was
    confirmed to the kiosk and thrown away."""
    erased_at = _erase(store, "subj-2")
    read_at = _clock_read(store, -HOUR)
    received_at = max(read_at, erased_at) + 6 * MINUTE
    new = _result("subj-2", 2, received_at - timedelta(seconds=2) - HOUR)

    fresh = _deliver(store, new, received_at)

    assert fresh == [new.measurement_id]
    assert _stored(store) == {new.measurement_id}
    assert store.dead_letters() == []


def test_a_live_result_captured_before_the_erasure_and_received_after_is_not_stored(
    store: Store,
) -> None:
    """In flight while the subject was erased: its capture, by a fresh reading of its kiosk's
    clock, lies before the erasure; confirmed to the kiosk, neither stored nor held."""
    read_at = _clock_read(store, timedelta(0))
    erased_at = _erase(store, "subj-3")
    old = _result("subj-3", 3, erased_at - 6 * MINUTE)

    fresh = _deliver(store, old, max(read_at, erased_at) + timedelta(seconds=1))

    assert fresh == []
    assert _stored(store) == set()
    assert store.dead_letters() == []


@pytest.mark.parametrize(("retained", "state"), [(True, "online"), (False, "offline")],
                         ids=["retained-copy", "last-will"])
def test_only_a_live_online_status_reads_the_kiosk_clock(
    store: Store, retained: bool, state: str
) -> None:
    """A retained copy is handed out again at each subscribe, and a last will was built when
    the kiosk connected: their times say nothing of its clock now."""
    status = _status(-HOUR).model_copy(update={"state": state})
    batch, _ = Triage("appliance", 2**20).sort(
        [Inbound(STATUS_TOPIC, status.to_json(), 1, 1, retained=retained)])
    store.write_batch(batch, *KEEP)

    assert store.query("SELECT state, clock_ahead_s, clock_read_at FROM devices") == [
        (state, None, None)]
    _clock_read(store, -HOUR)
    [(ahead_s,)] = store.query("SELECT clock_ahead_s FROM devices")
    assert -3601 < ahead_s < -3599


def test_an_older_reading_does_not_replace_a_newer_one(store: Store) -> None:
    now = datetime.now(UTC)
    _read_at(store, HOUR, now)
    _read_at(store, -HOUR, now - MINUTE)  # a batch written late, with an older status

    assert store.query("SELECT clock_ahead_s, clock_read_at FROM devices") == [
        (3600.0, iso_utc(now))]


ERASED = Erasure(7, datetime(2026, 12, 1, 12, tzinfo=UTC))
E = ERASED.erased_at


@pytest.mark.parametrize(("captured_at", "received_at", "reading", "verdict", "why"), [
    (E + DAY, E, ClockReading(timedelta(0), E), "before", "received before"),
    (E + HOUR, E + HOUR, None, "held", "never read"),
    (E + HOUR, E + HOUR, ClockReading(timedelta(0), E + HOUR - READING_FRESH - MINUTE),
     "held", "last read 2026-12-01T12:49:00Z"),
    (E + 6 * MINUTE - HOUR, E + 7 * MINUTE, ClockReading(-HOUR, E), "after",
     "3600 s behind"),
    (E + DAY, E + HOUR, ClockReading(DAY, E + HOUR), "held", "from a backlog"),
    (E + MINUTE + 2 * MARGIN, E + MINUTE, ClockReading(timedelta(0), E), "held",
     "after its receipt"),
    (E + MINUTE, E + 2 * MINUTE, ClockReading(timedelta(0), E), "held",
     "within 5 min of the erasure"),
    (E - MARGIN - MINUTE, E + MINUTE, ClockReading(timedelta(0), E), "before", "0 s ahead"),
    (E - DAY, E + DAY, ClockReading(timedelta(0), E), "before", "last read"),
    (E - DAY, E + DAY, None, "before", "never read"),
], ids=["received-before", "never-read", "read-long-ago", "behind-live", "backlog",
        "after-receipt", "within-margin", "live-before", "read-long-ago-before",
        "never-read-before"])
def test_each_way_a_result_is_judged(captured_at: datetime, received_at: datetime,
                                     reading: ClockReading | None, verdict: str,
                                     why: str) -> None:
    got = judged(captured_at, received_at, ERASED, reading)

    assert got[0] == verdict
    assert why in got[1]


def _held_store(tmp_path: Path) -> tuple[str, Result]:
    """A SQLite store holding one result of an erased subject (its kiosk's clock never
    read), captured by that clock just after the erasure."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    erased_at = _erase(store, "subj-4")
    held = _result("subj-4", 4, erased_at + timedelta(seconds=1))
    assert _deliver(store, held, erased_at + timedelta(seconds=2)) == []
    store.close()
    return url, held


def test_a_retry_leaves_a_held_result_held_and_a_release_stores_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, held = _held_store(tmp_path)
    assert main(["results", "retry", "--store", url]) == 0
    assert "stored 0 result(s) from the dead letters; 1 dead-lettered" in capsys.readouterr().out

    assert main(["results", "release", "--store", url, "--result", held.measurement_id,
                 "--yes"]) == 0

    out = capsys.readouterr().out
    assert f"stored result {held.measurement_id} and removed its 1 dead letter(s)" in out
    store = open_store(url)
    assert _stored(store) == {held.measurement_id}
    assert store.dead_letters() == []
    assert store.query("SELECT kind, selector, results, dead_letters FROM erasures "
                       "ORDER BY id") == [("subject", "subj-4", 0, 0),
                                          ("release", held.measurement_id, 1, 1)]
    store.close()


def test_a_release_stores_the_held_result_and_a_tombstone_still_holds(store: Store) -> None:
    erased_at = _erase(store, "subj-6")
    held, erased = (_result("subj-6", seed, erased_at + timedelta(seconds=1)) for seed in (6, 7))
    assert _deliver(store, held, erased_at + timedelta(seconds=2)) == []
    assert _deliver(store, erased, erased_at + timedelta(seconds=2)) == []
    store.erase(Selector("result", erased.measurement_id), "olga")  # its letter goes, too
    store.write_batch(Batch(dead_letters=[dead_letter(  # as if refused once more since
        iso_utc(erased_at), "appliance/lab/kiosk-1/result", "again", erased.to_json())]), *KEEP)

    done = store.release_held(held.measurement_id, letter_judge(), "olga")
    refused = store.release_held(erased.measurement_id, letter_judge(), "olga")

    assert (done.results, done.dead_letters) == (1, 1)
    assert (refused.results, refused.erasure_id) == (0, None)
    assert _stored(store) == {held.measurement_id}
    assert store.query("SELECT kind, os_user, selector FROM erasures WHERE id = ?",
                       (done.erasure_id,)) == [("release", "olga", held.measurement_id)]


def test_a_release_naming_no_held_result_exits_2_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = _held_store(tmp_path)
    other = "019a7c2e-5b10-7c3a-9d41-2f6e8b0a1c55"

    assert main(["results", "release", "--store", url, "--result", other, "--yes"]) == 2

    assert "no dead letter holds a result" in capsys.readouterr().err
    store = open_store(url)
    assert _stored(store) == set()
    assert len(store.dead_letters()) == 1
    assert store.query("SELECT COUNT(*) FROM erasures") == [(1,)]
    store.close()


@pytest.mark.broker
def test_through_a_worker_a_kiosk_an_hour_behind_keeps_a_new_consents_result(
    mqtt_broker: Any, topic_prefix: str, tmp_path: Path
) -> None:
    """The kiosk's live status and its result over the broker to an ingest worker: the
    status reads its clock, and the result it captured after the erasure is stored."""
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    config = config_from_mapping({
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port,
                 "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"erasclock-{uuid.uuid4().hex[:8]}",
                       "session_expiry_s": 60}}, environ={})
    reader, own = open_store(url), open_store(url)
    _erase(reader, "subj-5")
    reader.write("UPDATE erasures SET erased_at = ?",  # erased 10 minutes ago
                 [(iso_utc(datetime.now(UTC) - 10 * MINUTE),)])
    worker = IngestWorker(config, own)
    worker.start()
    try:
        assert worker.subscribed.wait(10), "worker did not subscribe"
        where = f"{topic_prefix}/lab/kiosk-1"
        fleet.publish_messages(mqtt_broker.host, mqtt_broker.port,
                               [(f"{where}/status", _status(-HOUR).to_json())])
        assert wait_until(lambda: worker.stats.statuses == 1, 20)  # committed: clock read
        new = _result("subj-5", 5, datetime.now(UTC) - HOUR)
        fleet.publish_messages(mqtt_broker.host, mqtt_broker.port,
                               [(f"{where}/result", new.to_json())])
        assert wait_until(lambda: worker.stats.received == 2, 20)
    finally:
        worker.stop()
        own.close()
    assert _stored(reader) == {new.measurement_id}
    reader.close()
