"""The commit thread: results -> one fsync'd outbox transaction per group -> wake the link.

Group commit: results that arrive together are committed in one transaction (each is still
durable before it is published), so delivery keeps up with bursts without one fsync per
result. Only after the commit does anything else see a result: the MQTT link, the kiosk
screen and the journal line that names its measurement id.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from appliance.edge.pipeline import Accepted
from appliance.edge.screen import KioskScreen
from appliance.transport.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

QUEUE_POLL_S = 0.5


class ResultCommitter(threading.Thread):
    """Drains the result queue into the outbox in groups and tells the link."""

    def __init__(
        self,
        results: queue.Queue[Accepted],
        outbox: Outbox,
        stop: threading.Event,
        *,
        wake_link: Callable[[], None],
        screen: KioskScreen | None = None,
        group_max: int = 256,
    ) -> None:
        super().__init__(name="ResultCommitter", daemon=True)
        self.results, self.outbox, self.stop_event = results, outbox, stop
        self._wake_link = wake_link
        self.screen = screen
        self.group_max = group_max
        self.committed = 0
        self.refused = 0
        self.last_beat_s = time.monotonic()

    def run(self) -> None:
        """Commit until stopped; on stop, commit what is already queued, then end."""
        try:
            while not (self.stop_event.is_set() and self.results.empty()):
                self.last_beat_s = time.monotonic()
                group = self._next_group()
                if group:
                    self._commit(group)
        except Exception:
            log.exception("commit thread failed")  # the watchdog notices the missing beats

    def _next_group(self) -> list[Accepted]:
        try:
            group = [self.results.get(timeout=QUEUE_POLL_S)]
        except queue.Empty:
            return []
        while len(group) < self.group_max:
            try:
                group.append(self.results.get_nowait())
            except queue.Empty:
                break
        return group

    def _commit(self, group: list[Accepted]) -> None:
        rows = [(a.result.measurement_id, a.topic, a.result.to_json()) for a in group]
        try:
            self.outbox.add_many(rows)
        except OutboxError as exc:
            self.refused += len(group)
            log.error("%s", exc)
            return
        self.committed += len(group)
        self._wake_link()
        self._announce(group)

    def _announce(self, group: list[Accepted]) -> None:
        for accepted in group:
            result = accepted.result
            log.info(
                "measurement %s committed to the outbox",
                result.measurement_id,
                extra={"MEASUREMENT_ID": result.measurement_id, "DEVICE_ID": result.device_id},
            )
        if self.screen is not None:
            self.screen.show(group[-1].result, group[-1].draw_overlay)
