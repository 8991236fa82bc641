"""Results the broker took but the back office has not confirmed yet, and when to resend them.

The link marks a result here on its PUBACK (or on a refusing one: it is sent again the same way)
and forgets it on the back office's ack. Results
waiting longer than the current wait are due again; each resend round doubles the wait (up to
``cap_s``), and any ack brings it back to ``initial_s`` (docs/delivery.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class Unconfirmed:
    """Outbox seqs waiting for the back office's end-to-end ack, with a capped resend backoff."""

    def __init__(self, initial_s: float, cap_s: float) -> None:
        self.initial_s, self.cap_s = initial_s, max(cap_s, initial_s)
        self.wait_s = initial_s
        self._since_s: dict[int, float] = {}  # seq -> when the broker took it (monotonic)
        self._next_check_s = 0.0

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
        """The back office committed these: forget them and reset the wait."""
        removed = [self._since_s.pop(seq, None) for seq in seqs]
        if removed:
            self.wait_s = self.initial_s

    def due(self, room: int) -> list[int]:
        """Up to ``room`` seqs to send again now, oldest first (empty until the check is due)."""
        now_s = time.monotonic()
        if now_s < self._next_check_s or not self._since_s or room <= 0:
            return []
        self._next_check_s = now_s + min(1.0, self.wait_s / 4)
        cutoff_s = now_s - self.wait_s
        seqs = sorted(seq for seq, since_s in self._since_s.items() if since_s <= cutoff_s)[:room]
        for seq in seqs:
            del self._since_s[seq]
        if seqs:
            self.wait_s = min(self.wait_s * 2, self.cap_s)
        return seqs
