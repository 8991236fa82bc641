"""Building the paho-mqtt 2 client: MQTT v5, TLS, credentials, last will, v5 properties."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

CONTENT_TYPE_JSON = "application/json"

# CONNACK / DISCONNECT reason codes after which retrying cannot help (MQTT 5 spec 3.2.2.2):
# 0x86 bad user name or password, 0x87 not authorized, 0x8C bad authentication method,
# 0x85 client identifier not valid, 0x8A banned.
FATAL_CONNACK_CODES = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})


@dataclass(frozen=True)
class LinkSettings:
    """Everything the MQTT link needs to reach the broker and to label what it sends."""

    host: str
    port: int
    client_id: str
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls_enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    session_expiry_s: int = 86_400
    message_expiry_s: int = 7 * 86_400
    max_inflight: int = 1000
    reconnect_initial_s: float = 0.5
    reconnect_cap_s: float = 5.0
    connack_timeout_s: float = 10.0


def new_client(settings: LinkSettings, will_topic: str, will_payload: bytes) -> mqtt.Client:
    """A paho client configured for MQTT v5 with a retained last will on ``will_topic``."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    client.max_inflight_messages_set(settings.max_inflight)
    client.max_queued_messages_set(0)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls_enabled:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.will_set(
        will_topic, will_payload, qos=1, retain=True, properties=publish_properties(None)
    )
    return client


def connect_properties(settings: LinkSettings) -> Properties:
    """CONNECT properties: a session that outlives the connection (spec 3.1.2.11.2)."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = min(settings.max_inflight, 65535)
    return properties


def publish_properties(message_expiry_s: int | None) -> Properties:
    """PUBLISH properties: JSON content type and, for results, a message expiry."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = CONTENT_TYPE_JSON
    properties.PayloadFormatIndicator = 1  # UTF-8 text (spec 3.3.2.3.2)
    if message_expiry_s is not None:
        properties.MessageExpiryInterval = message_expiry_s
    return properties


def reason_value(reason: object) -> int:
    """The numeric value of a paho ReasonCode (or of an int)."""
    value = getattr(reason, "value", reason)
    return int(value) if isinstance(value, int) else -1


def will_disconnect_reason() -> ReasonCode:
    """DISCONNECT reason 0x04: end the connection and have the broker send the last will."""
    return ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
