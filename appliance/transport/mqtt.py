"""The MQTT link: one owner thread for the paho client that drains the outbox over QoS 1.

Only this thread touches the client (connect, publish, subscribe, the socket I/O); paho's
callbacks run inside it and only append events to a queue, so an exception in them can never
kill the network loop. Other threads talk to the link through ``wake()``, ``send_status()``
and the inbox queue of incoming commands.

Delivery is end to end (docs/delivery.md): a PUBACK only moves a result from "in flight" to
"awaiting the back office"; it leaves the outbox when an ack on the device's ack topic names
it. Results still unacknowledged after ``ack_resend_initial_s`` are sent again, the wait
doubling (to ``ack_resend_cap_s``) while no ack arrives. What the link sends from the outbox is
transport/sender.py's; what confirms a result and removes it, transport/confirmations.py's;
when it tries the broker again after a failure, transport/churn.py's.

With a ``PresenceKeeper`` the link announces this process on the device's presence topic at
every connect and stays off the broker while another live kiosk process has the device id
(transport/presence.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode

from appliance.transport.bootstamp import boot_stamp, stamped
from appliance.transport.callbacks import MAX_INCOMING_PACKET_BYTES, QueuedCallbacks
from appliance.transport.churn import Reconnects
from appliance.transport.client import (
    LinkSettings,
    connack_refusal,
    connect_properties,
    is_fatal_connack,
    new_client,
    publish_properties,
    reason_value,
    set_retained_will,
    will_disconnect_reason,
)
from appliance.transport.confirmations import LinkConfirmations, LinkStats
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
from appliance.transport.presence import PresenceKeeper
from appliance.transport.sender import ResultSender
from appliance.transport.subscriptions import LinkSubscriptions
from appliance.transport.unconfirmed import Unconfirmed

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5
LAST_STATUS_WAIT_S = 1.0  # for the PUBACK of the status a clean stop leaves
STATUSES_AWAITED = 16  # statuses whose PUBACK is awaited at most; older ones are forgotten


class MqttLink(threading.Thread):
    """Owns the paho client; publishes outbox messages oldest first, deletes them on the
    back office's end-to-end ack."""

    def __init__(
        self,
        settings: LinkSettings,
        outbox: Outbox,
        *,
        status_topic: str,
        status_payload: Callable[[str], bytes],
        ack_topic: str,
        subscriptions: tuple[str, ...] = (),
        stop: threading.Event | None = None,
        presence: PresenceKeeper | None = None,
        session_file: Path | None = None,
    ) -> None:
        super().__init__(name="MqttLink", daemon=True)
        self.settings = settings
        self.outbox = outbox
        self.status_topic = status_topic
        self._status_payload = status_payload
        self.ack_topic = ack_topic
        self.stop_event = stop or threading.Event()
        self.presence = presence
        self.subscriptions = LinkSubscriptions(settings, ack_topic, subscriptions, presence,
                                               session_file)
        wanted = self.subscriptions.wanted if session_file is not None else None
        self._callbacks = QueuedCallbacks(ack_topic, presence.topic if presence else None,
                                          wanted=wanted)
        self.inbox = self._callbacks.inbox
        self.ignored = self._callbacks.ignored  # lines a minute for messages from outside
        self.stats = LinkStats()
        self.fatal_error: str | None = None
        self.refused = False  # the broker refused our credentials: restarting cannot help
        self.connected = False
        self.last_beat_s = time.monotonic()
        self._events = self._callbacks.events
        self._status_requests: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._retained: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._retained_latest: dict[str, bytes] = {}
        self._resend_requests: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._wake_r, self._wake_w = _wake_pair()
        unconfirmed = Unconfirmed(settings.ack_resend_initial_s, settings.ack_resend_cap_s)
        self._unconfirmed = unconfirmed
        self._confirmations = LinkConfirmations(outbox, ack_topic, self.stats, unconfirmed,
                                                self.ignored)
        self._reconnects = Reconnects(settings.reconnect_initial_s, settings.reconnect_cap_s,
                                      settings.client_id, settings.username)
        self._connect_started_s = 0.0
        self._next_attempt_s = 0.0
        self._retained_properties = publish_properties(None)
        # the clean stop's "offline" status: its message id, then its PUBACK's reason code
        self._last_status_mid: int | None = None
        self._last_status_code: int | None = None
        # statuses on their way: message id -> when its payload was built (monotonic)
        self._statuses_awaited: dict[int, float] = {}
        self._status_reached_s: float | None = None  # see status_reached_since
        self._client = new_client(settings)  # its will is set before each connect
        self._link_ms: int | None = None  # when this link connected, since boot (bootstamp.py)
        self._callbacks.install(self._client)
        self._sender = ResultSender(settings, outbox, self._client, self.stats, unconfirmed)

    # -- thread-safe API ---------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the link new messages are in the outbox (any thread)."""
        # BlockingIOError: a wake-up is already pending; OSError: the link has closed.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"!")

    def send_status(self) -> None:
        """Publish a fresh retained status when connected (any thread)."""
        self._status_requests.put(b"")
        self.wake()

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``topic`` when connected, in order (any thread);
        after a reconnect the latest payload of each such topic is published again."""
        self._retained_latest[topic] = payload
        self._retained.put((topic, payload))
        self.wake()

    def resend_confirmed_since(self, since_s: float) -> None:
        """Send again the kept results the back office confirmed at or after ``since_s``
        (Unix time, this kiosk's clock), at the pace of the resends (any thread)."""
        self._resend_requests.put(since_s)
        self.wake()

    def status_reached_since(self, since_s: float) -> bool:
        """Whether the broker took (PUBACK below 0x80, spec 3.4.2.1) a status built at or
        after ``since_s`` (monotonic) and the link is connected now: then the back office's
        fleet reads the kiosk's state as it was from then on (any thread)."""
        reached_s = self._status_reached_s
        return self.connected and reached_s is not None and reached_s >= since_s

    def idle(self) -> bool:
        """Whether the back office has confirmed every committed message."""
        return self.outbox.depth() == 0 and not self._sender.inflight

    # -- the owner loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Connect, keep connected, publish and acknowledge until the stop event is set."""
        try:
            while not self.stop_event.is_set() and self.fatal_error is None:
                self.last_beat_s = time.monotonic()
                if self._client.socket() is None:
                    self._connect_when_due()
                else:
                    self._io_once()
                self._handle_events()
                self.ignored.say_due()  # how many lines the budget held back, once a minute
                if self.connected:
                    if self.presence is not None:
                        self.presence.tick()
                    self._send_statuses()
                    self._send_retained()
                    self._sender.publish_pending()
                    self._sender.resend_when_due()
                self._sender.expire_when_due()
                self._reopen_requested()
        except Exception:
            log.exception("MQTT link failed")
            self.fatal_error = "MQTT link thread crashed; see the log"
        finally:
            self._shutdown()

    def _connect_when_due(self) -> None:
        wait_s = self._next_attempt_s - time.monotonic()
        if self.presence is not None and not self.presence.may_connect():
            wait_s = max(wait_s, IDLE_POLL_S)  # holding back: another kiosk has the device id
        if wait_s > 0:
            self.stop_event.wait(min(wait_s, IDLE_POLL_S))
            return
        settings = self.settings
        self._arm_will()
        try:
            self._client.connect(
                settings.host,
                settings.port,
                keepalive=settings.keepalive_s,
                clean_start=self.subscriptions.session.clean_start(),
                properties=connect_properties(settings, MAX_INCOMING_PACKET_BYTES),
            )
            self._connect_started_s = time.monotonic()
        except (OSError, ValueError) as exc:
            delay_s = self._reconnects.failed()
            log.warning(
                "broker %s:%d unreachable (%s); retrying in %.1f s",
                settings.host,
                settings.port,
                exc,
                delay_s,
            )
            self._next_attempt_s = time.monotonic() + delay_s

    def _arm_will(self) -> None:
        """Build the last will of the connection about to be made, stamped now: every status
        this connection sends is later in this boot and names this link (bootstamp.py)."""
        stamp = boot_stamp()
        self._link_ms = None if stamp is None else stamp[2]
        set_retained_will(self._client, self.status_topic, self._status_payload("offline"),
                          stamped(publish_properties(None), stamp))

    def _status_properties(self) -> Any:
        """A status's PUBLISH properties, stamped with where in this boot it was built and
        when its link connected (bootstamp.py: the back office orders a boot's statuses so)."""
        return stamped(publish_properties(None), boot_stamp(self._link_ms))

    def _io_once(self) -> None:
        sock = self._client.socket()
        if sock is None:
            return
        pending = getattr(sock, "pending", None)
        timeout_s = 0.0 if callable(pending) and pending() > 0 else IDLE_POLL_S
        writers = [sock] if self._client.want_write() else []
        readable, writable, _ = select.select([sock, self._wake_r], writers, [], timeout_s)
        if self._wake_r in readable:
            self._drain_wake()
        if sock in readable or timeout_s == 0.0:
            self._client.loop_read()
        if writable and self._client.socket() is not None:
            self._client.loop_write()
        if self._client.socket() is not None:
            self._client.loop_misc()
        self._check_broker_answers()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # raised once drained
            while self._wake_r.recv(4096):
                pass

    def _check_broker_answers(self) -> None:
        """Connect again to a broker that does not answer the connection, or answers pings but
        no result (they stayed in flight for good, unsaid); paho then sends them again."""
        waited_s = time.monotonic() - self._connect_started_s
        if not self.connected and waited_s > self.settings.connack_timeout_s:
            log.warning("no CONNACK from the broker in %.0f s; reconnecting", waited_s)
            self._drop_connection()
        elif self.connected and (silence := self._sender.unanswered(self.settings)):
            log.warning("%s; reconnecting to send them again", silence)
            self._drop_connection()

    def _drop_connection(self) -> None:
        self.connected = False
        self._client.disconnect()
        self._next_attempt_s = time.monotonic() + self._reconnects.failed()

    def _handle_events(self) -> None:
        while True:
            try:
                kind, first, second = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "connack":
                self._handle_connack(first, second)
            elif kind == "disconnect":
                self._handle_disconnect(first)
            elif kind == "puback":
                self._handle_puback(first, second)
            elif kind == "suback":
                self._reconnects.subscribed()
                self.subscriptions.answered(first, second)
            elif kind == "ack":
                self._sender.settled(self._confirmations.handle_ack(first))
            elif kind == "presence":
                self._handle_presence(first, second)
            elif kind == "unsuback":
                self.subscriptions.session.unsubscribed(first)

    def _handle_connack(self, reason: object, properties: Any) -> None:
        """Connected means CONNACK reason code 0 and nothing else (spec 3.2.2.2)."""
        code = reason_value(reason)
        if is_fatal_connack(code):
            self.refused = True
            self.fatal_error = connack_refusal(self.settings, reason)
            log.error("%s", self.fatal_error)
            return
        if code != 0:
            log.warning("%s", connack_refusal(self.settings, reason))
            self._drop_connection()
            return
        self.connected = True
        self._reconnects.connected()
        self._sender.connected()
        server_max = getattr(properties, "ReceiveMaximum", None)
        self._sender.window = min(self.settings.max_inflight, int(server_max or 65535))
        self.subscriptions.subscribe(self._client)  # resubscribe first, then the birth
        self._publish_status("online")
        for topic, payload in list(self._retained_latest.items()):
            self._retained.put((topic, payload))
        log.info("connected to %s:%d; %d result(s) waiting", self.settings.host,
                 self.settings.port, self.outbox.depth())

    def _handle_disconnect(self, code: int) -> None:
        if self.presence is not None:
            self.presence.lost()
        self._statuses_awaited.clear()  # their message ids may come back as results'
        was_connected = self.connected
        self.connected = False
        if was_connected:
            self.stats.reconnects += 1
            unanswered = self._sender.unanswered_at_loss()
            if unanswered:
                self._confirmations.dropped_unanswered(unanswered)
            delay_s = self._reconnects.lost(code, results_unanswered=bool(unanswered))
            self._next_attempt_s = time.monotonic() + delay_s
            log.warning("lost the broker (reason %d); reconnecting in %.1f s", code, delay_s)
        elif self._next_attempt_s <= time.monotonic():
            self._next_attempt_s = time.monotonic() + self._reconnects.failed()

    def _handle_puback(self, mid: int, code: int) -> None:
        if mid == self._last_status_mid:
            self._last_status_code = code
            return
        built_s = self._statuses_awaited.pop(mid, None)
        if built_s is not None:
            if code < 0x80:
                self._status_reached_s = max(built_s, self._status_reached_s or built_s)
            return
        if self.presence is not None and self.presence.answered(mid, code):
            return
        answer = self._sender.answered(mid)
        if answer is None:
            return  # a status message, or an ack already handled
        seq, confirmed = answer
        self._confirmations.handle_puback(seq, code, confirmed=confirmed)

    def _handle_presence(self, payload: bytes, retained: bool) -> None:
        """Answer a held-back kiosk's look; another live kiosk process has this device id:
        leave the broker to it (a normal DISCONNECT: no last will, the retained status stays
        the other's)."""
        if self.presence is None:
            return
        answer = self.presence.answer(payload, retained)
        if answer is not None:
            self._client.publish(self.presence.topic, answer, qos=1)
        if self.presence.heard(payload, retained):
            self.connected = False
            self._client.disconnect()

    def _reopen_requested(self) -> None:
        """Have the kept results a resend request names wait again, each due at the next
        resend round (transport/unconfirmed.py paces them as any result sent again)."""
        while True:
            try:
                since_s = self._resend_requests.get_nowait()
            except queue.Empty:
                return
            try:
                seqs = self.outbox.reopen_confirmed(since_s)
            except OutboxError as exc:  # they stay kept: a later request can ask again
                log.error("could not send again the results confirmed since %s: %s",
                          _utc_text(since_s), exc)
                continue
            for seq in seqs:
                self._unconfirmed.send_later(seq)
            log.warning("the back office asked for the results it confirmed since %s: %d kept "
                        "result(s) wait again and are sent at the pace of the resends",
                        _utc_text(since_s), len(seqs))

    def _send_statuses(self) -> None:
        requested = False
        while True:
            try:
                self._status_requests.get_nowait()
                requested = True
            except queue.Empty:
                break
        if requested:
            self._publish_status("online")

    def _send_retained(self) -> None:
        while True:
            try:
                topic, payload = self._retained.get_nowait()
            except queue.Empty:
                return
            self._client.publish(
                topic, payload, qos=1, retain=True, properties=self._retained_properties
            )

    def _publish_status(self, state: str) -> None:
        """Publish the retained status and await its PUBACK (status_reached_since)."""
        built_s = time.monotonic()
        info = self._client.publish(
            self.status_topic,
            self._status_payload(state),
            qos=1,
            retain=True,
            properties=self._status_properties(),
        )
        self._statuses_awaited[info.mid] = built_s
        while len(self._statuses_awaited) > STATUSES_AWAITED:
            del self._statuses_awaited[next(iter(self._statuses_awaited))]

    def _shutdown(self) -> None:
        try:
            if self._client.socket() is not None:
                if self.presence is not None and self.connected:
                    self.presence.clear(self._client)
                self._client.disconnect(reasoncode=self._last_status())
                self._client.loop_write()
        except Exception:  # best effort on the way out; the will covers a failure
            log.debug("disconnect on shutdown failed", exc_info=True)
        finally:
            self.connected = False
            if self.presence is not None:
                self.presence.close_look()
            self._wake_r.close()
            self._wake_w.close()

    def _last_status(self) -> ReasonCode | None:
        """Leave a retained "offline" status with the numbers as they are at the stop and wait
        for its PUBACK: then a normal DISCONNECT (None). The last will was built at the start,
        so the back office, which keeps a device's numbers from its newest status, kept those
        of the last "online" one instead (an outbox of 1 for a kiosk that stopped with it
        empty). Without the PUBACK, or with one that refuses the status (reason code 0x80 and
        above, spec 3.4.2.1: paho counts it published all the same), DISCONNECT reason 0x04
        has the broker publish the will."""
        if not self.connected:
            return will_disconnect_reason()
        try:
            info = self._client.publish(self.status_topic, self._status_payload("offline"),
                                        qos=1, retain=True, properties=self._status_properties())
            self._last_status_mid = info.mid
            deadline_s = time.monotonic() + LAST_STATUS_WAIT_S
            while (self._last_status_code is None and time.monotonic() < deadline_s
                   and self._client.socket() is not None):
                self._io_once()
                self._handle_events()
            return self._last_status_reason()
        except Exception:  # best effort on the way out; the will covers a failure
            log.debug("last status on shutdown failed", exc_info=True)
            return will_disconnect_reason()

    def _last_status_reason(self) -> ReasonCode | None:
        """A normal DISCONNECT once the broker took the last status, else reason 0x04."""
        code = self._last_status_code
        if code is not None and code < 0x80:
            return None
        if code is not None:
            log.warning("the broker refused the offline status on %s (PUBACK reason code "
                        "0x%02X); leaving with the last will instead", self.status_topic, code)
        return will_disconnect_reason()


def _utc_text(unix_s: float) -> str:
    """A Unix time as UTC ISO 8601, to the second."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wake_pair() -> tuple[socket.socket, socket.socket]:
    """A non-blocking socket pair: other threads write a byte to wake the link's select."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    return reader, writer
