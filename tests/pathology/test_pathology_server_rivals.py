"""Two pathology servers under one client id, against the real mosquitto: the one started later
stops with exit 4 and says why; the first keeps serving. A dead predecessor's presence stops
no one."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import JOB_SCHEMA, request_topic, server_topic
from appliance.pathology.jobstore import open_pathology_store
from appliance.pathology.presence import PROBATION_S, Presence, RivalWatch, rival_message
from appliance.pathology.server import PathologyServer
from appliance.pathology.service_main import run_server
from tests.pathology_helpers import SteppedClock, serving

pytestmark = pytest.mark.broker


def _config(tmp_path: Path, broker: Any, prefix: str, client_id: str) -> Config:
    (tmp_path / "slides").mkdir(exist_ok=True)
    return config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": client_id, "slide_roots": [str(tmp_path / "slides")],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})


class Presences:
    """Every presence published on one server topic, in order."""

    def __init__(self, broker: Any, topic: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: m.payload and self.seen.append(
            json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, 1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def first(tmp_path: Path, mqtt_broker: Any, topic_prefix: str) -> Iterator[PathologyServer]:
    """A server serving in a thread of this test, stopped at the end."""
    config = _config(tmp_path, mqtt_broker, topic_prefix, f"twin-{uuid.uuid4().hex[:10]}")
    with serving(config) as server:
        yield server


def test_a_second_server_with_the_same_client_id_stops_and_the_first_serves_on(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, first: PathologyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the two took the connection from each other every second or so, forever."""
    topic = server_topic(topic_prefix, first.server_id)
    watch = Presences(mqtt_broker, topic)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    config = _config(second_dir, mqtt_broker, topic_prefix, first.server_id)
    codes: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: codes.append(run_server(config, stop)), daemon=True)
    thread.start()
    thread.join(60)
    stop.set()  # only if it did not stop by itself
    assert codes == [4]
    said = caplog.text
    assert f"another pathology server serves with client id {first.server_id!r}" in said
    assert "give each server its own pathology.client_id" in said
    # the first one reconnects and stays: its presence is the last word, online
    assert wait_until(lambda: first.connected.is_set() and bool(watch.seen) and
                      watch.seen[-1]["process"] == first.presence.process and
                      watch.seen[-1]["state"] == "online", timeout_s=30)
    assert first.failed is None
    watch.close()


def test_a_dead_predecessor_s_presence_stops_no_one(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str,
) -> None:
    """A server killed where its will was lost (a broker restarted meanwhile) left "online"
    retained; then its will on the same connection arrives. Neither is a live rival."""
    config = _config(tmp_path, mqtt_broker, topic_prefix, f"heir-{uuid.uuid4().hex[:10]}")
    dead = Presence(config.pathology.client_id, {}, started_at="2026-01-01T00:00:00.000Z",
                    connection=3)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    topic = server_topic(topic_prefix, config.pathology.client_id)
    publisher.publish(topic, dead.payload("online"), qos=1, retain=True).wait_for_publish(5)
    watch = Presences(mqtt_broker, topic)
    with serving(config, connected=False) as server:
        assert wait_until(lambda: any(p["process"] == server.presence.process
                                      for p in watch.seen),
                          timeout_s=10)  # it read the retained "online" and said its own
        publisher.publish(topic, dead.payload("offline"), qos=1, retain=True).wait_for_publish(5)
        assert wait_until(lambda: watch.seen[-1]["state"] == "offline", timeout_s=10)
        assert not wait_until(lambda: server.failed is not None, timeout_s=3)
    publisher.loop_stop()
    watch.close()


def test_a_rival_is_a_process_that_connects_again_and_the_later_one_gives_way() -> None:
    own = Presence("lab-0", {}, started_at="2026-12-04T10:00:00.000Z")
    watch = RivalWatch(own)
    older = Presence("lab-0", {}, started_at="2026-12-04T09:00:00.000Z", connection=1)
    younger = Presence("lab-0", {}, started_at="2026-12-04T11:00:00.000Z", connection=1)
    assert watch.heard(own.payload("online")) is None  # itself
    assert watch.heard(older.will()) is None  # heard once: maybe dead
    assert watch.heard(older.payload("offline", 2)) is None  # its connection 2's will, again
    older.connection = 3
    rival = watch.heard(older.payload("online"))  # connected once more: alive
    assert rival is not None
    assert rival["process"] == older.process
    assert watch.heard(younger.will()) is None
    younger.connection = 2
    assert watch.heard(younger.payload("online")) is None  # alive, but it gives way


def test_a_server_starting_where_another_may_run_takes_no_job_for_a_while(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first presence it hears is another process's will: that one may still run (our
    connect dropped it), so requests wait until it had time to show itself; a clean stop
    leaves nothing to wait for."""
    clock = SteppedClock()
    monkeypatch.setattr(time, "monotonic", clock)
    config = _config(tmp_path, mqtt_broker, topic_prefix, "lab-0")
    (tmp_path / "slides" / "a.jpg").write_bytes(b"")
    request = json.dumps({"schema": JOB_SCHEMA, "job_id": "lab/j1", "submitted_at": "",
                          "slides": [{"path": str(tmp_path / "slides" / "a.jpg"),
                                      "um_per_px": 1.0}]}).encode()
    store = open_pathology_store(config.store.url)
    server = PathologyServer(config, store)  # never connected: events are fed by hand
    other = Presence("lab-0", {}, started_at="2026-01-01T00:00:00.000Z")
    server._handle("presence", (other.will(),))  # noqa: SLF001 - the events, fed by hand
    server._handle("job", ("lab/j1", request, 1, 0))  # noqa: SLF001
    assert store.job("lab/j1") is None
    clock.now_s += PROBATION_S
    server._handle("job", ("lab/j1", request, 1, 0))  # noqa: SLF001 - its turn comes again
    assert store.job("lab/j1") is not None
    calm = PathologyServer(config, store)
    calm._handle("presence", (other.payload("offline"),))  # noqa: SLF001 - a clean stop
    second = request.replace(b'"lab/j1"', b'"lab/j2"')
    calm._handle("job", ("lab/j2", second, 2, 0))  # noqa: SLF001
    assert store.job("lab/j2") is not None
    store.close()



def _earlier_version(state: str, server_id: str = "lab-0") -> bytes:
    """A presence as servers before presence named a process published it."""
    return json.dumps({"server": server_id, "state": state, "at": "2026-01-01T00:00:00.000Z",
                       "backend": {}}).encode()


def test_an_earlier_version_s_presence_is_a_live_server_unless_its_will_or_a_clear_says_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It names no process, start or connection, and was passed over: a server of an
    earlier version under the same name went unnoticed, and the two took the connection
    from each other for good. Its "online" is a live server, which cannot see this one, so
    this one gives way; its "offline" (its clean stop or its will, one payload) holds jobs
    back for PROBATION_S, and says it lives when it replaced this server's own presence."""
    clock = SteppedClock()
    monkeypatch.setattr(time, "monotonic", clock)
    own = Presence("lab-0", {})
    online = RivalWatch(own)
    assert online.heard(_earlier_version("online")) == json.loads(_earlier_version("online"))
    will = RivalWatch(own)
    assert will.heard(_earlier_version("offline")) is None  # first heard: maybe a clean stop
    assert will.on_probation()
    assert will.heard(own.payload("online")) is None
    assert will.heard(b"") is None  # cleared: no one
    clock.now_s += PROBATION_S
    assert not will.on_probation()
    assert will.heard(_earlier_version("offline")) is not None  # it replaced ours: it connected
    message = rival_message("lab-0", json.loads(_earlier_version("online")), "p/servers/lab-0")
    assert "of an earlier version" in message
    assert "an empty retained message on p/servers/lab-0" in message
    assert "started" not in message  # it says no start, and none is made up


def test_a_server_under_the_name_of_a_running_earlier_version_stops_and_leaves_it_serving(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str,
) -> None:
    """An earlier version's server: its client id is its name, its will an "offline" that
    names no process, and it says "online" at each connect, reconnecting a second after it
    is dropped. The current server under that name stopped no one: each connect dropped the
    other, for good. Now it stops (exit 4) and stores no job; the earlier one stays on."""
    server_id = f"legacy-{uuid.uuid4().hex[:10]}"
    config = _config(tmp_path, mqtt_broker, topic_prefix, server_id)
    topic = server_topic(topic_prefix, server_id)
    legacy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=server_id,
                         protocol=mqtt.MQTTv5)
    legacy.will_set(topic, _earlier_version("offline", server_id), qos=1, retain=True)
    legacy.reconnect_delay_set(1, 1)
    legacy.on_connect = lambda client, *_: client.publish(
        topic, _earlier_version("online", server_id), qos=1, retain=True)
    legacy.connect(mqtt_broker.host, mqtt_broker.port)
    legacy.loop_start()
    (tmp_path / "slides" / "a.jpg").write_bytes(b"")
    request = json.dumps({"schema": JOB_SCHEMA, "job_id": "lab/j1", "submitted_at": "",
                          "slides": [{"path": str(tmp_path / "slides" / "a.jpg"),
                                      "um_per_px": 1.0}]})
    try:
        assert wait_until(legacy.is_connected, timeout_s=10)
        legacy.publish(request_topic(topic_prefix, "lab/j1"), request, qos=1,
                       retain=True).wait_for_publish(5)
        codes: list[int] = []
        stop = threading.Event()
        thread = threading.Thread(target=lambda: codes.append(run_server(config, stop)),
                                  daemon=True)
        thread.start()
        thread.join(30)
        stop.set()  # only if it did not stop by itself
        assert codes == [4]
        assert wait_until(legacy.is_connected, timeout_s=10)  # it has its name back
        assert not wait_until(lambda: not legacy.is_connected(), timeout_s=3)
        store = open_pathology_store(config.store.url)
        assert store.query("SELECT COUNT(*) FROM pathology_jobs") == [(0,)]
        store.close()
    finally:
        with suppress(RuntimeError):  # not connected: nothing to clear with
            legacy.publish(request_topic(topic_prefix, "lab/j1"), b"", qos=1,
                           retain=True).wait_for_publish(5)
        legacy.disconnect()
        legacy.loop_stop()


def test_a_server_that_stops_cleanly_leaves_its_clean_offline_not_its_will(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str,
) -> None:
    """It disconnected before the broker had taken its "offline" (no wait for the PUBACK):
    about every other stop the broker dropped both and sent its will, so the next server
    to start read "did not stop cleanly" and took no job for PROBATION_S. Five stops in a
    row, each must leave the clean "offline"."""
    config = _config(tmp_path, mqtt_broker, topic_prefix, f"calm-{uuid.uuid4().hex[:10]}")
    watch = Presences(mqtt_broker, server_topic(topic_prefix, config.pathology.client_id))
    left = []
    for _ in range(5):
        with serving(config) as server:
            assert wait_until(lambda: any(p["process"] == server.presence.process
                                          and p["state"] == "online" for p in watch.seen),
                              timeout_s=10)
        assert wait_until(lambda: watch.seen[-1]["state"] == "offline", timeout_s=10)
        left.append((watch.seen[-1]["process"] == server.presence.process,
                     watch.seen[-1]["lost"]))
    watch.close()
    assert left == [(True, False)] * 5
