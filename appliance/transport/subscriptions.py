"""What the edge link subscribes to at each CONNACK, and what the broker answers.

The link resubscribes first at every CONNACK (its persistent session may hold the
subscriptions, but a new session does not), then announces its presence, then drops from its
session what an earlier config subscribed to (transport/session_topics.py). A refused SUBACK is
said naming the topic: a broker's ACL that lets the device in but not read its ack topic would
leave every result unconfirmed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.transport.client import LinkSettings, reason_value
from appliance.transport.presence import PresenceKeeper
from appliance.transport.session_topics import SessionTopics

log = logging.getLogger(__name__)


class LinkSubscriptions:
    """The link's topic filters (the ack topic first), its presence's, and the SUBSCRIBEs the
    broker has not answered yet."""

    def __init__(self, settings: LinkSettings, ack_topic: str, topics: tuple[str, ...],
                 presence: PresenceKeeper | None, session_file: Path | None) -> None:
        self.settings, self.ack_topic, self.presence = settings, ack_topic, presence
        self.topics = (ack_topic, *topics)
        self.wanted = (*self.topics, *((presence.topic,) if presence else ()))
        # the subscriptions of earlier configs left in the broker's session go (session_topics)
        self.session = SessionTopics(session_file, settings.client_id, self.wanted)
        self._subscribing: dict[int, str] = {}  # SUBSCRIBE mid -> its topic, until its SUBACK

    def subscribe(self, client: mqtt.Client) -> None:
        """At CONNACK: subscribe, announce the presence, unsubscribe what is stale."""
        self._subscribing.clear()  # a SUBACK never comes for a connection that ended
        # Retained messages are not sent at the subscribe (retain handling 2, MQTT 5 spec
        # 3.8.3.1): a command acts when it is sent, an ack and a model notice reach the kiosk's
        # session as they are published; one retained by mistake would otherwise act again at
        # every connect
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        for topic in self.topics:
            _rc, mid = client.subscribe(topic, options=options)
            if mid is not None:  # None: the socket just closed; the next CONNACK subscribes
                self._subscribing[mid] = topic
        if self.presence is not None:  # before the birth: what it finds there comes first
            mid = self.presence.announce(client)
            if mid is not None:
                self._subscribing[mid] = self.presence.topic
        self.session.connected(client)

    def waiting(self) -> bool:
        """Whether a SUBSCRIBE of this connection is still unanswered."""
        return bool(self._subscribing)

    def answered(self, mid: int, reasons: list[Any]) -> None:
        """A SUBACK: say a refused subscription, naming the topic: the broker's ACL lets the
        device in but not read it (without its ack topic no result is ever confirmed)."""
        topic = self._subscribing.pop(mid, None)
        refused = [reason for reason in reasons if reason_value(reason) >= 0x80]
        if topic is None or not refused:
            return
        if self.presence is not None and topic == self.presence.topic:
            self.presence.refuse(f"refused the subscription to {topic} (reason code "
                                 f"0x{reason_value(refused[0]):02X})")
            return
        what = (": the back office's confirmations never arrive, so results are never "
                "confirmed and are sent again until the outbox drops them"
                if topic == self.ack_topic else "")
        log.error("broker %s:%d refused the subscription of %s to %s (reason code 0x%02X: %s)%s; "
                  "check the broker's ACL for this device", self.settings.host,
                  self.settings.port, self.settings.client_id, topic,
                  reason_value(refused[0]), refused[0], what)
