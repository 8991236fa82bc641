"""A bound on how fast one kiosk's results are stored: a token bucket a kiosk.

A kiosk's login taken from a shop lets anyone publish on that kiosk's result topic as fast as
the broker takes it (the ACL keeps them to that kiosk's topics, deploy/mosquitto). Stored, such
a flood fills the database and makes every other kiosk's results wait behind it. An honest
kiosk measures one result in about 1.2 s at the most (README: the demo) and, after an outage,
sends its backlog at once; so each kiosk (site and device id, as its topic names them) has a
bucket of ``backoffice.kiosk_results_burst`` results that refills at
``backoffice.kiosk_results_per_s``. A result beyond it is neither stored nor confirmed: the
worker acknowledges it to the broker only (in order with the others, MQTT 5 spec 4.6), so its
kiosk keeps it and sends it again with its back-off (docs/delivery.md, step 5), and the
bucket lets it in once it has refilled. Nothing a kiosk keeps is lost. Beyond its burst a flood
costs the worker no store write, only a topic check and a PUBACK a message: other kiosks'
results still wait behind what of it the broker queued before them, but the worker gets
through that faster than through stored results (benchmarks/kiosk_flood.py), and a flood
faster still queues in the broker, within its bounds for one session (docs/delivery.md).

The bound is this worker's: workers in one share group each keep their own buckets, so a
kiosk may be stored up to that many times as fast. The table keeps the kiosks heard from
most recently, at most MAX_KIOSKS: one pushed out starts again with a full bucket, which only
a login that may publish as any kiosk (a broker without the fleet's ACL) can bring about.
Result topics whose site or device is no identifier a kiosk can have (too long, other
characters: triage dead-letters what comes on them) share one bucket, so no topic a login
makes up takes more than one small entry. A kiosk's statuses have buckets of their own, over
its status topic (status_rate.py).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from appliance.logsafe import LineBudget
from appliance.transport.payloads import IDENTIFIER_PATTERN, MAX_IDENTIFIER_CHARS
from appliance.transport.topics import parse_device_topic

log = logging.getLogger(__name__)
MAX_KIOSKS = 100_000  # buckets kept (a fleet is far smaller); about 50 MB at the most
REPORT_EVERY_S = 60.0  # a kiosk over its rate is said at once, then once a minute while it lasts

Kiosk = tuple[str, str]  # (site, device id)
NO_KIOSK: Kiosk = ("", "")  # the one bucket of result topics that name no kiosk
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


class RateWords(NamedTuple):
    """What a bound's log lines call its messages and say of those over it."""

    key: str  # the config key of the rate
    what: str  # the messages, plural
    first: str  # what becomes of those beyond it, in the first line
    later: str  # ... in the count a minute


RESULT_WORDS = RateWords(
    "backoffice.kiosk_results_per_s", "results",
    "those beyond are neither stored nor confirmed, so it sends them again later",
    "neither stored nor confirmed")


class _Bucket:
    """The tokens one kiosk has left, and its refusals not said yet."""

    __slots__ = ("at_s", "refused", "said_at_s", "tokens")

    def __init__(self, tokens: float, at_s: float) -> None:
        self.tokens, self.at_s = tokens, at_s
        self.refused = 0  # messages refused since its last line
        self.said_at_s = -REPORT_EVERY_S  # when its last line was said


class KioskRate:
    """Token buckets by kiosk over one leaf's topics under one prefix (``result``; statuses:
    status_rate.py); thread-safe."""

    def __init__(self, topic_prefix: str, rate_per_s: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_kiosks: int = MAX_KIOSKS, leaf: str = "result",
                 words: RateWords = RESULT_WORDS) -> None:
        self.topic_prefix, self.rate_per_s, self.burst = topic_prefix, rate_per_s, burst
        self._clock, self._max_kiosks = clock, max_kiosks
        self._leaf, self._words = leaf, words
        self._buckets: OrderedDict[Kiosk, _Bucket] = OrderedDict()
        self._unsaid: dict[Kiosk, _Bucket] = {}  # kiosks refused since their last line
        self._lock = threading.Lock()
        self._lines = LineBudget(log, f"kiosks over {words.key}")
        self.refused_total = 0

    def refuses(self, topic: str) -> bool:
        """Whether a message on ``topic`` is one of this leaf's over its kiosk's rate (it
        takes a token when not). Any other topic is never refused here: triage judges it."""
        kiosk = self.kiosk_of(topic)
        return kiosk is not None and self.refuses_kiosk(kiosk)

    def kiosk_of(self, topic: str) -> Kiosk | None:
        """The kiosk whose bucket a message on ``topic`` counts against (NO_KIOSK: a topic
        naming none); None: not this leaf's topic."""
        where = parse_device_topic(self.topic_prefix, topic)
        if where is None or where[2] != self._leaf:
            return None
        return (where[0], where[1]) if _is_kiosk(where[0], where[1]) else NO_KIOSK

    def takes(self, kiosk: Kiosk) -> bool:
        """Whether ``kiosk``'s bucket has a token (taken): for a message it held back."""
        with self._lock:
            bucket = self._bucket(kiosk, self._clock())
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True

    def refuses_kiosk(self, kiosk: Kiosk) -> bool:
        """Whether a message of ``kiosk`` is over its rate (it takes a token when not)."""
        with self._lock:
            now_s = self._clock()
            bucket = self._bucket(kiosk, now_s)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return False
            self.refused_total += 1
            first = now_s - bucket.said_at_s >= REPORT_EVERY_S
            if first:  # said now; later ones are counted for a line a minute
                bucket.said_at_s = now_s
            else:
                bucket.refused += 1
                self._unsaid[kiosk] = bucket
        if first:
            words = self._words
            self._lines.warn(
                f"%s sends {words.what} faster than {words.key} (%g/s, burst %d): "
                f"{words.first}; while it goes on (a stolen login?) it is said once a minute",
                _named(kiosk, self._leaf), self.rate_per_s, self.burst)
        return True

    def _bucket(self, kiosk: Kiosk, now_s: float) -> _Bucket:
        """``kiosk``'s bucket refilled to ``now_s``, made most recent (a new one is full)."""
        bucket = self._buckets.get(kiosk)
        if bucket is None:
            bucket = self._buckets[kiosk] = _Bucket(float(self.burst), now_s)
            if len(self._buckets) > self._max_kiosks:
                self._buckets.popitem(last=False)
            return bucket
        self._buckets.move_to_end(kiosk)
        bucket.tokens = min(float(self.burst),
                            bucket.tokens + (now_s - bucket.at_s) * self.rate_per_s)
        bucket.at_s = now_s
        return bucket

    def say_due(self) -> None:
        """A line for each kiosk refused since its last line a minute ago or more (within the
        log's budget: LineBudget); called often, from the writer's loop."""
        now_s = self._clock()
        with self._lock:
            due = [(kiosk, bucket) for kiosk, bucket in self._unsaid.items()
                   if now_s - bucket.said_at_s >= REPORT_EVERY_S]
            counts = []
            for kiosk, bucket in due:
                counts.append((kiosk, bucket.refused))
                bucket.refused, bucket.said_at_s = 0, now_s
                del self._unsaid[kiosk]
        what = self._words.what
        for kiosk, refused in counts:
            self._lines.warn(f"%s: %d more {what} over its rate, {self._words.later}, in the "
                             "last %.0f s", _named(kiosk, self._leaf), refused, REPORT_EVERY_S)
        self._lines.say_due()


def _is_kiosk(site: str, device: str) -> bool:
    """Whether a topic's site and device are identifiers a kiosk can have (transport/payloads)."""
    return all(len(name) <= MAX_IDENTIFIER_CHARS and _IDENTIFIER.match(name) is not None
               for name in (site, device))


def _named(kiosk: Kiosk, leaf: str) -> str:
    """A kiosk as a log line names it."""
    return f"{leaf} topics naming no kiosk" if kiosk == NO_KIOSK else f"kiosk {kiosk[0]}/{kiosk[1]}"
