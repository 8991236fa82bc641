"""The slide finisher: collects each slide's scored tiles, then writes its result once.

One thread owns every slide in flight. It learns a slide's tiles when the slide is prepared,
takes the model's outputs batch by batch, scores the guard (input statistics + features ->
``in_distribution``) and, when the last tile of a slide is in, writes the tile table, heatmap
and CAM panel under ``results_dir/<job>/`` and the slide's row in the store.

Slides and outputs belong to one run of a job (appliance/pathology/jobrun.py). A drop ends one
run (cancelled, failed, or taken over by another server): its slides in hand are forgotten at
once, and outputs of it that were still in the model find no slide to land in; the same job
taken back later is a new run, finished as any other. The finisher keeps nothing of a run past
its drop, and says when it has dropped one (``on_dropped``), so the server stores a job's end
only after every slide result of that run that the finisher will ever write.

The finisher opens its own connection to the store, in its thread: a store that cannot be
reached then is an outage as a failed write is (said once, tried again each second, the
slides waiting in its inbox meanwhile), not the end of the thread or of the server. A write
the store refuses for the values it carries (storeerrors.refused_for_its_values: PostgreSQL's
DataError and IntegrityError, SQLite's constraints) is no outage: trying it again cannot
help, so it is not retried (it was, each second, for ever).

A slide whose result cannot be made or stored for what it holds (text no store takes, such as
a file name's undecodable byte; a picture that cannot be drawn) is stored as failed, its error
naming why, its texts escaped so that the store takes them; where even that is refused, its
run of the job fails with the reason (``on_unstored``). So is a slide whose share of a
batch's outputs cannot be taken (a guard fitted on features of another size than the model
gives). Either way the job ends: before, the slide (or the whole batch) was dropped with a
line in the log and the job stayed running for ever.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.backoffice.outage import OutageWords, StoreOutage
from appliance.backoffice.storeerrors import STORE_ERRORS, explained, refused_for_its_values
from appliance.logsafe import escape_controls
from appliance.pathology.aggregate import unscored_tiles_problem
from appliance.pathology.backends import ModelOutputs
from appliance.pathology.batcher import Batch, BatchPart
from appliance.pathology.heatmap import cam_panel, tile_heatmap, write_png
from appliance.pathology.jobs import utc_text
from appliance.pathology.jobstore import PathologyStore
from appliance.pathology.model import ModelInfo
from appliance.pathology.ood import guard_inputs_from_statistics
from appliance.pathology.run import (
    DecisiveTiles,
    SlideResult,
    picture_titles,
    slide_result,
    unfinite_cams_note,
    unlike_tiles,
    write_tile_scores,
)
from appliance.pathology.slideworker import PreparedTiles

log = logging.getLogger(__name__)
CAM_TILES = 4
PICTURE_KEYS = ("heatmap_path", "cam_path", "tiles_path")  # a row's picture and table paths
STORE_RETRY_S = 1.0
SLIDE_OUTAGE = OutageWords(
    failed="storing a slide result failed",
    meanwhile="the slide, and its job with it, waits: tried again each second, said again "
              "each minute while the store fails",
    still="storing slide results still fails")
OPEN_OUTAGE = OutageWords(
    failed="opening the slide finisher's connection failed",
    meanwhile="slide results wait: tried again each second, said again each minute while "
              "the store fails",
    still="opening the slide finisher's connection still fails")


@dataclass
class SlideWork:
    """A prepared slide waiting for its tiles' outputs, in one run of its job."""

    prepared: PreparedTiles
    name: str
    path: str
    run_id: int
    probability: np.ndarray = field(init=False)
    in_distribution: np.ndarray = field(init=False)
    remaining: int = field(init=False)
    decisive: DecisiveTiles = field(default_factory=lambda: DecisiveTiles(CAM_TILES))

    def __post_init__(self) -> None:
        count = len(self.prepared.tiles)
        self.probability = np.full(count, np.nan, np.float32)
        self.in_distribution = np.full(count, np.nan, np.float32)
        self.remaining = count


class SlideFinisher(threading.Thread):
    """Turns batch outputs into stored slide results; ``on_stored(job, index, row)`` after
    each, ``on_dropped(job, run)`` once a dropped run's last result is written,
    ``on_unstored(job, run, reason)`` when a slide's result could not be stored even as
    failed. ``open_store`` opens the thread's connection to the store ``url`` names."""

    store: PathologyStore  # opened by run(), before the first event is handled

    def __init__(self, open_store: Callable[[], PathologyStore], info: ModelInfo, *, url: str,
                 results_dir: Path,
                 server_id: str, backend_settings: dict[str, Any],
                 on_stored: Callable[[str, int, dict[str, Any]], None],
                 on_dropped: Callable[[str, int], None],
                 on_unstored: Callable[[str, int, str], None]) -> None:
        super().__init__(name=f"SlideFinisher {server_id}", daemon=True)
        self.open_store, self.info, self.results_dir = open_store, info, results_dir
        self.server_id, self.backend = server_id, json.dumps(backend_settings, default=str)
        self.on_stored, self.on_dropped, self.on_unstored = on_stored, on_dropped, on_unstored
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_event = threading.Event()
        # slides waiting for outputs, by (job id, run id, slide index)
        self._slides: dict[tuple[str, int, int], SlideWork] = {}
        self._outage = StoreOutage(url, log, SLIDE_OUTAGE)  # said once, not each try
        self._open_outage = StoreOutage(url, log, OPEN_OUTAGE)

    def run(self) -> None:
        """Open the store, then handle events until stopped (errors are logged; the thread
        keeps going)."""
        if not self._opened():
            return
        while not self.stop_event.is_set():
            try:
                kind, event = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._handle(kind, event)
            except Exception:  # a broken picture or row must not stop every other slide
                log.exception("slide finisher could not handle %s", kind)

    def _opened(self) -> bool:
        """Open the store, trying again each second while it cannot be reached; False if
        stopped first."""
        while not self.stop_event.is_set():
            try:
                self.store = self.open_store()
            except STORE_ERRORS as exc:
                if self.stop_event.is_set():  # cut by the server's stop: no outage
                    return False
                self._open_outage.failed(exc)
                self.stop_event.wait(STORE_RETRY_S)
                continue
            self._open_outage.passed()
            return True
        return False

    def _handle(self, kind: str, event: Any) -> None:
        if kind == "slide":
            work: SlideWork = event
            if work.prepared.error:
                self._store(work, scored=False)
            else:
                key = (work.prepared.job_id, work.run_id, work.prepared.slide_index)
                self._slides[key] = work
        elif kind == "batch":
            self._scores(*event)
        elif kind == "drop":
            self._drop(*event)

    def _drop(self, job_id: str, run_id: int) -> None:
        """Forget a run's slides in hand (its outputs still in the model then land nowhere;
        the server sends no slide of a run it dropped) and say so."""
        for key in [key for key in self._slides if key[:2] == (job_id, run_id)]:
            del self._slides[key]
        self.on_dropped(job_id, run_id)

    def _scores(self, batch: Batch, outputs: ModelOutputs) -> None:
        """Each slide's share of a batch's outputs; a slide whose share cannot be taken (a
        guard that does not fit the model's features) fails alone, saying why, instead of
        the batch being lost with every slide in it waiting for ever."""
        offset = 0
        for part in batch.parts:
            rows = slice(offset, offset + part.count)
            offset += part.count
            key = (part.job_id, part.run_id, part.slide_index)
            work = self._slides.get(key)
            if work is None:  # of a run dropped while these tiles were in the model
                continue
            try:
                self._take_outputs(work, part, batch, outputs, rows)
            except Exception as exc:  # whatever it is, the slide must not vanish
                del self._slides[key]
                self._store_failed(work, exc, what_failed="its tiles could not be scored")
                continue
            if work.remaining == 0:
                del self._slides[key]
                self._store(work, scored=True)

    def _take_outputs(self, work: SlideWork, part: BatchPart, batch: Batch,
                      outputs: ModelOutputs, rows: slice) -> None:
        """Note the batch's outputs (its ``rows``) for the slide's tiles in it (``part``)."""
        tiles = slice(part.first_tile, part.first_tile + part.count)
        work.probability[tiles] = outputs.probability[rows]
        if self.info.guard is not None and outputs.features is not None:
            described = guard_inputs_from_statistics(work.prepared.statistics[tiles],
                                                     outputs.features[rows])
            work.in_distribution[tiles] = self.info.guard.scores(described)
        cams = None if outputs.cam is None else outputs.cam[rows]
        work.decisive.offer(batch.pixels[rows], cams, outputs.probability[rows])
        work.remaining -= part.count

    def _pictures(self, work: SlideWork, result: SlideResult) -> dict[str, str]:
        folder = self.results_dir / work.prepared.job_id
        stem = f"{work.prepared.slide_index:04d}-{work.name}"
        paths = {key: folder / sub / f"{stem}{ext}" for key, sub, ext in (
            ("heatmap_path", "heatmaps", ".png"), ("cam_path", "cams", ".png"),
            ("tiles_path", "tiles", ".csv"))}
        prepared = work.prepared
        write_tile_scores(paths["tiles_path"], prepared.tiles, work.probability,
                          work.in_distribution)
        if work.decisive.unfinite_cams:
            log.warning("slide %s of job %s: the model answered %d tiles' CAMs that are not "
                        "finite (NaN or infinite); those are not drawn", prepared.slide_index,
                        prepared.job_id, work.decisive.unfinite_cams)
        titles = picture_titles(result, "mean", self.info.threshold)
        if prepared.thumbnail is not None:
            write_png(paths["heatmap_path"], tile_heatmap(
                prepared.thumbnail, prepared.thumbnail_scale, prepared.tiles, work.probability,
                titles[0], unlike=unlike_tiles(work.in_distribution, self.info.guard),
                note=unfinite_cams_note(work.decisive)))
        if work.decisive.pixels:
            write_png(paths["cam_path"], cam_panel(
                np.stack(work.decisive.pixels), np.stack(work.decisive.cams),
                np.array(work.decisive.probability), titles[1]))
        return {key: str(path) if path.exists() else "" for key, path in paths.items()}

    def _store(self, work: SlideWork, *, scored: bool) -> None:
        """Store the slide's result, or the slide as failed when its result cannot be made
        or stored for what it holds (not an outage: ``_write`` waits those out)."""
        try:
            row = self._result_row(work, scored=scored)
            stored = self._write(row)
        except Exception as exc:  # whatever it is, the slide must not vanish
            self._store_failed(work, exc)
            return
        if stored:
            self.on_stored(work.prepared.job_id, work.prepared.slide_index, row)

    def _store_failed(self, work: SlideWork, problem: Exception,
                      what_failed: str = "its result could not be stored") -> None:
        """Store the slide as failed, saying ``what_failed`` and why, its texts escaped
        (the slide's name, path or error may be what the store refused); where the store
        refuses that too, its run of the job fails with the reason (``on_unstored``)."""
        job_id, index = work.prepared.job_id, work.prepared.slide_index
        why = escape_controls(f"{type(problem).__name__}: {explained(problem)}")
        error = f"{escape_controls(work.path)}: {what_failed} ({why})"
        log.error("slide %s of job %s: %s; stored as failed", index, job_id, error)
        failed = SlideResult(escape_controls(work.name), "", "", escape_controls(work.path),
                             error=error)
        row = self._row(work, failed, dict.fromkeys(PICTURE_KEYS, ""))
        try:
            stored = self._write(row)
        except Exception as exc:  # the job must end, whatever refused it
            reason = (f"slide {index} ({escape_controls(work.name)}) could not be stored, "
                      f"not even as failed ({escape_controls(explained(exc))}); first: {error}")
            log.error("job %s: %s; the job fails", job_id, reason)
            self.on_unstored(job_id, work.run_id, reason)
            return
        if stored:
            self.on_stored(job_id, index, row)

    def _row(self, work: SlideWork, result: SlideResult, files: dict[str, str]
             ) -> dict[str, Any]:
        """The slide's row as the store keeps it."""
        return {**asdict(result), **files, "job_id": work.prepared.job_id,
                "slide_index": work.prepared.slide_index, "backend": self.backend,
                "server": self.server_id, "stored_at": utc_text()}

    def _result_row(self, work: SlideWork, *, scored: bool) -> dict[str, Any]:
        """The slide's row: its score and pictures, or its error."""
        job_id, index = work.prepared.job_id, work.prepared.slide_index
        base = SlideResult(work.name, "", "", work.path)
        error = work.prepared.error
        if scored and (problem := unscored_tiles_problem(work.probability)):
            error = f"{work.path}: {problem}"  # the model's answers: never a label
        if error:
            result = SlideResult(**{**asdict(base), "error": error})
            files = dict.fromkeys(PICTURE_KEYS, "")
        else:
            result = slide_result(base, work.probability, work.in_distribution,
                                  guard=self.info.guard, method="mean",
                                  threshold=self.info.threshold, labels=self.info.labels)
            try:
                files = self._pictures(work, result)
            except OSError as exc:  # a full disk: the slide's score stands, without pictures
                log.error("slide %s of job %s: pictures not written (%s); stored without them",
                          index, job_id, exc)
                files = dict.fromkeys(PICTURE_KEYS, "")
        return self._row(work, result, files)

    def _write(self, row: dict[str, Any]) -> bool:
        """Store the row, retrying while the store is down; False if stopped first (the job's
        lease then lapses and whichever server takes it over scores the slide again). A
        refusal of the row's values is raised at once: tried again, it fails again."""
        while not self.stop_event.is_set():
            try:
                self._store_slide(row)
            except STORE_ERRORS as exc:
                if self.store.stopping():  # cut by the server's stop: no outage
                    return False
                if refused_for_its_values(exc):
                    self._outage.passed()  # it answers: whatever failed before is over
                    raise
                log.debug("store failed (%s); slide %s of job %s waits", exc,
                          row["slide_index"], row["job_id"])
                self._outage.failed(exc)
                self.stop_event.wait(STORE_RETRY_S)
                with suppress(*STORE_ERRORS):
                    self.store.reconnect()
                continue
            self._outage.passed()
            return True
        return False

    def _store_slide(self, row: dict[str, Any]) -> None:
        """Store the row; where the server had closed the connection while no outage was
        said (a restart or a crash while no job ran), store it again at once on a new one
        (Store.reopened_after_close, said at INFO): no outage, nothing waited. Safe whatever
        the first try did: a slide result is written once (store_slide)."""
        try:
            self.store.store_slide(row)
        except STORE_ERRORS as exc:
            if self._outage.ongoing or not self.store.reopened_after_close(exc):
                raise
            self.store.store_slide(row)
