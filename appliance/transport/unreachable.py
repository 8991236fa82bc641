"""Saying that a broker cannot be reached, for the clients paho's own loop reconnects (started
with ``connect_async`` and ``loop_start``): the back office's ingest worker and the pathology
server.

paho's loop tries a connection that fails (refused, no route, a host name that does not
resolve) again and again without a word: it only calls ``on_connect_fail``, from inside the
``except OSError`` that caught the failure (``Client.loop_forever``), so ``sys.exception()``
there is the error. A worker started with a wrong broker host or port logged its store and
nothing else for as long as that lasted. Here the first failure is said with its cause, again
once a minute while it goes on (how many tries, for how long), and once when the broker answers,
as appliance/backoffice/outage.py says a store outage. (The edge daemon's link makes its own
connections and says each failure itself: appliance/transport/mqtt.py.)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

REMIND_EVERY_S = 60.0


class BrokerReach:
    """The failed connection attempts of one client, from the first until one connects."""

    def __init__(self, who: str, host: str, port: int, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._where = f"{who}: broker {host}:{port}"
        self._log, self._clock = log, clock
        self._began_s: float | None = None
        self._failures = 0
        self._next_remind_s = 0.0

    def attach(self, client: mqtt.Client) -> None:
        """Be told each connection attempt of ``client`` that fails."""
        client.on_connect_fail = self._connect_failed

    def _connect_failed(self, client: Any, userdata: Any) -> None:
        """Count a failed attempt; say the first, then once a minute (paho's callback)."""
        now_s = self._clock()
        self._failures += 1
        cause = sys.exception()
        why = f" ({cause})" if cause is not None else ""
        if self._began_s is None:
            self._began_s, self._next_remind_s = now_s, now_s + REMIND_EVERY_S
            self._log.warning("%s unreachable%s; retrying (said again each minute while it "
                              "lasts)", self._where, why)
        elif now_s >= self._next_remind_s:
            self._next_remind_s = now_s + REMIND_EVERY_S
            self._log.warning("%s still unreachable after %d tries in %.0f s%s; retrying",
                              self._where, self._failures, now_s - self._began_s, why)

    def reached(self) -> None:
        """The client connected (call it from ``on_connect``): say the end of failures said."""
        if self._began_s is None:
            return
        self._log.info("%s reached after %d failed tries in %.0f s", self._where,
                       self._failures, self._clock() - self._began_s)
        self._began_s, self._failures = None, 0
