"""What confirms a sent result and takes it out of the outbox: PUBACKs, the back office's acks.

A broker's PUBACK only moves a result from "in flight" to "awaiting the back office"
(transport/unconfirmed.py); a refusing one (0x80 or higher) leaves it there to be sent again.
A result leaves the outbox only when an ack on the device's ack topic names it: the back office
has committed it (docs/delivery.md). A malformed ack is counted and said cut short, within the
budget of lines that messages from outside share (transport/callbacks.py); confirmed
results the outbox cannot remove (a full disk) stay in it and are said once until it can again.
The link (transport/mqtt.py) calls in from its owner thread only; these are its counters too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from appliance.logsafe import LineBudget, shorten
from appliance.transport.acks import parse_ack_at
from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
from appliance.transport.payloads import PayloadError
from appliance.transport.unconfirmed import Unconfirmed

log = logging.getLogger(__name__)

SHOWN_REASON_CHARS = 300  # of why an ack was refused (it may quote a 64 KiB key) in the log


@dataclass
class LinkStats:
    """Counters for status and metrics."""

    reconnects: int = 0
    published: int = 0
    broker_acked: int = 0
    acked: int = 0  # confirmed committed by the back office, removed from the outbox
    resent: int = 0
    quiet_rounds: int = 0  # resend rounds after a span the back office confirmed nothing in
    rejected: int = 0
    dropped_unanswered: int = 0  # connections lost with results in flight and none answered
    bad_acks: int = 0


class LinkConfirmations:
    """The link's results that the broker took or refused and the back office committed:
    counted, handed to ``Unconfirmed`` to be sent again, removed from the outbox once committed."""

    def __init__(self, outbox: Outbox, ack_topic: str, stats: LinkStats,
                 unconfirmed: Unconfirmed, ignored: LineBudget) -> None:
        self.outbox, self.ack_topic, self.stats = outbox, ack_topic, stats
        self._ignored = ignored
        self._unconfirmed = unconfirmed
        self._refusal_said = False  # the broker refused a result (said once until it takes one)
        self._unremoved = 0  # confirmed results the outbox could not remove since it last could
        self._unanswered_drops = 0  # connections in a row dropped with results unanswered

    def handle_puback(self, seq: int, code: int, *, confirmed: bool = False) -> None:
        """The broker's PUBACK for the result with outbox ``seq``: took it, or refused it.
        ``confirmed``: the back office's ack came first (a broker slow to answer), so the
        result waits for nothing and is not sent again."""
        self._unanswered_drops = 0
        if code >= 0x80 and confirmed:  # refused again, but the back office has it
            return
        if code >= 0x80:
            # e.g. 0x87 from a broker ACL that does not (yet) let this device publish results:
            # the result waits in the outbox and is sent again with the unconfirmed ones, so
            # it arrives once the ACL is mended, without a restart (docs/delivery.md)
            self.stats.rejected += 1
            self._unconfirmed.send_later(seq)
            if not self._refusal_said:
                self._refusal_said = True
                log.error(
                    "broker refused result seq %d (reason 0x%02X); it stays in the outbox and "
                    "is sent again with the unconfirmed results (next in %.0f s); check the "
                    "broker ACL for this device (said once until the broker takes a result)",
                    seq, code, self._unconfirmed.wait_s,
                )
            return
        self._refusal_said = False
        self.stats.broker_acked += 1
        if not confirmed:
            self._unconfirmed.broker_took(seq)

    def dropped_unanswered(self, count: int) -> None:
        """The broker dropped the connection with ``count`` results in flight and no PUBACK
        for any of them: how mosquitto answers results its ACL refuses when the PUBACK 0x87
        is lost with the connection (transport/sender.py). They stay in the outbox; paho
        sends them again on the next connection. Said from the second such connection in a
        row: one is also what a broker killed right after a publish looks like."""
        self.stats.dropped_unanswered += 1
        self._unanswered_drops += 1
        if self._unanswered_drops >= 2 and not self._refusal_said:
            self._refusal_said = True
            log.error(
                "the broker dropped %d connections in a row with result(s) in flight and "
                "none answered (%d the last time); mosquitto does so when its ACL refuses "
                "this device's results. They stay in the outbox and are sent again on the "
                "next connection; check the broker ACL for this device (said once until the "
                "broker takes a result)",
                self._unanswered_drops, count)

    def handle_ack(self, raw: bytes) -> list[int]:
        """The back office committed these results: they may leave the outbox now; the seqs
        of those that left it."""
        try:
            ids, at_s = parse_ack_at(raw)
        except PayloadError as exc:
            self.stats.bad_acks += 1
            self._ignored.warn("ignored a malformed ack on %s: %s", self.ack_topic,
                               shorten(str(exc), SHOWN_REASON_CHARS))
            return []
        try:
            removed = self.outbox.remove_ids(ids, confirmed_at_s=at_s)
        except OutboxError as exc:  # e.g. a full disk: the results are sent again later
            self._removal_failed(len(ids), exc)
            return []
        self._removal_recovered()
        self._unconfirmed.confirmed(removed)
        self.stats.acked += len(removed)
        return removed

    def _removal_failed(self, count: int, error: OutboxError) -> None:
        """Say once, until a removal works again, that confirmed results stay in the outbox (a
        full disk refuses every ack's delete: one line per ack would flood the journal)."""
        if not self._unremoved:
            log.error("could not remove %d confirmed result(s): %s; they stay in the outbox and "
                      "are sent again later (the back office keeps each once); said once until "
                      "the outbox removes confirmed results again", count, error)
        self._unremoved += count

    def _removal_recovered(self) -> None:
        """After a removal that worked: say how many confirmed results could not be removed."""
        if self._unremoved:
            log.warning("the outbox removes confirmed results again; %d confirmed result(s) it "
                        "could not remove meanwhile stay in it and are sent again",
                        self._unremoved)
            self._unremoved = 0
