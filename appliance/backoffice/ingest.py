"""The ingest worker: one paho client on a shared subscription, feeding the batch writer.

Results arrive on ``$share/{group}/{prefix}/+/+/result`` so workers in one group split them
(MQTT 5 spec 4.8.2); once committed, each device hears which of its results are safe on its
``.../ack`` topic. Device status and the kiosks' model reports (``.../model/state``, kept as
history: model_reports.py) are subscribed without ``$share``: retained messages are not sent to
shared subscriptions (spec 3.3.1.3), and every worker keeps the fleet registry and the history
(each report once, however many workers hear it). The session
is persistent (clean_start=False, a session expiry) and acks are manual, so a worker that dies or
restarts gets every message it had not acknowledged.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.backoffice.batcher import MAX_QOS0_WAITING, BatchWriter, IngestStats
from appliance.backoffice.store import Store
from appliance.backoffice.triage import Confirmed, Inbound, Triage
from appliance.config import Config, MqttConfig
from appliance.logsafe import escape_controls
from appliance.transport.acks import publish_acks
from appliance.transport.bootstamp import read_stamp
from appliance.transport.client import (
    LinkSettings,
    connack_refusal,
    connect_properties,
    is_fatal_connack,
    new_client,
    new_ingest_client,
    packet_bound,
    publish_properties,
    session_end_properties,
    settings_from_config,
)
from appliance.transport.pahofence import BufferedReadClient
from appliance.transport.payloads import MAX_PAYLOAD_BYTES, Result
from appliance.transport.topics import MODEL_STATE_LEAF, fleet_filter, shared_filter
from appliance.transport.unreachable import BrokerReach

log = logging.getLogger(__name__)
RECONNECT_MAX_S = 30
# The largest packet the worker takes (its CONNECT says so; MQTT 5 spec 3.1.2.11.4: the broker
# drops a larger one for it, as delivered): four times a result with its topic and properties,
# so a payload over the 256 KiB is still read and dead-lettered, while a packet of megabytes of
# user properties, which a broker without the shipped max_packet_size forwards, never arrives.
MAX_PACKET_BYTES = packet_bound(MAX_PAYLOAD_BYTES)
LEAVE_QUIET_S = 0.5  # leaving the group: no message for this long, the broker's queue sent
# the broker sends the retained statuses right after its SUBACK: those received this long after
# it are taken as all of them (statuses_stored)
STATUSES_SETTLE_S = 5.0


class IngestError(RuntimeError):
    """The worker cannot go on (e.g. the broker refused its credentials)."""


def default_client_id() -> str:
    """``backoffice-HOSTNAME``, cut to what a client id may hold."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
    return f"backoffice-{host or 'host'}"


def retire_session(config: Config, timeout_s: float = 15.0) -> str:
    """End this worker's broker session for good; returns the client id it ended.

    A stopped worker's persistent session stays subscribed to the shared results, so the broker
    goes on handing it a share of them (queued for it, up to ``backoffice.session_expiry_s``) while
    the live workers get the rest: those results wait for the kiosks' resends. A worker taken out
    of service therefore connects once more with its client id, a clean start (the broker
    discards the old session and its queue, MQTT 5 spec 3.1.2.4) and a session that ends with
    the connection (expiry 0, spec 3.1.2.11.2). Nothing is lost: each kiosk keeps a result until a
    worker has committed and confirmed it, and sends it again. IngestError names the broker's
    refusal or the timeout."""
    client_id = config.backoffice.client_id or default_client_id()
    link = settings_from_config(config.mqtt, client_id, session_expiry_s=0)
    refusal = _connect_once(link, config.mqtt, timeout_s)
    if refusal:
        raise BrokerRefusedError(refusal)
    return client_id


def _connect_once(link: LinkSettings, broker: MqttConfig, timeout_s: float) -> str | None:
    """Connect to ``broker`` under ``link`` with a clean start and a session that ends with
    the connection, and disconnect once the broker answered: its refusal in words, or None.
    IngestError when the broker cannot be reached or does not answer within ``timeout_s``."""
    client = new_client(link)
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                   props: Any) -> None:
        if reason.is_failure:
            refusal.append(connack_refusal(link, reason))
        answered.set()

    client.on_connect = on_connect
    properties = connect_properties(link)
    properties.SessionExpiryInterval = 0
    where = f"{broker.host}:{broker.port}"
    try:
        client.connect(broker.host, broker.port, keepalive=broker.keepalive_s, clean_start=True,
                       properties=properties)
    except (OSError, ValueError) as exc:
        raise IngestError(f"cannot reach the broker at {where}: {exc}") from exc
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise IngestError(f"no answer from the broker at {where} in {timeout_s:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    return refusal[0] if refusal else None


class BrokerRefusedError(IngestError):
    """The broker refused this worker's connection (credentials, client id, ACL)."""


class IngestWorker:
    """Receives results and status from the fleet and commits them to the store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        on_stored: Callable[[list[Result]], None] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        """``stopping``: set once whoever runs this worker is stopping it (the demo, whose
        broker a Ctrl-C stops at the same moment): a lost connection is no warning then."""
        self.config = config
        self._stopping = stopping
        settings = config.backoffice
        self.client_id = settings.client_id or default_client_id()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.failed: str | None = None
        self.session_present: bool | None = None
        # what leaving the group waits for: UNSUBACK, a quiet spell, every QoS 1 message acked
        self._unsubscribed = threading.Event()
        self._last_message_at = time.monotonic()
        self._received_qos1 = self._acked_qos1 = 0  # each written by one thread only
        self._subscribed_at: float | None = None  # monotonic, the first SUBACK
        self._settled_received: int | None = None  # QoS 1 received by STATUSES_SETTLE_S after it
        triage = Triage(config.mqtt.topic_prefix, settings.dead_letter_max_bytes)
        self.writer = BatchWriter(
            store, settings, triage, self._ack, on_stored, confirm=self._confirm
        )
        self.client = self._make_client()

    @property
    def stats(self) -> IngestStats:
        """Counters since start."""
        return self.writer.stats

    def _make_client(self) -> BufferedReadClient:
        settings = self.config.backoffice
        self.link_settings = settings_from_config(
            self.config.mqtt,
            self.client_id,
            session_expiry_s=settings.session_expiry_s,
            max_inflight=settings.receive_maximum,
            reconnect_initial_s=1.0,
            reconnect_cap_s=float(RECONNECT_MAX_S),
        )
        client = new_ingest_client(self.link_settings)
        self.reach = BrokerReach(self.client_id, self.config.mqtt.host, self.config.mqtt.port,
                                 log)
        self.reach.attach(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = lambda *_: self._unsubscribed.set()
        return client

    def start(self) -> None:
        """Start the writer and connect (the network thread reconnects on its own)."""
        self.writer.start()
        mqtt_config = self.config.mqtt
        self.client.connect_async(
            mqtt_config.host,
            mqtt_config.port,
            keepalive=mqtt_config.keepalive_s,
            clean_start=False,
            properties=connect_properties(self.link_settings, MAX_PACKET_BYTES),
        )
        self.client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit and acknowledge what is queued, then disconnect keeping the session; with
        ``backoffice.leave_group_on_stop``, leave the group first and end the session where
        everything the broker sent was committed and acknowledged (``_left_group``)."""
        leaving = self.config.backoffice.leave_group_on_stop
        left = leaving and self._left_group(timeout_s)
        self.writer.stop_event.set()
        self.writer.join(timeout_s)
        end = left and not self.writer.is_alive() and self._taken_all()
        self.client.disconnect(properties=session_end_properties() if end else None)
        self.client.loop_stop()
        if leaving:
            log.info("%s %s", self.client_id, "left the result group and ended its session"
                     if end else "keeps its session: what the broker sent it is not all "
                     "committed, or the broker cannot be reached")

    def _left_group(self, timeout_s: float) -> bool:
        """Unsubscribe from every filter and take what the broker had queued for this session
        until nothing more comes for LEAVE_QUIET_S and all of it is committed and acknowledged:
        ending the session then drops nothing (mosquitto 2.0 drops a member's queue with its
        session, never handing it to the group: docs/experiments/README.md "smallfix").
        False where it cannot within ``timeout_s``: the session is kept."""
        if not self.subscribed.is_set():
            return False
        self.client.unsubscribe(self._filters())
        deadline = time.monotonic() + timeout_s
        if not self._unsubscribed.wait(timeout_s):
            return False
        while time.monotonic() < deadline:
            if time.monotonic() - self._last_message_at >= LEAVE_QUIET_S and self._taken_all():
                return True
            time.sleep(0.05)
        return False

    def _taken_all(self) -> bool:
        """Every QoS 1 message received is acknowledged (after its commit) and still connected."""
        return self.connected.is_set() and self._acked_qos1 == self._received_qos1

    def _filters(self) -> list[str]:
        prefix, group = self.config.mqtt.topic_prefix, self.config.backoffice.share_group
        return [shared_filter(group, fleet_filter(prefix, "result")),
                fleet_filter(prefix, "status"), fleet_filter(prefix, MODEL_STATE_LEAF)]

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        try:
            self.reach.reached()  # the broker answered, whatever it answered
            if reason.is_failure:
                self._refused(reason)
                return
            filters = self._filters()
            client.subscribe([(each, SubscribeOptions(qos=1)) for each in filters])
            self.session_present = bool(flags.session_present)
            self.connected.set()
            log.info("%s connected to %s:%s (session present: %s), subscribed to %s",
                     self.client_id, self.config.mqtt.host, self.config.mqtt.port,
                     self.session_present, ", ".join(filters))
        except Exception:  # never let an exception kill paho's network thread
            log.exception("on_connect failed")

    def _refused(self, reason: ReasonCode) -> None:
        refusal = connack_refusal(self.link_settings, reason)
        log.error("%s", refusal)
        if is_fatal_connack(reason.value):
            self.failed = refusal
            self.client.disconnect()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        if refused:  # e.g. 0x9E: the broker does not support shared subscriptions
            self.failed = (
                f"broker {self.config.mqtt.host}:{self.config.mqtt.port} refused the "
                f"subscriptions of {self.client_id}: {', '.join(refused)}"
            )
            log.error("%s", self.failed)
            return
        if self._subscribed_at is None:
            self._subscribed_at = time.monotonic()
        self.subscribed.set()

    def statuses_stored(self) -> bool:
        """Whether the kiosks' statuses the broker retained have been stored: subscribed
        STATUSES_SETTLE_S ago (the broker sends them after its SUBACK), and every QoS 1
        message received by then acknowledged, so committed (any thread; once True, it
        stays so: what they said is in the store). The forget asking prunes no row by a
        kiosk's window before (kiosk_forgets.py): a window never stored reads as the
        fallback until its kiosk's status is."""
        if self._subscribed_at is None or (
                time.monotonic() - self._subscribed_at < STATUSES_SETTLE_S):
            return False
        if self._settled_received is None:
            self._settled_received = self._received_qos1
        return self._acked_qos1 >= self._settled_received

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason.value != 0 and self._stopping is not None and self._stopping.is_set():
            log.info("%s disconnected (%s) while stopping", self.client_id, reason)
        elif reason.value != 0:
            log.warning("%s disconnected (%s); reconnecting", self.client_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._last_message_at = time.monotonic()
        self._received_qos1 += message.qos == 1
        try:
            payload = bytes(message.payload)
            inbound = Inbound(message.topic, payload, message.mid, message.qos, message.retain,
                              boot=read_stamp(message.properties))
            if not self.writer.offer(inbound) and self.writer.stats.qos0_refused % 1000 == 1:
                log.warning("dropped a QoS 0 message on %s (%d so far): %d QoS 0 messages wait "
                            "already; kiosks publish at QoS 1", escape_controls(message.topic),
                            self.writer.stats.qos0_refused, MAX_QOS0_WAITING)
        except Exception:  # never let an exception kill paho's network thread
            log.exception("could not queue a message on %s", message.topic)

    def _confirm(self, confirmed: list[Confirmed]) -> None:
        """Tell each device which of its results are committed (its ``.../ack`` topic)."""
        publish_acks(self.config.mqtt.topic_prefix, confirmed, self._publish_ack)

    def _publish_ack(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, properties=publish_properties(None))

    def publish_command(self, topic: str, payload: bytes) -> bool:
        """Publish a command to a kiosk at QoS 1, not retained, on this worker's connection
        (any thread); False where it is not connected (kiosk_forgets.py asks again later)."""
        if not self.connected.is_set():
            return False
        info = self.client.publish(topic, payload, qos=1, properties=publish_properties(None))
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _ack(self, messages: list[Inbound]) -> None:
        mids = [m.mid for m in messages if m.qos == 1]
        self.client.ack_many(mids)
        self._acked_qos1 += len(mids)
