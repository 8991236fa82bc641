"""Saying a store outage in the journal: when the store starts to fail, once a minute while it
goes on failing, when it fails for another cause (storeerrors.cause_of), and when it answers
again.

The programs that write to the store retry for as long as it is down (a full disk, a PostgreSQL
server restarted), acknowledging nothing they could not store meanwhile: the ingest writer
(appliance/backoffice/batcher.py) and the pathology server (appliance/pathology/server.py,
finisher.py). One error line a retry said the same words many times a minute for as long as an
outage lasted, and nothing said when the store answered again. Each program names its own
journal and words (``OutageWords``); when it speaks is the same for all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.backoffice.storeerrors import cause_of, explained
from appliance.backoffice.storeurl import store_name
from appliance.diskspace import full_disk_hint

REMIND_EVERY_S = 60.0


@dataclass(frozen=True)
class OutageWords:
    """How one program says an outage: ``the STORE: {failed} (ERROR); {meanwhile}``, then
    ``the STORE: {still} after N tries in S s (ERROR); retrying``."""

    failed: str  # what failed, e.g. "commit failed"
    meanwhile: str  # what waits, how often it is tried, that it is said again each minute
    still: str  # e.g. "commits still fail"


class StoreOutage:
    """The failed tries of one store, from the first failure until a try passes."""

    def __init__(self, url: str, log: logging.Logger, words: OutageWords,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._url, self._log, self._words, self._clock = url, log, words, clock
        self._began_s: float | None = None
        self._failures = 0
        self._next_remind_s = 0.0
        self._causes: set[str] = set()  # the kinds of failure said in this outage (cause_of)

    @property
    def ongoing(self) -> bool:
        """Whether an outage was said and has not ended yet."""
        return self._began_s is not None

    def failed(self, error: Exception) -> None:
        """Count a failed try; say the first of an outage, then once a minute, and at once
        when it fails for a kind of cause not said yet in this outage (a server restarted,
        then back read-only: the first line named the restart, and the read-only server was
        named only by the next minute's line)."""
        now_s = self._clock()
        self._failures += 1
        cause = cause_of(error)
        if self._began_s is None:
            self._began_s, self._next_remind_s = now_s, now_s + REMIND_EVERY_S
            self._causes = {cause}
            self._log.error("the %s: %s (%s); %s", store_name(self._url), self._words.failed,
                            self._why(error), self._words.meanwhile)
        elif cause not in self._causes:
            self._causes.add(cause)
            self._say_still(now_s, error, ", now for another cause")
        elif now_s >= self._next_remind_s:
            self._say_still(now_s, error)

    def _say_still(self, now_s: float, error: Exception, change: str = "") -> None:
        """Say that the outage goes on, and its cause now; the next reminder a minute on."""
        assert self._began_s is not None  # only while an outage lasts
        self._next_remind_s = now_s + REMIND_EVERY_S
        self._log.error("the %s: %s after %d tries in %.0f s%s (%s); retrying",
                        store_name(self._url), self._words.still, self._failures,
                        now_s - self._began_s, change, self._why(error))

    def passed(self) -> None:
        """The store took a try (or refused its data: it answers): say that the outage, if
        there was one, is over."""
        if self._began_s is None:
            return
        self._log.warning("the %s answers again after %d failed tries in %.0f s",
                          store_name(self._url), self._failures,
                          self._clock() - self._began_s)
        self._began_s, self._failures = None, 0

    def _why(self, error: Exception) -> str:
        """The error on one line, with the full disk of a SQLite store where it is one."""
        text = explained(error)
        if self._url.startswith("sqlite:///"):
            full = full_disk_hint(Path(self._url.removeprefix("sqlite:///")))
            text += f"; {full}" if full else ""
        return text
