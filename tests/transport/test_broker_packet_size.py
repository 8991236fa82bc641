"""The shipped broker config bounds a whole packet, not only its payload: a login that sends a
small payload with megabytes of MQTT 5 user properties is disconnected and nothing of it
reaches the back office, whose session would otherwise queue and receive every such packet."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.transport.client import connect_properties, new_client
from tests.fleet_broker import FleetBroker, provisioned_broker

pytestmark = pytest.mark.broker
KIOSK, CLIENT_ID = "kiosk-a", "edge-shop-1-kiosk-a"
TOPIC = "appliance/shop-1/kiosk-a/result"


@pytest.fixture
def fleet_broker() -> Iterator[FleetBroker]:
    with provisioned_broker(["--device=shop-1/kiosk-a", "--worker", "backoffice-1"]) as broker:
        yield broker


class Office:
    """The back office's shared subscription to every result, noting each payload."""

    def __init__(self, fleet: FleetBroker) -> None:
        self.payloads: list[bytes] = []
        self.arrived = threading.Event()
        subscribed = threading.Event()
        settings = fleet.settings("backoffice-1", "backoffice-1")
        self.client = new_client(settings)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda client, *_: client.subscribe(
            "$share/backoffice/appliance/+/+/result", qos=1)
        self.client.connect("127.0.0.1", fleet.port, properties=connect_properties(settings))
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.payloads.append(bytes(message.payload))
        self.arrived.set()


def _kiosk_sends(fleet: FleetBroker, payload: bytes,
                 properties: Properties | None) -> tuple[list[int], bool]:
    """A kiosk connection that publishes one QoS 1 message: the PUBACK reason codes it got,
    and whether the broker ended the connection instead."""
    answered, acks, cut = threading.Event(), [], threading.Event()
    client = new_client(fleet.settings(KIOSK, CLIENT_ID))
    client.on_connect = lambda *_: answered.set()
    client.on_publish = lambda _c, _u, _m, code, _p: (acks.append(code.value), answered.set())
    client.on_disconnect = lambda *_: (cut.set(), answered.set())
    client.connect("127.0.0.1", fleet.port)
    client.loop_start()
    try:
        assert answered.wait(10)
        answered.clear()
        client.publish(TOPIC, payload, qos=1, properties=properties)
        assert answered.wait(30)
        return list(acks), cut.is_set()  # before this side's own DISCONNECT
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_packet_of_megabytes_of_user_properties_is_refused(fleet_broker: FleetBroker) -> None:
    office = Office(fleet_broker)
    try:
        hostile = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        hostile.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(20)]  # 1.2 MB
        # on main: acknowledged ([0], False), queued and delivered to the office
        assert _kiosk_sends(fleet_broker, b'{"small": true}', hostile) == ([], True)
        assert _kiosk_sends(fleet_broker, b'{"marker": true}', None) == ([0], False)
        assert office.arrived.wait(10)
        assert office.payloads == [b'{"marker": true}']
    finally:
        office.client.disconnect()
        office.client.loop_stop()
