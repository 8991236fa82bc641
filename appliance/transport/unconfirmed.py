"""Results the broker took but the back office has not confirmed yet, and when to resend them.

The link marks a result here on its PUBACK (or on a refusing one: it is sent again the same way)
and forgets it on the back office's ack. Results waiting longer than the current wait are due
again; each resend round doubles the wait (up to ``cap_s``), and any ack brings it back to
``initial_s`` (docs/delivery.md). A round sends as many as transport/pacing.py allows (what
the back office confirmed since the previous round), newest first: a result measured while a
backlog drains and turned away with it goes in the first round after its wait, not behind the
backlog. After a round of which nothing was confirmed the next one waits the whole wait, so a
back office that is away hears one result a wait, however long the backlog.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable

from appliance.transport.pacing import ResendPace


class Unconfirmed:
    """Outbox seqs waiting for the back office's end-to-end ack, with a capped resend backoff
    and rounds paced by the confirmations."""

    def __init__(self, initial_s: float, cap_s: float) -> None:
        self.initial_s, self.cap_s = initial_s, max(cap_s, initial_s)
        self.wait_s = initial_s
        self.quiet_rounds = 0  # rounds sent after a span with nothing confirmed
        self._since_s: dict[int, float] = {}  # seq -> when the broker took it (monotonic)
        self._next_check_s = 0.0
        self._pace = ResendPace()

    def __len__(self) -> int:
        return len(self._since_s)

    def broker_took(self, seq: int) -> None:
        """The broker PUBACKed this seq: wait for the back office from now on."""
        self._since_s[seq] = time.monotonic()

    def send_later(self, seq: int) -> None:
        """Send this seq again once the current wait has passed: the broker refused it
        (PUBACK 0x80 or higher), or the outbox could not read it for a resend."""
        self._since_s[seq] = time.monotonic()

    def confirmed(self, seqs: Iterable[int]) -> None:
        """The back office committed these: forget them, reset the wait, count them for the
        next round's size (a round put off by a quiet one comes at the next check again)."""
        removed = list(seqs)  # a result confirmed before its PUBACK was handled counts too
        for seq in removed:
            self._since_s.pop(seq, None)
        if removed:
            self.wait_s = self.initial_s
            self._pace.confirmed(len(removed))
            self._next_check_s = min(self._next_check_s, time.monotonic() + self._check_every_s())

    def due(self, room: int) -> list[int]:
        """Up to ``room`` seqs to send again now, newest first (empty until the check is due)."""
        now_s = time.monotonic()
        if now_s < self._next_check_s or not self._since_s or room <= 0:
            return []
        cutoff_s = now_s - self.wait_s
        waited = [seq for seq, since_s in self._since_s.items() if since_s <= cutoff_s]
        seqs = heapq.nlargest(min(room, self._pace.round_size()), waited)
        quiet = self._pace.quiet()
        for seq in seqs:
            del self._since_s[seq]
        if seqs:
            self._pace.sent(len(seqs))
            self.quiet_rounds += quiet
            self.wait_s = min(self.wait_s * 2, self.cap_s)
        self._next_check_s = now_s + (self.wait_s if seqs and quiet else self._check_every_s())
        return seqs

    def _check_every_s(self) -> float:
        """How often due results are looked for while confirmations come."""
        return min(1.0, self.wait_s / 4)
