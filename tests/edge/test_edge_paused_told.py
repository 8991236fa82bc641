"""A kiosk whose outbox refuses a write pauses measuring and says so in its status
(``measuring_paused``); the back office's fleet table shows it, and the kiosk screen says staff
were told only once such a status reached the broker (its PUBACK: edge/staff.py)."""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.fleet import fleet_json, fleet_table
from appliance.backoffice.store import open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.screen_state import STAFF_ASK, STAFF_TOLD
from appliance.edge.testing import ResultCollector, fast_daemon, wait_until
from appliance.transport.broker import free_port
from appliance.transport.outbox import OutboxError
from tests.disk_helpers import refuse_moving
from tests.fake_broker import FakeBroker, payload, puback, topic


def kiosk_config(tmp_path: Path, host: str, port: int, prefix: str, **edge: Any) -> Config:
    return config_from_mapping({
        "device": {"id": "kiosk-p", "site": "lab"},
        "camera": {"source": "synthetic"},
        "mqtt": {"host": host, "port": port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"synthetic_fps": 200, **edge},
    }, "test", environ={})


def refuse_writes(daemon: EdgeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the outbox refuse every commit and every recovery probe, as a failing SD card
    does (not a full disk: its free space is as it was)."""
    def refused(*_args: Any) -> list[int]:
        raise OutboxError("disk I/O error (as from a failing card)")
    monkeypatch.setattr(daemon.outbox, "add_many", refused)
    monkeypatch.setattr(daemon.outbox, "writable", lambda: False)


@contextlib.contextmanager
def running(daemon: EdgeDaemon) -> Iterator[EdgeDaemon]:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        thread.join(15)


def guidance(daemon: EdgeDaemon) -> tuple[Any, Any]:
    view = daemon.display.state.snapshot()
    return view["guidance"], view.get("staff")


@pytest.mark.broker
def test_a_refused_outbox_write_reaches_the_fleet_table_as_measuring_paused(
    mqtt_broker: Any, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = ResultCollector(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#",
                                f"c-{uuid.uuid4().hex[:10]}")
    daemon = fast_daemon(kiosk_config(tmp_path, mqtt_broker.host, mqtt_broker.port,
                                      topic_prefix))
    try:
        with running(daemon):
            assert wait_until(lambda: daemon.committer.committed >= 2, 30)
            assert all(s.measuring_paused is None for s in collector.statuses)
            refuse_writes(daemon, monkeypatch)
            assert wait_until(daemon.measuring_paused.is_set, 30)
            assert wait_until(lambda: any(s.measuring_paused == "storage"
                                          for s in collector.statuses), 15)
            assert wait_until(lambda: guidance(daemon) == ("guide_paused_storage",
                                                           STAFF_TOLD), 15)
    finally:
        collector.close()
    paused = next(s for s in collector.statuses if s.measuring_paused == "storage")
    assert paused.state == "online"
    topic = f"{topic_prefix}/lab/kiosk-p/status"
    batch, _ = Triage(topic_prefix, 1000).sort([Inbound(topic, paused.to_json(), 1, 1, False)])
    assert not batch.dead_letters
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        store.write_batch(batch, 100)
        (device,) = store.devices()
        table = fleet_table(store)
        (listed,) = json.loads(fleet_json(store))
    finally:
        store.close()
    assert device["measuring_paused"] == listed["measuring_paused"] == "storage"
    assert "online, measuring paused: storage" in table.splitlines()[1]


def damaged_immovable_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kiosk's state folder (returned) whose outbox is damaged and that the filesystem will
    not let move aside (its permissions): a kiosk started there keeps its results in the
    repaired copy (outbox_repair.py)."""
    state = tmp_path / "state"
    state.mkdir()
    damaged = state / "outbox.sqlite3"
    damaged.write_bytes(b"not an outbox " * 300)
    refuse_moving(monkeypatch, damaged, errno.EACCES)
    return state


def scraped_gauge(daemon: EdgeDaemon, name: str) -> str:
    """The line a Prometheus scrape of the kiosk's metrics endpoint reads for gauge ``name``."""
    daemon.status.start()
    try:
        port = daemon.config.edge.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        daemon.status.close()
        daemon.outbox.close()
    assert f"# TYPE {name} gauge" in text
    (line,) = (line for line in text.splitlines() if line.startswith(f"{name} "))
    return line


@pytest.mark.parametrize("damaged", [True, False], ids=["repaired-copy", "own-outbox"])
def test_a_kiosk_on_its_repaired_outbox_copy_says_so_in_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """The status, the fleet and STATUS= said that a kiosk keeps its results in the repaired
    copy of a damaged outbox that cannot be moved aside, but nothing in its metrics did: an
    alert on them never saw it. Now the gauge appliance_edge_outbox_on_repaired_copy is 1 there
    and 0 on the kiosk's own outbox."""
    if damaged:
        damaged_immovable_outbox(tmp_path, monkeypatch)
    daemon = fast_daemon(kiosk_config(tmp_path, "127.0.0.1", free_port(), "metrics-test",
                                      metrics_port=free_port()))
    assert (daemon.outbox.path.name == "outbox.sqlite3.repaired") is damaged
    line = scraped_gauge(daemon, "appliance_edge_outbox_on_repaired_copy")
    assert line == f"appliance_edge_outbox_on_repaired_copy {1.0 if damaged else 0.0}"


@pytest.mark.broker
def test_a_kiosk_on_its_repaired_outbox_copy_reaches_the_fleet_table(
    mqtt_broker: Any, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged outbox the filesystem will not move aside leaves the kiosk measuring into
    the repaired copy (outbox_repair.py); its status says so (``outbox_in_use``), and the
    fleet table shows it, so that someone frees the damaged file."""
    state = damaged_immovable_outbox(tmp_path, monkeypatch)
    collector = ResultCollector(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#",
                                f"c-kiosk-{uuid.uuid4().hex[:10]}")
    daemon = fast_daemon(kiosk_config(tmp_path, mqtt_broker.host, mqtt_broker.port,
                                      topic_prefix))
    assert daemon.outbox.path == state / "outbox.sqlite3.repaired"
    try:
        with running(daemon):
            assert wait_until(lambda: daemon.committer.committed >= 2, 30)
            assert wait_until(lambda: any(s.outbox_in_use == "repaired_copy"
                                          for s in collector.statuses), 15)
            assert "OUTBOX ON ITS REPAIRED COPY" in daemon.status.text()
            assert not daemon.measuring_paused.is_set()  # it measures
    finally:
        collector.close()
    on_copy = next(s for s in collector.statuses if s.outbox_in_use == "repaired_copy")
    assert on_copy.state == "online"
    assert all(s.outbox_in_use is None for s in collector.statuses if s.state == "offline")
    topic = f"{topic_prefix}/lab/kiosk-p/status"
    batch, _ = Triage(topic_prefix, 1000).sort([Inbound(topic, on_copy.to_json(), 1, 1, False)])
    assert not batch.dead_letters
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        store.write_batch(batch, 100)
        table = fleet_table(store)
        (listed,) = json.loads(fleet_json(store))
    finally:
        store.close()
    assert listed["outbox_in_use"] == "repaired_copy"
    assert "online, outbox on its repaired copy" in table.splitlines()[1]


class _HeldStatusBroker(FakeBroker):
    """A broker but for statuses: each status PUBLISH is kept (its JSON) and its PUBACK held
    back until ``release()``."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[dict[str, Any]] = []
        self.held: list[tuple[socket.socket, bytes]] = []
        self.released = threading.Event()
        self._lock = threading.Lock()

    def publish(self, connection: socket.socket, number: int, first: int, body: bytes) -> bool:
        if not (first & 0x06 and topic(body).endswith("/status")):
            return super().publish(connection, number, first, body)
        with self._lock:
            self.statuses.append(json.loads(payload(body)))
            if not self.released.is_set():
                self.held.append((connection, puback(body, 0)))
                return True
        connection.sendall(puback(body, 0))
        return True

    def release(self) -> None:
        """Send the held PUBACKs, and answer each status from now on."""
        with self._lock:
            self.released.set()
            held, self.held = self.held, []
        for connection, answer in held:
            with contextlib.suppress(OSError):
                connection.sendall(answer)


def test_the_screen_says_staff_were_told_only_after_the_paused_status_s_puback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _HeldStatusBroker()
    daemon = fast_daemon(kiosk_config(tmp_path, "127.0.0.1", broker.port, "test/held"))
    try:
        with running(daemon):
            assert wait_until(lambda: daemon.committer.committed >= 1 and daemon.link.connected,
                              30)
            refuse_writes(daemon, monkeypatch)
            assert wait_until(lambda: any(s.get("measuring_paused") == "storage"
                                          for s in broker.statuses), 30)
            assert wait_until(lambda: guidance(daemon) == ("guide_paused_storage", STAFF_ASK),
                              10)
            assert not daemon.link.status_reached_since(0.0)  # no PUBACK for any status yet
            assert guidance(daemon) == ("guide_paused_storage", STAFF_ASK)
            broker.release()
            assert wait_until(lambda: guidance(daemon) == ("guide_paused_storage",
                                                           STAFF_TOLD), 15)
    finally:
        broker.close()
