"""The dynamic batcher: tiles of every running job share the model's batches, fairly.

Prepared tiles wait in one queue per job. A batch is cut when ``max_batch`` tiles wait, or when
the oldest waiting tile has waited ``max_wait_s`` (a lone small job is not held back). Each batch
is filled round-robin: every job with waiting tiles gets up to an equal share of the batch per
round, so a job of ten thousand tiles cannot starve a job of ten. ``max_pending_tiles`` bounds
what waits: the server starts preparing another slide only while fewer tiles wait (``has_room``),
so when the accelerator is the bottleneck decoding pauses instead of filling memory
(back-pressure).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TileChunk:
    """Consecutive prepared tiles of one slide: pixels, and the index of the first in the slide;
    ``run_id`` names the run of the job they were prepared for (the batcher only carries it)."""

    job_id: str
    slide_index: int
    first_tile: int
    pixels: np.ndarray
    run_id: int = field(kw_only=True)
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchPart:
    """Which tiles of a batch belong to which slide, of which run of its job."""

    job_id: str
    slide_index: int
    first_tile: int
    count: int
    run_id: int


@dataclass(frozen=True)
class Batch:
    """One model call's worth of tiles."""

    pixels: np.ndarray
    parts: tuple[BatchPart, ...]

    @property
    def jobs(self) -> set[str]:
        """The jobs whose tiles are in this batch."""
        return {part.job_id for part in self.parts}

    @property
    def runs(self) -> set[tuple[str, int]]:
        """The runs (job id, run id) whose tiles are in this batch."""
        return {(part.job_id, part.run_id) for part in self.parts}


@dataclass
class BatcherStats:
    """Counters since start."""

    batches: int = 0
    tiles: int = 0
    shared_batches: int = 0
    dropped_tiles: int = 0
    peak_pending_tiles: int = 0


class FairBatcher:
    """Thread-safe per-job tile queues cut into fair, bounded batches."""

    def __init__(self, max_batch: int, max_wait_s: float, max_pending_tiles: int) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending_tiles = max_pending_tiles
        self._queues: OrderedDict[str, deque[TileChunk]] = OrderedDict()
        self._pending = 0
        self._cond = threading.Condition()
        self.stats = BatcherStats()

    @property
    def pending_tiles(self) -> int:
        """Tiles waiting for the model."""
        return self._pending

    def pending_for(self, job_id: str) -> int:
        """Tiles of one job waiting for the model."""
        with self._cond:
            return sum(len(chunk.pixels) for chunk in self._queues.get(job_id, ()))

    def has_room(self) -> bool:
        """Whether fewer than max_pending_tiles tiles wait (another slide may be prepared)."""
        return self._pending < self.max_pending_tiles

    def put(self, chunk: TileChunk) -> None:
        """Queue prepared tiles (never blocks; callers check has_room before preparing)."""
        if len(chunk.pixels) == 0:
            return
        with self._cond:
            self._queues.setdefault(chunk.job_id, deque()).append(chunk)
            self._pending += len(chunk.pixels)
            self.stats.peak_pending_tiles = max(self.stats.peak_pending_tiles, self._pending)
            self._cond.notify_all()

    def drop_job(self, job_id: str) -> int:
        """Forget a job's waiting tiles (cancelled or lost); returns how many were freed."""
        with self._cond:
            chunks = self._queues.pop(job_id, deque())
            freed = sum(len(chunk.pixels) for chunk in chunks)
            self._pending -= freed
            self.stats.dropped_tiles += freed
            self._cond.notify_all()
            return freed

    def next_batch(self, stop: threading.Event, idle_timeout_s: float = 0.5) -> Batch | None:
        """The next batch once it is full or its oldest tile waited max_wait_s; None when idle."""
        deadline = time.monotonic() + idle_timeout_s
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                if self._pending >= self.max_batch or (
                    self._pending and now - self._oldest() >= self.max_wait_s
                ):
                    return self._cut()
                wake = deadline if not self._pending else self._oldest() + self.max_wait_s
                if not self._pending and now >= deadline:
                    return None
                self._cond.wait(max(0.001, min(wake - now, 0.1)))
        return None

    def _oldest(self) -> float:
        return min(queue[0].queued_at for queue in self._queues.values() if queue)

    def _cut(self) -> Batch:
        """Round-robin over the jobs, an equal share each per round, until the batch is full."""
        room = min(self.max_batch, self._pending)
        taken: list[tuple[BatchPart, np.ndarray]] = []
        while room > 0:
            active = [job for job, queue in self._queues.items() if queue]
            share = max(1, room // len(active))
            for job_id in active:
                if room == 0:
                    break
                part = self._take(job_id, min(share, room))
                taken.append(part)
                room -= part[0].count
        self._queues = OrderedDict((job, queue) for job, queue in self._queues.items() if queue)
        # the job served first moves to the back, so the next batch starts with another job
        if self._queues:
            self._queues.move_to_end(next(iter(self._queues)))
        batch = Batch(np.concatenate([pixels for _, pixels in taken]),
                      tuple(part for part, _ in taken))
        self._pending -= len(batch.pixels)
        self.stats.batches += 1
        self.stats.tiles += len(batch.pixels)
        self.stats.shared_batches += len(batch.jobs) > 1
        self._cond.notify_all()
        return batch

    def _take(self, job_id: str, count: int) -> tuple[BatchPart, np.ndarray]:
        """Up to count tiles from the head chunk of one job's queue."""
        chunk = self._queues[job_id][0]
        pixels = chunk.pixels[:count]
        part = BatchPart(job_id, chunk.slide_index, chunk.first_tile, len(pixels), chunk.run_id)
        if len(pixels) == len(chunk.pixels):
            self._queues[job_id].popleft()
        else:
            chunk.pixels = chunk.pixels[count:]
            chunk.first_tile += count
        return part, pixels
