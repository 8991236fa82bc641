"""Slide preparation of ``appliance pathology serve``: slides of the running jobs handed to
the preparation worker processes (appliance/pathology/workerpool.py), round-robin over jobs
while the batcher has room, and the prepared tiles handed on to the batcher and the finisher
(docs/pathology-server.md, Batching). A slide whose preparation runs past
pathology.prepare_timeout_s fails, its worker ended; a worker that dies (killed: out of memory
on a huge slide) has its slide tried once more in a new worker, and fails it if that dies too.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from appliance.config.pathology import PathologyConfig
from appliance.pathology.batcher import FairBatcher, TileChunk
from appliance.pathology.finisher import SlideFinisher, SlideWork
from appliance.pathology.jobrun import JobRun
from appliance.pathology.jobs import job_submitter
from appliance.pathology.prepare import TileSettings
from appliance.pathology.slideworker import PreparedTiles, prepare_for_model
from appliance.pathology.workerpool import PreparationWorkers, WorkerError, WorkerTimeoutError

log = logging.getLogger(__name__)


class SlidePreparation:
    """The preparation half of a pathology server (a base of ``PathologyServer``, whose main
    loop calls ``_collect_prepared`` and ``_dispatch`` each turn)."""

    settings: PathologyConfig
    runs: dict[str, JobRun]
    batcher: FairBatcher
    finisher: SlideFinisher
    pool: PreparationWorkers
    tile_settings: TileSettings

    def _dispatch(self) -> None:
        """Start preparing slides, round-robin over jobs, while the batcher has room."""
        in_flight = sum(len(run.futures) for run in self.runs.values())
        runs = sorted(self.runs.values(), key=lambda run: run.last_dispatch)
        for run in runs:
            if in_flight >= self.settings.prepare_workers or not self.batcher.has_room():
                return
            index = run.next_slide()
            if index is None:
                continue
            run.futures[index] = self._prepare(run, index)
            in_flight += 1

    def _prepare(self, run: JobRun, index: int) -> Future[PreparedTiles]:
        """Hand one slide to a preparation worker, which reads it only inside the slide roots
        of the job's login (pathology.slide_roots_by_login); a login with none now (a job
        resumed after the config changed) fails the slide unread."""
        slide, job_id = run.request.slides[index], run.request.job_id
        roots = tuple(self.settings.slide_roots_of(job_submitter(job_id)))
        if not roots:  # no roots would mean no check at all in the worker
            refused: Future[PreparedTiles] = Future()
            refused.set_result(PreparedTiles(job_id, index, error=(
                f"{slide.path}: login {job_submitter(job_id)!r} has no slide folders on this "
                "server now (pathology.slide_roots_by_login); refused, unread")))
            return refused
        return self.pool.submit(prepare_for_model, job_id, index, slide.path,
                                slide.um_per_px, self.tile_settings, roots=roots)

    def _collect_prepared(self) -> None:
        for run in list(self.runs.values()):
            for index, future in list(run.futures.items()):
                if future.done():
                    del run.futures[index]
                    self._prepared(run, index, future)

    def _prepared(self, run: JobRun, index: int, future: Future[Any]) -> None:
        slide = run.request.slides[index]
        try:
            prepared = future.result()
        except Exception as exc:  # one slide must never stop the server
            log.exception("job %s: preparing slide %d failed", run.request.job_id, index)
            prepared = PreparedTiles(run.request.job_id, index,
                                     error=f"{slide.path}: could not be prepared "
                                     f"({_failure(exc)})")
        self.finisher.inbox.put(("slide", SlideWork(prepared, slide.name, slide.path,
                                                    run.run_id)))
        if not prepared.error:
            run.tiles_total += len(prepared.tiles)
            self.batcher.put(TileChunk(run.request.job_id, index, 0, prepared.pixels,
                                       run_id=run.run_id))


def _failure(exc: Exception) -> str:
    """What stopped a slide's preparation: a worker's error says it already."""
    if isinstance(exc, WorkerTimeoutError):
        return f"its preparation {exc}, a new one takes the next slide; the limit is " \
            "pathology.prepare_timeout_s"
    return str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
