"""A kiosk's statuses of one boot are ordered by where in that boot it built them (the user
properties of appliance/transport/bootstamp.py), with the real mosquitto and ingest workers,
SQLite and PostgreSQL.

Before, a live status was placed at its receipt (status_order.py), so a worker back from a
stop, taking the statuses the broker had queued for it, wrote each one's outbox, camera and
versions over the newer ones another worker had stored, until it reached the newest; and a
last will, placed by the kiosk's clock as its latest status read it, won over the
connection's statuses when that clock had stepped back by about the connection's age."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.backoffice.fleet import fleet_rows
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import Store, open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.payloads import Status
from tests.store_helpers import BACKENDS, fresh_store

pytestmark = pytest.mark.broker
BOOT = "4242424242"  # a kiosk's boot id, as its status's user property says it


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_status_boot_order", open_store) as opened:
        yield opened


def _status(at: datetime, depth: int, state: str = "online") -> Status:
    return fleet.online_status("lab", "kiosk-1", outbox_depth=depth).model_copy(
        update={"at": at, "state": state})


def _publish(topic: str, statuses: list[tuple[Status, int, int]]) -> None:
    """Publish each status retained at QoS 1, stamped ``since_boot_ms`` into boot ``BOOT`` by
    a link connected at ``link_ms`` (the wire form of appliance/transport/bootstamp.py), and
    wait for the broker's acks."""
    client = new_client(LinkSettings("127.0.0.1", 1883, ""))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        for status, since_boot_ms, link_ms in statuses:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("appliance-boot", BOOT),
                                       ("appliance-since-boot-ms", str(since_boot_ms)),
                                       ("appliance-link-since-boot-ms", str(link_ms))]
            client.publish(topic, status.to_json(), qos=1, retain=True,
                           properties=properties).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _worker(prefix: str, state_dir: Path, store: Store, client_id: str,
            own: Store | None = None, **backoffice: Any) -> tuple[IngestWorker, Store]:
    """A started ingest worker on ``store``'s database, with its own connection to it
    (``own``, else a new one)."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": prefix},
        "state_dir": str(state_dir),
        "backoffice": {"client_id": client_id, "session_expiry_s": 120, **backoffice},
    }, environ={})
    own = own or _connection(store)
    worker = IngestWorker(config, own)
    worker.start()
    assert worker.subscribed.wait(10), "worker did not subscribe"
    return worker, own


def _connection(store: Store) -> Store:
    return open_store(store.url, store._pg_schema)  # noqa: SLF001  (the test's schema)


def _stop(worker: tuple[IngestWorker, Store]) -> None:
    worker[0].stop()
    worker[1].close()


def _shown(store: Store) -> tuple[str, int] | None:
    """The kiosk's state and outbox depth as the fleet shows them (None: not yet a row)."""
    rows = fleet_rows(store)
    return (rows[0]["state"], rows[0]["outbox_depth"]) if rows else None


def test_a_worker_back_from_a_stop_writes_no_queued_status_over_a_newer_one(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    now = datetime.now(UTC)
    shown, rows = _replayed(topic_prefix, tmp_path, store, [
        (_status(now - timedelta(seconds=2), depth=1), 1000, 500),
        (_status(now - timedelta(seconds=1), depth=2), 2000, 500)], ("online", 2))
    # the kiosk's clock as the live worker read it stays: the queue read it behind by its wait
    assert rows[1]["clock_ahead_s"] == rows[0]["clock_ahead_s"]
    assert rows[1]["last_seen"] == rows[0]["last_seen"]  # before: the queue's late receipt
    # the queue's two statuses, and the retained copy its subscribe brings: before, the
    # oldest of the queue showed first, [("online", 1), ("online", 2), ...]
    assert len(shown) >= 2
    assert set(shown) == {("online", 2)}


def test_a_worker_back_from_a_stop_shows_no_queued_online_status_over_a_last_will(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    now = datetime.now(UTC)
    shown, rows = _replayed(topic_prefix, tmp_path, store, [
        (_status(now - timedelta(seconds=1), depth=2), 2000, 1000),  # online; its link lost:
        (_status(now - timedelta(hours=1), depth=0, state="offline"), 1000, 1000)],  # its will
        ("offline", 2))
    assert len(shown) >= 2
    assert set(shown) == {("offline", 2)}  # before: ("online", 2) first
    # last seen as its will came: the queue it sent before does not make it look seen since
    assert rows[1]["last_seen"] == rows[0]["last_seen"]


def test_a_worker_back_from_a_stop_shows_no_queued_last_will_over_the_next_link_s_status(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    """Its link lost and made again while the worker was away: the will of the first link
    changes nothing once the second link's birth is stored (before: "offline" from the will
    on, for good until the kiosk's next status: the birth, no later than the one stored, was
    taken for a replay)."""
    now = datetime.now(UTC)
    shown, rows = _replayed(topic_prefix, tmp_path, store, [
        (_status(now - timedelta(seconds=3), depth=2), 2000, 1000),
        (_status(now - timedelta(hours=1), depth=0, state="offline"), 1000, 1000),  # will
        (_status(now - timedelta(seconds=1), depth=3), 5000, 5000)],  # the next link's birth
        ("online", 3))
    assert len(shown) >= 3
    assert set(shown) == {("online", 3)}
    assert rows[1]["last_seen"] == rows[0]["last_seen"]


def test_a_last_will_keeps_the_newer_details_of_a_kiosk_whose_clock_stepped_back(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    topic = f"{topic_prefix}/lab/kiosk-1/status"
    now = datetime.now(UTC)
    # built an hour ago, as the kiosk connected, with its outbox empty then
    will = _status(now - timedelta(hours=1), depth=0, state="offline")
    # then its clock stepped back 61 minutes (a wrong NTP server); its outbox holds 7 now
    latest = _status(now - timedelta(minutes=61), depth=7)
    worker = _worker(topic_prefix, tmp_path, store, f"statorder-will-{uuid.uuid4().hex}")
    try:
        _publish(topic, [(latest, 3_600_000, 1000)])
        assert wait_until(lambda: _shown(store) == ("online", 7), 20)
        _publish(topic, [(will, 1000, 1000)])  # the broker publishes it: the link is lost
        assert wait_until(lambda: (_shown(store) or ("",))[0] == "offline", 20)
    finally:
        _stop(worker)
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"")], retain=True)
    assert _shown(store) == ("offline", 7)  # before: ("offline", 0), the will's outbox


def _replayed(prefix: str, tmp_path: Path, store: Store,
              statuses: list[tuple[Status, int, int]],
              stored: tuple[str, int]
              ) -> tuple[list[tuple[str, int] | None], list[dict[str, Any]]]:
    """What the fleet shows after each batch of a worker back from a stop, taking the
    ``statuses`` the broker queued for it while another worker stored them (``stored``), and
    the kiosk's fleet row (its clock reading, when last seen) before it came back and after."""
    topic = f"{prefix}/lab/kiosk-1/status"
    away_id = f"statorder-away-{uuid.uuid4().hex[:8]}"
    # one message a batch: the queue is written one status at a time, as a long one is
    away = _worker(prefix, tmp_path / "away", store, away_id, batch_max_rows=1)
    _stop(away)  # its session stays: the broker queues the kiosk's statuses for it
    live = _worker(prefix, tmp_path / "live", store, f"statorder-live-{uuid.uuid4().hex}")
    try:
        _publish(topic, statuses)
        assert wait_until(lambda: _shown(store) == stored, 20)
    finally:
        _stop(live)
    rows = fleet_rows(store)
    own, shown = _connection(store), list[tuple[str, int] | None]()
    write_batch = own.write_batch

    def write_and_look(*args: Any, **kwargs: Any) -> list[str]:
        written = write_batch(*args, **kwargs)
        shown.append(_shown(own))  # what the fleet shows after each batch
        return written

    own.write_batch = write_and_look  # type: ignore[method-assign]
    back = _worker(prefix, tmp_path / "away", store, away_id, own, batch_max_rows=1)
    try:
        assert back[0].session_present
        assert wait_until(lambda: back[0].stats.statuses >= len(statuses), 20)
    finally:
        _stop(back)
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"")], retain=True)
    return shown, [*rows, *fleet_rows(store)]

