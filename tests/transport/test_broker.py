"""The broker fixtures: per-test topics on the machine's mosquitto, and a private one."""

from __future__ import annotations

import threading

import pytest

from appliance.transport.broker import PrivateBroker, port_open
from appliance.transport.client import LinkSettings, new_client

pytestmark = pytest.mark.broker


def round_trip(host: str, port: int, topic: str) -> bytes:
    """Subscribe to topic, publish one QoS 1 message to it, return what arrives."""
    got: list[bytes] = []
    arrived = threading.Event()
    client = new_client(LinkSettings(host, port, ""))
    client.on_message = lambda _c, _u, msg: (got.append(msg.payload), arrived.set())
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        client.publish(topic, b"hello", qos=1).wait_for_publish(5)
        assert arrived.wait(5)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0]


def test_each_test_gets_its_own_topic_on_the_running_broker(mqtt_broker, topic_prefix: str) -> None:
    assert topic_prefix.startswith("test/")
    assert round_trip(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/x") == b"hello"


def test_private_broker_stops_and_restarts_on_the_same_port(private_broker: PrivateBroker) -> None:
    port = private_broker.port
    assert round_trip("127.0.0.1", port, "a/b") == b"hello"
    private_broker.stop()
    assert not port_open("127.0.0.1", port)
    private_broker.start()
    assert private_broker.port == port
    assert round_trip("127.0.0.1", port, "a/b") == b"hello"


def test_private_broker_cleans_up_after_itself() -> None:
    with PrivateBroker() as broker:
        workdir, port = broker.workdir, broker.port
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port)
    assert not workdir.exists()
