"""The pathology server's question to the broker about its packet limit, asked once a connection
closed before its CONNACK, on a mosquitto of this test's own: the short connection that asks
never takes over the server's own connection."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import server_topic
from appliance.pathology.server import PathologyServer
from appliance.pathology.serverlink import probe_settings
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import broker_max_packet_bytes
from tests.pathology_helpers import caught_up, counting_subacks, serving, subscribed

pytestmark = pytest.mark.broker
BROKER_MAX_PACKET_BYTES = 100_000


def _config(tmp_path: Path, broker: PrivateBroker) -> Config:
    (tmp_path / "slides").mkdir()
    return config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "signals-probe"},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": "signals-probe-0", "slide_roots": [str(tmp_path / "slides")],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})


def _presence_messages(broker: PrivateBroker, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    """A client collecting what is published on a server's presence topic after the
    retained "online" it finds there."""
    heard: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, message: heard.append(bytes(message.payload))
    counting_subacks(client)
    client.connect(broker.host, broker.port)
    client.loop_start()
    subscribed(client, topic)
    assert wait_until(lambda: len(heard) == 1, 10)  # the server's retained "online"
    heard.clear()
    return client, heard


def test_the_packet_size_probe_leaves_the_server_s_connection_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe connected under the server's own client id: where the server's reconnect had
    come up by the time it asked (a connection closed before its CONNACK once, a broker
    restarting, say), the broker closed the server's connection for the probe's and published
    the server's will, which the next start reads as a crash. Here the server is connected when
    it gets that event."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write(f"max_packet_size {BROKER_MAX_PACKET_BYTES}\n")
    broker.start()
    answered = threading.Event()
    ask = PathologyServer._event_closed_before_connack  # noqa: SLF001 - the event's handler

    def asked(server: PathologyServer) -> None:
        ask(server)
        answered.set()

    monkeypatch.setattr(PathologyServer, "_event_closed_before_connack", asked)
    try:
        with serving(_config(tmp_path, broker)) as server:
            listener, heard = _presence_messages(broker, server_topic("signals-probe",
                                                                      server.server_id))
            try:
                server.events.put(("closed_before_connack", ()))
                assert answered.wait(10)
                # a connection taken over is closed, and its will sent, at the probe's CONNECT
                caught_up(listener)
            finally:
                listener.disconnect()
                listener.loop_stop()
            assert heard == []  # no will, no new "online" after a reconnect
            assert (server.presence.connection, server.connected.is_set()) == (1, True)
            assert server.failed is None
            # the probe, as the server asks it, still learns the limit
            assert broker_max_packet_bytes(probe_settings(server.link_settings)) \
                == BROKER_MAX_PACKET_BYTES
    finally:
        broker.close()
