"""Warnings of dead letters, a limited number per kiosk and minute.

Each message the worker refuses is named in one warning. A kiosk that sends refused messages
fast (broken, or someone holding its login) would otherwise write a line per message: the
journal fills, and journald's rate limit (10,000 lines in 30 s by default) then drops every
line of the worker, the other kiosks' refusals and store errors included. So each kiosk's
first ``PER_WINDOW`` letters of a window are named one by one, then one line says the rest are
not, and the next window's first letter says how many were not. Every letter is still kept
(``appliance results dead-letters``) and counted (the worker's ``ingest:`` line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.logsafe import shorten

log = logging.getLogger("appliance.backoffice.batcher")

PER_WINDOW = 10  # dead letters of one kiosk named one by one in a window
WINDOW_S = 60.0
MAX_SOURCES = 10_000  # windows remembered; beyond, those that ended are forgotten
# of a topic or source in a line, and as remembered: a topic may be 65,535 bytes, and 10,000
# such sources held whole were 650 MB
SHOWN_CHARS = 200


class DeadLetterLog:
    """Names dead letters in warnings, at most ``per_window`` per source and window."""

    def __init__(self, per_window: int = PER_WINDOW, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window, self.window_s, self._clock = per_window, window_s, clock
        self._windows: dict[str, tuple[float, int]] = {}  # source -> (start, letters in it)

    def warn(self, source: str, topic: str, reason: str, payload_bytes: int,
             payload_start: str) -> None:
        """One dead letter from ``source`` (a kiosk's site/device, else its topic)."""
        source, topic = shorten(source, SHOWN_CHARS), shorten(topic, SHOWN_CHARS)
        now = self._clock()
        start, seen = self._windows.get(source, (now, 0))
        if now - start >= self.window_s:
            if seen > self.per_window:
                log.warning("%d more dead letter(s) from %s in %.0f s were not named one by one "
                            "(each is kept: appliance results dead-letters)",
                            seen - self.per_window, source, self.window_s)
            start, seen = now, 0
        self._remember(source, (start, seen + 1), now)
        if seen < self.per_window:
            log.warning("dead letter on %s: %s (payload %d bytes: %s)", topic, reason,
                        payload_bytes, payload_start)
        elif seen == self.per_window:
            log.warning("more than %d dead letters from %s within %.0f s: the rest of them are "
                        "not named one by one (each is kept: appliance results dead-letters; "
                        "counted in the ingest: line)", self.per_window, source, self.window_s)

    def _remember(self, source: str, window: tuple[float, int], now: float) -> None:
        self._windows[source] = window
        if len(self._windows) > MAX_SOURCES:  # topics a permissive broker let through
            self._windows = {s: w for s, w in self._windows.items()
                             if now - w[0] < self.window_s}
        if len(self._windows) > MAX_SOURCES:
            self._windows = {source: window}
