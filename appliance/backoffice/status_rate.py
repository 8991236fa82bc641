"""A bound on how often one kiosk's status is written: a token bucket a kiosk, as for its
results (kiosk_rate.py), and the newest status over it held until the bucket lets it in.

A kiosk's login taken from a shop lets anyone publish on that kiosk's status topic as fast as
the broker takes it. Each status written is a ``devices`` upsert (and a clock reading) in the
worker's transaction, so such a flood wrote the database hard and made every other kiosk's
results wait. An honest kiosk sends its status every ``edge.status_interval_s`` (60 s; 1 s at
the least), within ``DEPTH_REFRESH_S`` (2 s) of a change in its outbox, and as it connects
(appliance/edge/status.py): about one a second at the most. So each worker writes one kiosk's
statuses at ``backoffice.kiosk_statuses_per_s`` and ``backoffice.kiosk_statuses_burst`` at the
most (one batch's statuses of a kiosk are one upsert already: status_order.latest_statuses).

A status is latest-wins, and a kiosk does not send one again, so a status over the rate is
acknowledged to the broker in its turn and not written, EXCEPT the newest of a kiosk's: that
one is held here, in place of any it held, and written once its bucket has a token again (the
writer's loop asks ``due`` every tenth of a second and before it stops), with the time it was
received, which its clock reading needs. Every status is stamped so as it comes (batcher.py), not
as its batch is written: the writer behind, the statuses queued before a held one were written
after it and read newer, and the row ended at an older status. A status within the rate
supersedes the one held. So the kiosk's row ends at the last status it sent: the older ones
are superseded, not lost. A held status is in this worker's memory only: a worker that dies
before writing it loses it, but the kiosk's status is retained by the broker, which hands its
newest to the worker that subscribes next.

Only a status with a payload of at most ``MAX_HELD_BYTES`` is held (a valid one is far
smaller; a larger one could only be dead-lettered), and at most ``MAX_HELD`` kiosks' are (the
ACL lets a login publish on its own kiosk's topics only, so each is a kiosk's flooding login):
beyond them the oldest held goes unwritten, said in the log. Topics naming no kiosk share one
bucket (kiosk_rate.py), and nothing of theirs is held: triage would only dead-letter it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from appliance.backoffice.kiosk_rate import MAX_KIOSKS, NO_KIOSK, Kiosk, KioskRate, RateWords
from appliance.backoffice.triage import Inbound
from appliance.logsafe import LineBudget
from appliance.transport.payloads import utc_now

log = logging.getLogger(__name__)
MAX_HELD = 10_000  # kiosks with a status held at once: 40 MiB at the most
MAX_HELD_BYTES = 4096  # the largest status payload held (a valid one has under 1 KiB)

STATUS_WORDS = RateWords(
    "backoffice.kiosk_statuses_per_s", "statuses",
    "those beyond are acknowledged and not written, its newest one written once its rate "
    "allows", "acknowledged and not written (its newest written once its rate allows)")


class StatusRate:
    """Token buckets by kiosk over status topics under one prefix, and each kiosk's newest
    status over its rate; thread-safe (``refuses`` on the network thread, ``due`` on the
    writer's)."""

    def __init__(self, topic_prefix: str, rate_per_s: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_kiosks: int = MAX_KIOSKS, max_held: int = MAX_HELD) -> None:
        self.rate = KioskRate(topic_prefix, rate_per_s, burst, clock=clock,
                              max_kiosks=max_kiosks, leaf="status", words=STATUS_WORDS)
        self._held: OrderedDict[Kiosk, Inbound] = OrderedDict()
        self._max_held = max_held
        self._lock = threading.Lock()  # taken before the buckets' own
        self._lines = LineBudget(log, "held statuses pushed out")
        self.pushed_out = 0  # held statuses that went unwritten: MAX_HELD kiosks held one

    def refuses(self, message: Inbound) -> bool:
        """Whether ``message`` is a status over its kiosk's rate (it takes a token when not);
        one that is, with a payload, is held as its kiosk's newest (``due``). One within the
        rate supersedes the status its kiosk had held. Any other topic is never refused."""
        kiosk = self.rate.kiosk_of(message.topic)
        if kiosk is None:
            return False
        pushed_out = None
        with self._lock:
            if not self.rate.refuses_kiosk(kiosk):
                if message.payload:  # an empty one clears the retained topic, writes nothing
                    self._held.pop(kiosk, None)
                return False
            if kiosk != NO_KIOSK and 0 < len(message.payload) <= MAX_HELD_BYTES:
                self._held.pop(kiosk, None)
                self._held[kiosk] = replace(message, received=message.received or utc_now(),
                                             held=True)
                if len(self._held) > self._max_held:
                    pushed_out = self._held.popitem(last=False)[0]
                    self.pushed_out += 1
        if pushed_out is not None:
            self._lines.warn("the newest status held over its rate of kiosk %s/%s is not "
                             "written: %d kiosks hold one (status_rate.MAX_HELD); its row "
                             "shows its last status written", *pushed_out, self._max_held)
        return True

    def is_status(self, topic: str) -> bool:
        """Whether ``topic`` is a status topic under this prefix (a kiosk's or naming none)."""
        return self.rate.kiosk_of(topic) is not None

    def due(self, *, every: bool = False) -> list[Inbound]:
        """The statuses held whose kiosk's bucket has a token again (taken), to be written
        now, oldest held first; ``every``: all of them, as the writer stops."""
        with self._lock:
            if not self._held:
                return []
            kiosks = [kiosk for kiosk in self._held if every or self.rate.takes(kiosk)]
            return [self._held.pop(kiosk) for kiosk in kiosks]

    def say_due(self) -> None:
        """The lines due (kiosk_rate.py's, and of held statuses pushed out)."""
        self.rate.say_due()
        self._lines.say_due()
