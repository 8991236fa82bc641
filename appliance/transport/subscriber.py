"""A client that only listens: connect, subscribe once the broker accepted us, hand on messages.

For the back office's watchers of the fleet and for tests: the paho client comes from the one
factory (transport/client.py: TLS, credentials), subscriptions go out only after CONNACK
reason code 0 (MQTT 5 spec 3.2.2.2) and again after every reconnect, and ``start`` returns
once the broker granted them (SUBACK). A refusal that retrying cannot fix (the fatal CONNACK
table) or a refused subscription ends ``start`` with BrokerRefusedError; another refusal (busy,
restarting) is retried until the timeout. With ``keep_session`` the broker keeps the session
(and queues QoS 1 messages) while the client is away, for ``settings.session_expiry_s``. Its
CONNECT names the largest packet it takes, from ``max_payload_bytes`` (by default the fleet's
largest message: a result, a status, a model state).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from appliance.transport.client import (
    BrokerRefusedError,
    LinkSettings,
    connack_refusal,
    connect_properties,
    is_fatal_connack,
    new_client,
    packet_bound,
    reason_value,
)
from appliance.transport.payloads import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
MessageHandler = Callable[[mqtt.MQTTMessage], None]


class Subscriber:
    """One listening client; ``client`` may also publish once ``start`` returned."""

    def __init__(self, settings: LinkSettings, filters: Sequence[tuple[str, int]],
                 on_message: MessageHandler, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                 reconnect: bool = True,
                 keep_session: bool = False) -> None:
        self.settings = settings
        # the largest packet it takes (transport/client.py: packet_bound): the broker drops a
        # larger one for it instead of handing it whole to this process (MQTT 5 spec 3.1.2.11.4)
        self.largest_packet_bytes = packet_bound(max_payload_bytes)
        self.filters = list(filters)
        self.keep_session = keep_session
        self._handler = on_message
        self._answered = threading.Event()  # subscribed (SUBACK), or refused for good
        self._refusal: BrokerRefusedError | None = None
        self._last_refusal = ""
        # the largest packet the broker takes, where its CONNACK says (MQTT 5 spec 3.2.2.3.6):
        # it drops the connection of a client that sends a larger one
        self.max_packet_bytes: int | None = None
        self.client = new_client(settings, reconnect=reconnect)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and return once subscribed; raise (after closing) on a refusal, an
        unreachable broker (OSError) or no answer within ``timeout_s`` (TimeoutError)."""
        # a kept session: clean start 0 and a session expiry interval (MQTT 5 spec 3.1.2.4,
        # 3.1.2.11.2); else a fresh session that ends with the connection
        session = self.settings if self.keep_session else replace(self.settings,
                                                                   session_expiry_s=0)
        self.client.connect(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
            clean_start=False if self.keep_session else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(session, self.largest_packet_bytes))
        self.client.loop_start()
        answered = self._answered.wait(timeout_s)
        if answered and self._refusal is None:
            return
        self.close()
        if self._refusal is not None:
            raise self._refusal
        last = f"; last answer: {self._last_refusal}" if self._last_refusal else ""
        raise TimeoutError(f"broker {self.settings.host}:{self.settings.port} did not accept "
                           f"the connection within {timeout_s:g} s{last}")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                    props: object) -> None:
        try:
            if reason.is_failure:
                self._refused(client, reason)
                return
            self.max_packet_bytes = getattr(props, "MaximumPacketSize", None)
            client.subscribe(self.filters)
        except Exception:  # never let an exception kill paho's network thread
            log.exception("on_connect failed")

    def _refused(self, client: mqtt.Client, reason: ReasonCode) -> None:
        self._last_refusal = connack_refusal(self.settings, reason)
        log.error("%s", self._last_refusal)
        if is_fatal_connack(reason_value(reason)):
            self._refusal = BrokerRefusedError(self._last_refusal, reason_value(reason))
            client.disconnect()  # ends paho's reconnect loop
            self._answered.set()

    def _on_subscribe(self, _c: object, _u: object, _mid: int, codes: list[ReasonCode],
                      _p: object) -> None:
        try:
            refused = [code for code in codes if code.is_failure]
            if refused and not self._answered.is_set():  # e.g. 0x87: the ACL forbids reading
                wanted = ", ".join(topic for topic, _ in self.filters)
                self._refusal = BrokerRefusedError(
                    f"broker {self.settings.host}:{self.settings.port} refused the "
                    f"subscriptions of {self.settings.client_id} to {wanted} "
                    f"({', '.join(map(str, refused))}); check the broker's ACL",
                    reason_value(refused[0]))
            elif refused:
                log.error("broker refused a resubscription: %s", ", ".join(map(str, refused)))
        except Exception:  # never let an exception kill paho's network thread
            log.exception("on_subscribe failed")
        self._answered.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._handler(message)
        except Exception:  # a bad payload must never kill paho's network thread
            log.exception("ignored a message on %s", message.topic)
