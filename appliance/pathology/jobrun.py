"""One running job's bookkeeping, and the thread that feeds batches to the backend.

A server may run the same job more than once in its life: it loses the job (its lease ran out
and another server claimed it) and takes it back later (that server died in turn). Each run has
an id of its own (``JobRun.run_id``, never reused in the process) that goes with its slides and
tiles through the batcher and the finisher, so what an earlier run left in flight (a batch in
the model, its drop, a failed batch) touches that run only, never the one after it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from appliance.pathology.backends import TileBackend
from appliance.pathology.batcher import FairBatcher
from appliance.pathology.finisher import SlideFinisher
from appliance.pathology.jobs import JobRequest
from appliance.pathology.service_metrics import ServiceMetrics

log = logging.getLogger(__name__)
RESULT_FIELDS = ("slide_index", "slide", "label", "score", "tile_count", "in_distribution_share",
                 "reason",
                 "error", "heatmap_path", "cam_path", "tiles_path")
_RUN_IDS = itertools.count(1)  # the main loop alone starts runs


@dataclass
class JobRun:
    """Which slides of a job are waiting, being prepared, and stored, in one run of it."""

    request: JobRequest
    stored: set[int]
    run_id: int = field(default_factory=lambda: next(_RUN_IDS))
    futures: dict[int, Future[Any]] = field(default_factory=dict)
    tiles_total: int = 0
    tiles_scored: int = 0
    published_at: float = 0.0
    last_dispatch: float = 0.0
    counted: set[int] = field(default_factory=set)
    # the final state and reason of a job being stopped, stored once the finisher dropped it
    ending: tuple[str, str] | None = None
    # the request's bytes as last read and found to be this job's (a rescan sends them again)
    payload: bytes = b""
    # stored running and published (server._begin); until then each housekeeping round tries
    begun: bool = False
    todo: deque[int] = field(init=False)

    def __post_init__(self) -> None:
        self.todo = deque(i for i in range(len(self.request.slides)) if i not in self.stored)

    @property
    def complete(self) -> bool:
        """Every slide has a stored result."""
        return len(self.stored) == len(self.request.slides)

    def next_slide(self) -> int | None:
        """The next slide to prepare, or None."""
        if not self.todo:
            return None
        self.last_dispatch = time.monotonic()
        return self.todo.popleft()

    def stored_row(self, index: int, row: dict[str, Any]) -> None:
        """A slide's result is in the store."""
        self.stored.add(index)
        if index not in self.counted:
            self.counted.add(index)
            self.tiles_scored += int(row.get("tile_count") or 0)

    def cancel_futures(self) -> None:
        """Stop preparations that have not started; forget the running ones."""
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        self.todo.clear()

    def summary(self) -> dict[str, Any]:
        """Progress fields of the job state."""
        total = len(self.request.slides)
        return {"slides_total": total, "slides_done": len(self.stored),
                "progress": round(len(self.stored) / total, 4),
                "tiles_prepared": self.tiles_total, "tiles_scored": self.tiles_scored}


class InferenceRunner(threading.Thread):
    """Takes batches from the batcher, runs the backend, hands outputs to the finisher."""

    def __init__(self, batcher: FairBatcher, backend: TileBackend, finisher: SlideFinisher,
                 metrics: ServiceMetrics, events: queue.Queue[tuple[str, Any]]) -> None:
        super().__init__(name=f"InferenceRunner {finisher.server_id}", daemon=True)
        self.batcher, self.backend, self.finisher = batcher, backend, finisher
        self.metrics, self.events = metrics, events
        self.stop_event = threading.Event()

    def run(self) -> None:
        """One loop: batch, infer, hand over; a failed batch fails its jobs."""
        while not self.stop_event.is_set():
            batch = self.batcher.next_batch(self.stop_event)
            if batch is None:
                self.metrics.snapshot(self.batcher.pending_tiles)
                continue
            started = time.monotonic()
            try:
                outputs = self.backend.infer(batch.pixels)
            except Exception as exc:  # a backend error fails the jobs, not the server
                log.exception("backend failed on a batch of %d tiles", len(batch.pixels))
                self.events.put(("batch_failed", (batch.runs, str(exc)[:500])))
                continue
            self.metrics.batch_done(len(batch.pixels), time.monotonic() - started)
            self.finisher.inbox.put(("batch", (batch, outputs)))
