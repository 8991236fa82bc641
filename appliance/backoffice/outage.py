"""Saying a store outage in the journal: when commits start to fail, once a minute while they go
on failing, and when the store answers again.

The ingest writer retries a failed commit every few seconds for as long as the store is down (a
full disk, a PostgreSQL server restarted), acknowledging nothing meanwhile (appliance/backoffice/
batcher.py). One error line a retry said the same words twelve times a minute for as long as an
outage lasted, and nothing said when the store took the batch again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from appliance.backoffice.storeerrors import explained
from appliance.backoffice.storeurl import store_name
from appliance.diskspace import full_disk_hint

log = logging.getLogger("appliance.backoffice.batcher")  # the writer's journal name, as before
REMIND_EVERY_S = 60.0


class StoreOutage:
    """The failed commits of one store, from the first failure until a commit passes."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._url, self._clock = url, clock
        self._began_s: float | None = None
        self._failures = 0
        self._next_remind_s = 0.0

    def failed(self, error: Exception) -> None:
        """Count a failed commit; say the first of an outage, then once a minute."""
        now_s = self._clock()
        self._failures += 1
        if self._began_s is None:
            self._began_s, self._next_remind_s = now_s, now_s + REMIND_EVERY_S
            log.error("the %s: commit failed (%s); nothing of the batch is acknowledged, so "
                      "the broker and the kiosks keep it: retrying every few seconds, said "
                      "again each minute while commits fail", store_name(self._url),
                      self._why(error))
        elif now_s >= self._next_remind_s:
            self._next_remind_s = now_s + REMIND_EVERY_S
            log.error("the %s: commits still fail after %d tries in %.0f s (%s); retrying",
                      store_name(self._url), self._failures, now_s - self._began_s,
                      self._why(error))

    def passed(self) -> None:
        """The store took a commit (or refused its data: it answers): say that the outage, if
        there was one, is over."""
        if self._began_s is None:
            return
        log.warning("the %s answers again after %d failed tries in %.0f s",
                    store_name(self._url), self._failures, self._clock() - self._began_s)
        self._began_s, self._failures = None, 0

    def _why(self, error: Exception) -> str:
        """The error on one line, with the full disk of a SQLite store where it is one."""
        text = explained(error)
        if self._url.startswith("sqlite:///"):
            full = full_disk_hint(Path(self._url.removeprefix("sqlite:///")))
            text += f"; {full}" if full else ""
        return text
