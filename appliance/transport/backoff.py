"""Capped exponential backoff with jitter, for broker reconnects and camera reopens."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial_s`` up to ``cap_s``, with +-``jitter`` spread.

    Jitter keeps a fleet of kiosks from reconnecting in lockstep after a broker restart.
    """

    def __init__(self, initial_s: float, cap_s: float, jitter: float = 0.2) -> None:
        if initial_s <= 0 or cap_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= cap_s, got {initial_s}, {cap_s}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter}")
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.jitter = jitter
        self.attempts = 0

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        base_s = min(self.cap_s, self.initial_s * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        spread = 1.0 + random.uniform(-self.jitter, self.jitter)
        return min(self.cap_s, base_s * spread)

    def reset(self) -> None:
        """Start again from ``initial_s`` (call after a success)."""
        self.attempts = 0
