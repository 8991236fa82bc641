"""Results a kiosk measured under another identity of its own (it held back for a clone with
its device id, then got its own id) are sent as this kiosk at its next start, on a real
mosquitto: none is lost, none goes out under the other kiosk's id, and the journal says so."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from appliance.config import config_from_mapping
from appliance.edge.relabel import send_as_this_kiosk
from appliance.edge.testing import fast_daemon, wait_until
from appliance.synthetic import fleet as fleetsim
from appliance.transport import outbox_file
from appliance.transport.acks import encode_acks
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.outbox import Outbox

PREFIX = "relabel"
pytestmark = [pytest.mark.broker, pytest.mark.slow]


class BackOffice:
    """Takes every result under the prefix, noting its topic and device id, and acks it."""

    def __init__(self, port: int) -> None:
        self.results: dict[str, tuple[str, str]] = {}  # measurement id -> (topic, device id)
        self.client = new_client(LinkSettings("127.0.0.1", port, "relabel-office"))
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/+/+/result", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        result = json.loads(message.payload)
        self.results[result["measurement_id"]] = (message.topic, result["device_id"])
        for body in encode_acks([result["measurement_id"]]):
            client.publish(message.topic.removesuffix("result") + "ack", body, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


def test_results_measured_under_the_shared_id_go_out_under_the_kiosks_own_id(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(7)
    before = [fleetsim.sample_result(rng, "shop-1", "kiosk-twin", i) for i in range(5)]
    outbox = Outbox(state / "outbox.sqlite3")  # what it measured before it held back
    outbox.add_many([(r.measurement_id, f"{PREFIX}/shop-1/kiosk-twin/result", r.to_json())
                     for r in before])
    outbox.close()
    office = BackOffice(broker.port)
    data = {"device": {"id": "kiosk-own", "site": "shop-2"},  # its own id now
            "camera": {"source": "synthetic", "limit": None},
            "mqtt": {"port": broker.port, "topic_prefix": PREFIX}, "state_dir": str(state),
            "edge": {"synthetic_fps": 5, "reconnect_initial_s": 0.2, "reconnect_cap_s": 1.0}}
    daemon = fast_daemon(config_from_mapping(data, "test", environ={}))
    thread = threading.Thread(target=daemon.run, daemon=True)
    ids = {r.measurement_id for r in before}
    try:
        with caplog.at_level(logging.WARNING, logger="appliance.edge.relabel"):
            thread.start()
            assert wait_until(lambda: ids <= set(office.results), 20)
            waiting = lambda: {m.measurement_id for m in daemon.outbox.pending()}  # noqa: E731
            assert wait_until(lambda: not ids & waiting(), 20)  # confirmed, out of the outbox
    finally:
        daemon.request_stop()
        thread.join(15)
        office.close()
    own = (f"{PREFIX}/shop-2/kiosk-own/result", "kiosk-own")
    assert {office.results[i] for i in ids} == {own}
    said = caplog.text
    assert f"5 result(s) in the outbox were measured on this kiosk under {PREFIX}/shop-1/" in said
    assert "sent as device id kiosk-own at site shop-2" in said


def test_only_results_on_another_topic_are_relabelled(tmp_path: Path) -> None:
    """This kiosk's own results and a row that is no result stay as they are."""
    rng = random.Random(3)
    own, other = (fleetsim.sample_result(rng, "s", device, 0) for device in ("me", "twin"))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add_many([(own.measurement_id, "p/s/me/result", own.to_json()),
                     (other.measurement_id, "p/s/twin/result", other.to_json()),
                     ("not-a-result", "p/s/twin/result", b"{}")])
    assert send_as_this_kiosk(outbox, "p/s/me/result", "s", "me") == 1
    rows = {m.measurement_id: (m.topic, m.payload) for m in outbox.pending()}
    outbox.close()
    assert rows[own.measurement_id] == ("p/s/me/result", own.to_json())
    assert rows["not-a-result"] == ("p/s/twin/result", b"{}")
    topic, payload = rows[other.measurement_id]
    assert topic == "p/s/me/result"
    assert json.loads(payload)["device_id"] == "me"
    assert json.loads(payload)["features"] == json.loads(other.to_json())["features"]


def test_a_full_outbox_of_own_results_is_not_read_to_relabel_a_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At start only the rows on another topic are read, payloads included: a kiosk's own
    results (a full outbox: tens of thousands) are left on disk."""
    rng = random.Random(11)
    own = [fleetsim.sample_result(rng, "s", "me", i) for i in range(450)]
    foreign = [fleetsim.sample_result(rng, "s", "twin", i) for i in range(3)]
    rows = [(r.measurement_id, "p/s/me/result", r.to_json()) for r in own]
    for index, result in enumerate(foreign):  # among the own ones, across the pages
        rows.insert(150 * index + 7, (result.measurement_id, "p/s/twin/result", result.to_json()))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add_many(rows)
    read: list[str] = []
    message_of = outbox_file.message_of
    monkeypatch.setattr(outbox_file, "message_of",
                        lambda row: read.append(row[1]) or message_of(row))
    assert send_as_this_kiosk(outbox, "p/s/me/result", "s", "me") == 3
    assert sorted(read) == sorted(r.measurement_id for r in foreign)
    monkeypatch.undo()
    stored = {m.measurement_id: (m.topic, m.payload) for m in outbox.pending(limit=1000)}
    outbox.close()
    assert [stored[r.measurement_id] for r in own] == [("p/s/me/result", r.to_json()) for r in own]
    assert {stored[r.measurement_id][0] for r in foreign} == {"p/s/me/result"}
