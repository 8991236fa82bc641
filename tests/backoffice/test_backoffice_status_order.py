"""A kiosk's statuses are ordered by when the back office places their sending
(status_order.py), not by the kiosk's clock: one whose clock stepped back a year keeps its fleet
details current, and a retained copy of an older status replayed later does not write over
them. SQLite and PostgreSQL; with the real mosquitto and an ingest worker, and through triage.
Before, a status stamped before the stored one changed only the kiosk's state, so after the
step the fleet showed the old outbox depth until the kiosk's clock caught up."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.fleet import camera_text, fleet_rows
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.payloads import Status
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
YEAR = timedelta(days=365)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_status_order", open_store) as opened:
        yield opened


def _status(device: str, at: datetime, depth: int, state: str = "online") -> Status:
    return fleet.online_status("lab", device, outbox_depth=depth).model_copy(
        update={"at": at, "state": state})


def _write(store: Store, device: str, status: Status, *, retained: bool = False) -> None:
    """``status`` received now by an ingest worker (triage, then one batch)."""
    message = Inbound(f"appliance/lab/{device}/status", status.to_json(), 1, 1, retained)
    store.write_batch(Triage("appliance", 2**20).sort([message])[0], *KEEP)


def _shown(store: Store, device: str) -> dict[str, Any]:
    (row,) = [row for row in fleet_rows(store) if row["device_id"] == device]
    return row


def test_after_a_clock_step_back_the_next_live_status_shows_and_an_older_replay_does_not(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    before = _status("k", now, depth=1)
    _write(store, "k", before)
    stepped = _status("k", now - YEAR, depth=7)  # an RTC reset: a year behind
    _write(store, "k", stepped)
    assert _shown(store, "k")["outbox_depth"] == 7  # before: 1 until the clock caught up
    _write(store, "k", before, retained=True)  # the broker's stale copy (lost on its restart)
    _write(store, "k", stepped, retained=True)  # its copy of the newest: changes nothing
    shown = _shown(store, "k")
    assert (shown["state"], shown["outbox_depth"]) == ("online", 7)
    assert shown["clock_ahead_s"] == pytest.approx(-YEAR.total_seconds(), abs=60)


def test_after_a_clock_step_back_a_last_will_keeps_and_a_clean_stop_writes_details(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    _write(store, "k", _status("k", now, depth=1))
    will = _status("k", now - YEAR - timedelta(minutes=1), depth=0, state="offline")
    _write(store, "k", _status("k", now - YEAR, depth=7))
    _write(store, "k", will)  # written when it connected, after the step: older
    shown = _shown(store, "k")
    assert (shown["state"], shown["outbox_depth"]) == ("offline", 7)
    # the camera as last reported, seconds ago by the back office's clock (before: 365d ago)
    assert re.fullmatch(r"last said online, \d+s ago", camera_text(shown, datetime.now(UTC)))
    _write(store, "k", _status("k", now - YEAR + timedelta(seconds=5), depth=0,
                               state="offline"))  # a clean stop: its outbox as it stopped
    assert _shown(store, "k")["outbox_depth"] == 0


def test_in_one_batch_the_status_after_the_step_wins_and_a_stale_replay_does_not(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    messages = [Inbound("appliance/lab/k/status", status.to_json(), i, 1, retained)
                for i, (status, retained) in enumerate([
                    (_status("k", now, depth=1), False),
                    (_status("k", now - YEAR, depth=7), False),
                    (_status("k", now - timedelta(seconds=1), depth=2), True)])]
    store.write_batch(Triage("appliance", 2**20).sort(messages)[0], *KEEP)
    assert _shown(store, "k")["outbox_depth"] == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kiosk_stuck_before_migration_24_shows_its_next_live_status(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as before_24:  # a store as it was before migration 24
        before_24.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:23])
        stack = fresh_store(backend, tmp_path, "test_status_order", open_store)
        old = stack.__enter__()
    try:
        now = datetime.now(UTC)
        # its clock stepped back a year a day ago: its statuses since changed only its state
        old.write("INSERT INTO devices (site, device_id, state, last_seen, status_at, "
                  "outbox_depth) VALUES (?, ?, ?, ?, ?, ?)",
                  [("lab", "k", "online", iso_utc(now), iso_utc(now - timedelta(days=1)), 1)])
        assert old.migrate()[:1] == [24]  # and those after it
        assert _shown(old, "k")["status_sent_at"] == iso_utc(now - timedelta(days=1))
        _write(old, "k", _status("k", now - YEAR + timedelta(seconds=1), depth=7))
        assert _shown(old, "k")["outbox_depth"] == 7
    finally:
        stack.__exit__(None, None, None)


@pytest.mark.broker
def test_a_worker_shows_a_stepped_back_kiosk_s_next_status_and_not_an_older_replay(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    topic = f"{topic_prefix}/lab/kiosk-1/status"
    now = datetime.now(UTC)
    before, stepped = _status("kiosk-1", now, depth=1), _status("kiosk-1", now - YEAR, depth=7)
    worker = _worker(topic_prefix, tmp_path, store)
    try:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, before.to_json())], retain=True)
        assert wait_until(lambda: _depths(store) == {"kiosk-1": 1}, 20)
        fleet.publish_messages("127.0.0.1", 1883, [(topic, stepped.to_json())], retain=True)
        assert wait_until(lambda: _depths(store) == {"kiosk-1": 7}, 20)  # at once, live
        _stop(worker)
        # the broker's retained copy is older (a restart lost the newest), replayed at the
        # next worker's subscribe; another kiosk's live status after it marks it committed
        fleet.publish_messages("127.0.0.1", 1883, [(topic, before.to_json())], retain=True)
        worker = _worker(topic_prefix, tmp_path, store)
        marker = _status("kiosk-2", now, depth=3)
        fleet.publish_messages("127.0.0.1", 1883, [(f"{topic_prefix}/lab/kiosk-2/status",
                                                    marker.to_json())])
        assert wait_until(lambda: "kiosk-2" in _depths(store), 20)
        # the replay was written, before the marker (the worker counts a batch just after its
        # commit, which the store shows a moment before)
        assert wait_until(lambda: worker[0].stats.statuses >= 2, 20), worker[0].stats
        assert _depths(store) == {"kiosk-1": 7, "kiosk-2": 3}
    finally:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"")], retain=True)
        _stop(worker)


def _worker(prefix: str, state_dir: Path, store: Store) -> tuple[IngestWorker, Store]:
    """A started ingest worker on ``store``'s database, with its own connection to it (as a
    worker process has), and that connection."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": prefix},
        "state_dir": str(state_dir),
        "backoffice": {"client_id": f"order-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
    }, environ={})
    own = open_store(store.url, store._pg_schema)  # noqa: SLF001  (the test's schema)
    worker = IngestWorker(config, own)
    worker.start()
    assert worker.subscribed.wait(10), "worker did not subscribe"
    return worker, own


def _stop(worker: tuple[IngestWorker, Store]) -> None:
    worker[0].stop()
    worker[1].close()


def _depths(store: Store) -> dict[str, int]:
    return {row["device_id"]: row["outbox_depth"] for row in fleet_rows(store)}
