"""What the link sends from the outbox: new results, unconfirmed ones again, and the expiry.

Results go out at QoS 1 oldest first, as many as the broker's receive window leaves room for
(the CONNACK's Receive Maximum, MQTT 5 spec 3.2.2.3.3); each one in flight is kept by its
packet id until its PUBACK (transport/confirmations.py takes it from there), which starts no
wait for the back office where its ack came first (a broker slow to answer); how long none
has come while some are in flight tells the link a broker that stopped answering. Results the back
office has not confirmed in time are read from the outbox again and sent again
(transport/unconfirmed.py times that, at the pace the back office confirms them:
transport/pacing.py), and once a minute the outbox drops what is older than
its age limit. An outbox that cannot be read is said once; what waits in it stays there. Only
the link's owner thread (transport/mqtt.py) calls in: it alone touches the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import paho.mqtt.client as mqtt

from appliance.transport.client import LinkSettings, publish_properties
from appliance.transport.confirmations import LinkStats
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
from appliance.transport.unconfirmed import Unconfirmed

log = logging.getLogger(__name__)

EXPIRE_EVERY_S = 60.0


class ResultSender:
    """Publishes the outbox's results within the broker's window and keeps the in-flight ones
    (packet id -> outbox seq) until their PUBACK."""

    def __init__(self, settings: LinkSettings, outbox: Outbox, client: mqtt.Client,
                 stats: LinkStats, unconfirmed: Unconfirmed) -> None:
        self.outbox, self.stats, self._client = outbox, stats, client
        self._unconfirmed = unconfirmed
        self.inflight: dict[int, int] = {}  # packet id -> outbox seq, until its PUBACK
        self._settled: set[int] = set()  # packet ids in flight whose result is confirmed
        self._answered_s = time.monotonic()  # the last PUBACK, or since when one is awaited
        self._answered_on_connection = False  # a PUBACK came on the current connection
        self.window = settings.max_inflight  # the broker's Receive Maximum once connected
        self._sent_seq = 0
        self._read_failed = False  # the outbox refused a read (said once)
        self._next_expire_s = 0.0
        self._result_properties = publish_properties(settings.message_expiry_s)

    def publish_pending(self) -> None:
        """Publish the outbox's results not sent yet, oldest first, as far as the window allows."""
        room = self.window - len(self.inflight)
        if room <= 0:
            return
        try:
            messages = self.outbox.pending(after_seq=self._sent_seq, limit=room)
        except OutboxError as exc:  # the daemon restarts to repair a damaged one
            self._outbox_failed(exc)
            return
        self._read_failed = False
        for message in messages:
            self._sent_seq = message.seq
            if not self._publish_result(message.seq, message.topic, message.payload):
                break

    def _outbox_failed(self, error: OutboxError) -> None:
        """Say once that the outbox cannot be read; what waits in it stays there."""
        if not self._read_failed:
            log.error("cannot read the outbox; waiting results are not sent meanwhile: %s", error)
        self._read_failed = True

    def _publish_result(self, seq: int, topic: str, payload: bytes) -> bool:
        """Publish one outbox message at QoS 1; False when the socket just failed."""
        if not self.inflight:
            self.restart_wait()
        info = self._client.publish(topic, payload, qos=1, properties=self._result_properties)
        # paho keeps a QoS 1 message in its session even when the socket just dropped,
        # and resends it (DUP) after the reconnect, so it counts as in flight either way.
        self.inflight[info.mid] = seq
        self._settled.discard(info.mid)  # a packet id reused: this result is not confirmed
        self.stats.published += 1
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def answered(self, mid: int) -> tuple[int, bool] | None:
        """A PUBACK: the outbox seq of the result it answers, and whether the back office has
        confirmed that result already (None: not one of them)."""
        self._answered_s = time.monotonic()
        seq = self.inflight.pop(mid, None)
        confirmed = mid in self._settled
        self._settled.discard(mid)
        if seq is None:
            return None
        self._answered_on_connection = True
        return seq, confirmed

    def settled(self, seqs: Collection[int]) -> None:
        """The back office confirmed these results, some maybe still in flight: a broker slow
        to answer (its PUBACK after the ack) must not have them wait for a confirmation had
        already, and sent again for nothing."""
        if seqs and self.inflight:
            wanted = set(seqs)
            self._settled.update(mid for mid, seq in self.inflight.items() if seq in wanted)

    def connected(self) -> None:
        """A new connection: the wait for a PUBACK counts from now, none has come on it."""
        self._answered_on_connection = False
        self.restart_wait()

    def unanswered_at_loss(self) -> int:
        """At a lost connection: how many results were in flight on it with no PUBACK for
        any result on it (0 when one came, or none was in flight). mosquitto answers a result
        its ACL refuses with PUBACK 0x87 and closes the connection; with more of the kiosk's
        packets still unread it closes with a reset, which can take the PUBACK with it."""
        return 0 if self._answered_on_connection else len(self.inflight)

    def restart_wait(self) -> None:
        """Count the wait for a PUBACK from now (a new connection, or a first result sent)."""
        self._answered_s = time.monotonic()

    def unanswered(self, settings: LinkSettings) -> str:
        """What to say when results have been in flight with no PUBACK for longer than
        ``settings.puback_timeout_s`` ("" otherwise)."""
        silent_s = time.monotonic() - self._answered_s
        if not self.inflight or silent_s <= settings.puback_timeout_s:
            return ""
        return (f"no PUBACK from the broker {settings.host}:{settings.port} in {silent_s:.0f} s "
                f"for {len(self.inflight)} result(s) in flight")

    def resend_when_due(self) -> None:
        """Send again what the back office has not confirmed in time (capped backoff)."""
        due = self._unconfirmed.due(self.window - len(self.inflight))
        if not due:
            return
        try:
            messages = self.outbox.get(due)
        except OutboxError as exc:  # e.g. an I/O error; the daemon restarts for a damaged one
            self._outbox_failed(exc)
            for seq in due:  # still unconfirmed: due again after the next wait
                self._unconfirmed.send_later(seq)
            return
        for message in messages:
            self._publish_result(message.seq, message.topic, message.payload)
        self.stats.resent += len(messages)
        self.stats.quiet_rounds = self._unconfirmed.quiet_rounds
        log.info("%d result(s) not confirmed by the back office; sent again (next wait %.0f s)",
                 len(messages), self._unconfirmed.wait_s)

    def expire_when_due(self) -> None:
        """At most once a minute: have the outbox drop results older than its age limit."""
        now_s = time.monotonic()
        if now_s >= self._next_expire_s:
            self._next_expire_s = now_s + EXPIRE_EVERY_S
            try:
                expired = self.outbox.expire()
            except OutboxError as exc:
                log.error("could not expire old results: %s", exc)
                return
            if expired:
                log.warning("dropped %d result(s) older than the outbox age limit", expired)
