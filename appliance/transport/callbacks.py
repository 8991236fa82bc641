"""The MQTT link's paho callbacks: they only hand events to queues and never raise.

paho runs callbacks inside its network loop; an exception there would end the loop, and work
done there would stall it. So each callback here turns what paho reports into a small event
for the link's own loop (connack, disconnect, puback, suback, ack, presence) or an incoming
command for the daemon, and logs instead of raising. What each message from outside can
make it say (too large, the command inbox full) goes through ``ignored``, a budget of lines a
minute shared with the link's malformed acks and the daemon's unknown commands: anyone who may
publish on the kiosk's topics could otherwise fill the journal with one line a message.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from appliance.logsafe import LineBudget, shorten
from appliance.transport.client import reason_value

log = logging.getLogger(__name__)

MAX_INCOMING_BYTES = 64 * 1024
# the largest packet the device takes from its broker: such a payload, its topic, properties
# and header (a larger one is the broker's to drop: appliance/transport/client.py)
MAX_INCOMING_PACKET_BYTES = MAX_INCOMING_BYTES + 4096
SHOWN_TOPIC_CHARS = 200  # of an incoming topic in a journal line (a topic may be 65,535 bytes)
LinkEvent = tuple[str, Any, Any]


@dataclass(frozen=True)
class IncomingMessage:
    """A message the device received on one of its subscriptions."""

    topic: str
    payload: bytes


class QueuedCallbacks:
    """paho callbacks for the link: events to ``events``, commands to ``inbox``."""

    def __init__(self, ack_topic: str, presence_topic: str | None = None,
                 inbox_size: int = 100, *, wanted: tuple[str, ...] | None = None) -> None:
        self.ack_topic, self.presence_topic = ack_topic, presence_topic
        # the topic filters subscribed now (None: take every message): a message on another
        # topic was queued in the session under an earlier config (transport/session_topics.py)
        self.wanted = wanted
        self.unwanted = 0  # such messages ignored
        self.events: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
        self.inbox: queue.Queue[IncomingMessage] = queue.Queue(maxsize=inbox_size)
        self.ignored = LineBudget(log, "messages on this kiosk's topics ignored")

    def install(self, client: mqtt.Client) -> None:
        """Set these callbacks on ``client``."""
        client.on_connect = self.on_connect
        client.on_disconnect = self.on_disconnect
        client.on_publish = self.on_publish
        client.on_subscribe = self.on_subscribe
        client.on_unsubscribe = self.on_unsubscribe
        client.on_message = self.on_message

    def on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, properties: Any) -> None:
        """CONNACK: its reason code (paho's ReasonCode, named in words) and properties."""
        try:
            self.events.put(("connack", reason, properties))
        except Exception:
            log.exception("on_connect failed")

    def on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        """The connection ended, with the reason code."""
        try:
            self.events.put(("disconnect", reason_value(reason), None))
        except Exception:
            log.exception("on_disconnect failed")

    def on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        """PUBACK of one of our QoS 1 messages."""
        try:
            self.events.put(("puback", mid, reason_value(reason)))
        except Exception:
            log.exception("on_publish failed")

    def on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        """SUBACK of one SUBSCRIBE: a granted QoS, or a refusal (0x80 and above), per filter."""
        try:
            self.events.put(("suback", mid, list(reasons)))
        except Exception:
            log.exception("on_subscribe failed")

    def on_unsubscribe(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        """UNSUBACK of one UNSUBSCRIBE."""
        try:
            self.events.put(("unsuback", mid, None))
        except Exception:
            log.exception("on_unsubscribe failed")

    def on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        """An ack for the link, or a command for the daemon; oversized ones are ignored."""
        try:
            if len(message.payload) > MAX_INCOMING_BYTES:
                self.ignored.warn("ignored %d-byte message on %s", len(message.payload),
                                  shown_topic(message.topic))
                return
            if not self._wanted(message.topic):
                return
            if message.topic == self.ack_topic:
                self.events.put(("ack", bytes(message.payload), None))
                return
            if message.topic == self.presence_topic:  # retained: as of a subscribe of ours
                self.events.put(("presence", bytes(message.payload), bool(message.retain)))
                return
            self.inbox.put_nowait(IncomingMessage(message.topic, bytes(message.payload)))
        except queue.Full:
            self.ignored.warn("command inbox full; dropped a message on %s",
                              shown_topic(message.topic))
        except Exception:
            log.exception("on_message failed")

    def _wanted(self, topic: str) -> bool:
        """Whether a subscription of this config matches ``topic`` (the first other is said)."""
        if self.wanted is None or any(mqtt.topic_matches_sub(f, topic) for f in self.wanted):
            return True
        if not self.unwanted:
            log.warning("ignored a message on %s: this kiosk no longer subscribes to it (kept "
                        "in the broker's session from an earlier config); later ones are "
                        "ignored without a word", shown_topic(topic))
        self.unwanted += 1
        return False


def shown_topic(topic: str) -> str:
    """An incoming topic fit for a log line: cut to SHOWN_TOPIC_CHARS, saying how much more."""
    return shorten(topic, SHOWN_TOPIC_CHARS)
