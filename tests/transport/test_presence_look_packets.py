"""A kiosk's presence look names the largest packet it takes in its CONNECT (the kiosk link's
bound), so a broker without the shipped max_packet_size drops an answer carrying megabytes of
MQTT 5 user properties for it instead of handing it over whole."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.transport.client import LinkSettings
from appliance.transport.presence_look import NOBODY, LookOutcome, PresenceLook
from appliance.transport.presence_messages import Presence, read_probe

pytestmark = pytest.mark.broker
LOOK_WAIT_S = 2.0  # how long a look waits for a live process to answer its probe


class LiveKiosk:
    """A live kiosk on the presence topic: its retained presence, and an answer to each probe
    (carrying ``properties``)."""

    def __init__(self, broker: Any, topic: str) -> None:
        self.topic, self.properties = topic, None
        self.presence = Presence("kiosk-1", "s", process="a" * 32, connection=1)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, 1)
        self.client.publish(topic, self.presence.payload(), qos=1,
                            retain=True).wait_for_publish(5)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        probe = read_probe(bytes(message.payload))
        if probe is not None:
            self.client.publish(self.topic, self.presence.payload(answers=probe), qos=1,
                                properties=self.properties)

    def close(self) -> None:
        self.client.publish(self.topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def _look(broker: Any, topic: str, client_id: str) -> LookOutcome:
    look = PresenceLook(LinkSettings(broker.host, broker.port, client_id), topic,
                        Presence("kiosk-1", "s", process="b" * 32), LOOK_WAIT_S)
    deadline = time.monotonic() + 15
    try:
        while (outcome := look.step()).looking and time.monotonic() < deadline:
            pass
        return outcome
    finally:
        look.close()


def test_a_look_never_reads_an_answer_carrying_megabytes_of_user_properties(
    mqtt_broker: Any, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/s/kiosk-1/presence"
    live = LiveKiosk(mqtt_broker, topic)
    try:
        found = _look(mqtt_broker, topic, f"look-{topic_prefix[-12:]}")
        assert found.rival is not None  # a plain answer names the live kiosk
        assert found.rival.process == "a" * 32
        padded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        padded.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(40)]  # 2.4 MB
        live.properties = padded
        # on main: the padded answer was read whole and named the rival
        assert _look(mqtt_broker, topic, f"look-{topic_prefix[-12:]}") == NOBODY
    finally:
        live.close()
