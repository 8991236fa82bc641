"""The one MQTT client factory (edge link, back-office ingest, tests and simulations).

MQTT v5, TLS with the broker's certificate verified against the configured CA (never off),
credentials, last will and v5 properties are set here and nowhere else, and one table says
which CONNACK reason codes make retrying pointless.
"""

from __future__ import annotations

import queue
import ssl
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from appliance.tlsfiles import client_tls_context
from appliance.transport.pahofence import BufferedReadClient

if TYPE_CHECKING:
    from appliance.config import MqttConfig

CONTENT_TYPE_JSON = "application/json"

# CONNACK reason codes after which retrying cannot help (MQTT 5 spec 3.2.2.2), for every
# client this package builds: 0x84 unsupported protocol version, 0x85 client identifier not
# valid, 0x86 bad user name or password, 0x87 not authorized, 0x8A banned, 0x8C bad
# authentication method. Anything else (0x88 server unavailable, 0x89 busy, ...) may pass.
FATAL_CONNACK_CODES = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
# what a packet carries beside its payload: topic, properties and header (the shipped broker's
# max_packet_size leaves a result as much: deploy/mosquitto/appliance.conf)
PACKET_OVERHEAD_BYTES = 4096
ClientT = TypeVar("ClientT", bound=mqtt.Client)


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
    puback_timeout_s: float = 60.0  # results in flight and no PUBACK for this long: reconnect
    ack_resend_initial_s: float = 10.0
    ack_resend_cap_s: float = 300.0
    # where ``password`` came from, for a refused login's hint
    password_from: str = "APPLIANCE_MQTT_PASSWORD or the mqtt-password credential"


class BrokerRefusedError(ConnectionError):
    """The broker answered CONNECT with a refusal; ``reason_code`` is its CONNACK reason code."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def is_fatal_connack(code: int) -> bool:
    """Whether a CONNACK reason code means the broker will keep refusing us."""
    return code in FATAL_CONNACK_CODES


def connack_refusal(settings: LinkSettings, reason: object) -> str:
    """A refused CONNACK in words: the broker, the client, the reason code and what to check
    (credentials and ACL for the codes in FATAL_CONNACK_CODES, else that it may pass)."""
    code = reason_value(reason)
    what = f"broker {settings.host}:{settings.port} refused {settings.client_id or 'the client'}"
    shown = f"{what} (reason code 0x{code:02X}: {reason})"
    if is_fatal_connack(code):
        return (f"{shown}: check mqtt.username and the password ({settings.password_from}) "
                "and the broker's ACL; not retrying")
    return f"{shown}: the broker may be busy or restarting; retrying"


def broker_max_packet_bytes(settings: LinkSettings, timeout_s: float = 5.0) -> int | None:
    """The largest packet the broker takes, as its CONNACK to a connection without a will
    says (MQTT 5 spec 3.2.2.3.6); None where it announces none or does not answer.

    A broker drops, without a CONNACK, the connection of a client whose CONNECT (its last
    will included) is larger: this short connection, without a will and under ``settings``
    as given, asks it. They must name a login and client id of the asker's own: under the
    asking client's id the broker closes that client's connection for this one (MQTT 5 spec
    3.1.4), and a broker that binds each login to one client id (docs/broker-identity.md)
    refuses any other id. BrokerRefusedError, with the reason code, where the broker refuses
    the login for good (FATAL_CONNACK_CODES)."""
    client = new_client(replace(settings, session_expiry_s=0))
    answers: queue.Queue[tuple[int, int | None]] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, props: answers.put(
        (reason_value(reason), getattr(props, "MaximumPacketSize", None)))
    client.on_disconnect = lambda *_: answers.put((0, None))
    try:
        client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=True)
        client.loop_start()
        code, limit = answers.get(timeout=timeout_s)
    except (OSError, ValueError, queue.Empty):
        return None
    finally:
        client.disconnect()
        client.loop_stop()
    if is_fatal_connack(code):
        login = settings.username or settings.client_id
        raise BrokerRefusedError(f"broker {settings.host}:{settings.port} refused the login "
                                 f"{login} (CONNACK reason code 0x{code:02X})", code)
    return None if code else limit


def connect_bytes_at_least(settings: LinkSettings, will: tuple[str, bytes]) -> int:
    """A lower bound of the size of this client's CONNECT packet: its strings, each with its
    two length bytes, and the 10 bytes of the variable header (MQTT 5 spec 3.1)."""
    strings = [settings.client_id.encode(), will[0].encode(), will[1]]
    if settings.username is not None:
        strings += [settings.username.encode(), (settings.password or "").encode()]
    return 10 + sum(2 + len(text) for text in strings)


def settings_from_config(mqtt_config: MqttConfig, client_id: str, **tuning: Any) -> LinkSettings:
    """LinkSettings for a config's ``mqtt`` section (password from env or systemd credentials)."""
    tls = mqtt_config.tls
    base = LinkSettings(
        host=mqtt_config.host,
        port=mqtt_config.port,
        client_id=client_id,
        keepalive_s=mqtt_config.keepalive_s,
        username=mqtt_config.username,
        password=mqtt_config.password(),
        tls_enabled=tls.enabled,
        ca_file=tls.ca_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
    )
    return replace(base, **tuning)


def with_login_password(settings: LinkSettings, password: str | None) -> LinkSettings:
    """``settings`` with the password a command read from its ``--password-file`` in place of
    the config's, said so in a refusal's hint (None: ``settings`` as they are)."""
    if password is None:
        return settings
    return replace(settings, password=password, password_from="the first line of --password-file")


def new_client(
    settings: LinkSettings, will: tuple[str, bytes] | None = None, *, reconnect: bool = False
) -> mqtt.Client:
    """A paho client for MQTT v5 with credentials, verified TLS and an optional retained will.

    ``reconnect`` lets paho's own loop reconnect (for clients that run ``loop_start``); the
    edge link owns its reconnects and backoff itself.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=reconnect,
    )
    return _configure(client, settings, will)


def new_ingest_client(settings: LinkSettings) -> BufferedReadClient:
    """The back-office ingest client: chunked reads, manual PUBACKs (sent after the commit)."""
    client = BufferedReadClient(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    return _configure(client, settings, None)


def _configure(client: ClientT, settings: LinkSettings, will: tuple[str, bytes] | None) -> ClientT:
    client.max_inflight_messages_set(settings.max_inflight)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(
        max(1, int(settings.reconnect_initial_s)), max(1, int(settings.reconnect_cap_s))
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls_enabled:
        client.tls_set_context(tls_context(settings))
    if will is not None:
        set_retained_will(client, *will)
    return client


def set_retained_will(client: mqtt.Client, topic: str, payload: bytes,
                      properties: Properties | None = None) -> None:
    """The retained QoS 1 last will the broker sends if this connection (or the next one,
    when set while connected) ends without a DISCONNECT; ``properties``: its PUBLISH
    properties (default: ``publish_properties(None)``)."""
    client.will_set(topic, payload, qos=1, retain=True,
                    properties=properties or publish_properties(None))


def tls_context(settings: LinkSettings) -> ssl.SSLContext:
    """TLS 1.2+ that verifies the broker's certificate and host name against ``ca_file``
    (``tlsfiles.TlsFileError``, a ValueError, names a file that cannot be used)."""
    return client_tls_context(settings.ca_file, settings.cert_file, settings.key_file)


def connect_properties(settings: LinkSettings, max_packet_bytes: int | None = None) -> Properties:
    """CONNECT properties: a session that outlives the connection (spec 3.1.2.11.2) and, with
    ``max_packet_bytes``, the largest packet this client takes: the broker discards a larger
    one instead of sending it (spec 3.1.2.11.4), so it never reaches this process's memory."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = min(settings.max_inflight, 65535)
    if max_packet_bytes is not None:
        properties.MaximumPacketSize = max_packet_bytes
    return properties


def session_end_properties() -> Properties:
    """DISCONNECT properties that end the session with the connection (MQTT 5 spec
    3.14.2.2.2: a session expiry of 0; allowed where the CONNECT set one above 0)."""
    properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    return properties


def packet_bound(max_payload_bytes: int) -> int:
    """The largest packet a client takes whose messages carry at most ``max_payload_bytes``
    (its CONNECT's Maximum Packet Size, MQTT 5 spec 3.1.2.11.4): four times that, so a payload
    somewhat over it still arrives and is refused with its reason, and a topic and properties;
    a packet of megabytes of user properties, which a broker without the shipped
    max_packet_size forwards, is then the broker's to drop."""
    return 4 * max_payload_bytes + PACKET_OVERHEAD_BYTES


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
