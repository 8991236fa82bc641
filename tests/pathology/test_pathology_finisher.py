"""The slide finisher on a real store (SQLite, PostgreSQL): a dropped run of a job leaves
nothing behind, and a later run of the same job (taken back by this server) is finished."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.pathology.backends import ModelOutputs
from appliance.pathology.batcher import Batch, BatchPart
from appliance.pathology.finisher import SlideFinisher, SlideWork
from appliance.pathology.jobs import make_request
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from appliance.pathology.model import ModelInfo
from appliance.pathology.ood import DistributionGuard
from appliance.pathology.slideworker import PreparedTiles
from appliance.pathology.stain import REFERENCE
from appliance.pathology.tiles import Tile
from tests.store_helpers import BACKENDS, fresh_store

TILE_PX = 8
INFO = ModelInfo("test", "1", ("MSS", "MSI"), TILE_PX, 4.0, 0.5, REFERENCE)
TOLD_WITHIN_S = 30.0


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PathologyStore]:
    """A fresh pathology store of each backend (PostgreSQL in a throw-away schema)."""
    with fresh_store(request.param, tmp_path, "test_finisher", open_pathology_store) as opened:
        yield opened


def _slide(job_id: str, run_id: int, tiles: int) -> tuple[str, SlideWork]:
    """Slide 0 of a job, prepared for one run of it."""
    pixels = np.zeros((tiles, TILE_PX, TILE_PX, 3), np.uint8)
    prepared = PreparedTiles(job_id, 0, [Tile(0, i, i * TILE_PX, 0, TILE_PX, 1.0)
                                         for i in range(tiles)], pixels,
                             np.zeros((tiles, 0), np.float32))
    return "slide", SlideWork(prepared, "s0", "/slides/s0.jpg", run_id)


def _outputs(job_id: str, run_id: int, tiles: range, probability: float,
             features: np.ndarray | None = None) -> tuple[str, Any]:
    """The model's outputs for some tiles of slide 0 of one run of a job."""
    part = BatchPart(job_id, 0, tiles.start, len(tiles), run_id)
    batch = Batch(np.zeros((len(tiles), TILE_PX, TILE_PX, 3), np.uint8), (part,))
    return "batch", (batch, ModelOutputs(np.full(len(tiles), probability, np.float32),
                                         None, features))


class Finishing:
    """A finisher thread on the store; what it tells the server comes out of ``told``."""

    def __init__(self, store: PathologyStore, results_dir: Path, info: ModelInfo = INFO) -> None:
        self.told: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        self.finisher = SlideFinisher(
            lambda: store, info, url=store.url, results_dir=results_dir, server_id="here",
            backend_settings={},
            on_stored=lambda *stored: self.told.put(("stored", stored)),
            on_dropped=lambda *dropped: self.told.put(("dropped", dropped)),
            on_unstored=lambda *unstored: self.told.put(("unstored", unstored)))
        self.finisher.start()

    def send(self, *events: tuple[str, Any]) -> None:
        for event in events:
            self.finisher.inbox.put(event)

    def next_told(self) -> tuple[str, tuple[Any, ...]]:
        return self.told.get(timeout=TOLD_WITHIN_S)

    def stop(self) -> None:
        self.finisher.stop_event.set()
        self.finisher.join(10)


def test_a_job_taken_back_after_a_drop_is_finished_by_its_new_run_alone(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """A server loses a job halfway through a slide (its lease ran out, another server claimed
    it) and takes it back later. The finisher ignored every slide of a job it had once dropped,
    so the job never finished there; the outputs of the lost run still in the model at the drop
    must not count towards the new run's slide either."""
    request = make_request([tmp_path / "s0.jpg"], 0.5, "lab")
    assert store.accept(request, "here", lease_s=30)
    job = request.job_id
    finishing = Finishing(store, tmp_path / "out")
    try:
        finishing.send(_slide(job, 1, tiles=4), _outputs(job, 1, range(0, 2), 0.9),
                       ("drop", (job, 1)))
        assert finishing.next_told() == ("dropped", (job, 1))
        finishing.send(_slide(job, 2, tiles=4),
                       _outputs(job, 1, range(2, 4), 0.9),  # in the model during the drop
                       _outputs(job, 2, range(0, 4), 0.2))
        kind, (job_id, index, row) = finishing.next_told()
    finally:
        finishing.stop()
    assert (kind, job_id, index) == ("stored", job, 0)
    assert (row["tile_count"], row["label"]) == (4, "MSS")
    assert row["score"] == pytest.approx(0.2)
    stored = store.slide_results(job)
    assert [(r["slide_index"], r["tile_count"], r["server"]) for r in stored] == [(0, 4, "here")]
    assert stored[0]["score"] == pytest.approx(0.2)
    tiles_csv = (tmp_path / "out" / job / "tiles" / "0000-s0.csv").read_text().splitlines()
    assert [line.split(",")[5] for line in tiles_csv[1:]] == ["0.20000"] * 4


def test_a_drop_ends_only_the_run_it_names_and_says_which(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """A late drop of an earlier run (the finisher was busy when it came) must not end the run
    of the same job that followed it, and says which run it dropped, so the server does not
    end the later run for it."""
    request = make_request([tmp_path / "s0.jpg"], 0.5, "lab")
    assert store.accept(request, "here", lease_s=30)
    job = request.job_id
    finishing = Finishing(store, tmp_path / "out")
    try:
        finishing.send(_slide(job, 2, tiles=2), ("drop", (job, 1)))
        assert finishing.next_told() == ("dropped", (job, 1))
        finishing.send(_outputs(job, 2, range(0, 2), 0.7))
        kind, (job_id, index, row) = finishing.next_told()
    finally:
        finishing.stop()
    assert (kind, job_id, index, row["label"]) == ("stored", job, 0, "MSI")
    assert [r["slide_index"] for r in store.slide_results(job)] == [0]


def _failed_slide(job_id: str, path: str, error: str) -> tuple[str, SlideWork]:
    """Slide 0 of a job, which its preparation worker could not read (``error``)."""
    prepared = PreparedTiles(job_id, 0, error=error)
    return "slide", SlideWork(prepared, "s0", path, 1)


def test_a_slide_whose_result_the_store_refuses_is_stored_as_failed_saying_why(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """A slide's path holding a file name's undecodable byte (a surrogate, as Python reads
    it) is text no store takes: the write raised UnicodeEncodeError, the finisher logged it and
    dropped the slide, and its job stayed running for ever. Now the slide is stored as failed,
    its texts escaped, its error saying why."""
    request = make_request([tmp_path / "s0.jpg"], 0.5, "lab")
    assert store.accept(request, "here", lease_s=30)
    job, odd = request.job_id, "/slides/\udcff.jpg"
    finishing = Finishing(store, tmp_path / "out")
    try:
        finishing.send(_failed_slide(job, odd, f"{odd}: cannot be read"))
        kind, (job_id, index, row) = finishing.next_told()
    finally:
        finishing.stop()
    assert (kind, job_id, index) == ("stored", job, 0)
    [stored] = store.slide_results(job)
    assert stored["path"] == "/slides/\\udcff.jpg"
    assert stored["error"].startswith("/slides/\\udcff.jpg: its result could not be stored "
                                      "(UnicodeEncodeError: 'utf-8' codec can't encode "
                                      "character '\\udcff'")
    assert (stored["label"], stored["score"], row["error"]) == ("", None, stored["error"])


@pytest.mark.postgres
def test_a_slide_error_postgresql_cannot_hold_is_stored_escaped_not_retried_for_ever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A NUL character in a slide's error (a decoder's message) is text PostgreSQL's ``text``
    refuses (DataError). The finisher took that for an outage: it said the store failed,
    tried the same row each second for ever, and the job never ended. Now the refusal is said
    once and the slide stored as failed, its texts escaped."""
    with fresh_store("postgres", tmp_path, "test_finisher", open_pathology_store) as store:
        request = make_request([tmp_path / "s0.jpg"], 0.5, "lab")
        assert store.accept(request, "here", lease_s=30)
        job = request.job_id
        finishing = Finishing(store, tmp_path / "out")
        try:
            finishing.send(_failed_slide(job, "/slides/s0.jpg", "/slides/s0.jpg: bad \x00 byte"))
            kind, (job_id, index, _row) = finishing.next_told()
        finally:
            finishing.stop()
        assert (kind, job_id, index) == ("stored", job, 0)
        [stored] = store.slide_results(job)
    assert stored["error"].startswith("/slides/s0.jpg: its result could not be stored "
                                      "(DataError: PostgreSQL text fields cannot contain NUL")
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.pathology.finisher"]
    assert len(said) == 1, said  # the refusal, once; no outage
    assert "stored as failed" in said[0]


def test_a_slide_the_store_refuses_even_as_failed_fails_its_job_with_the_reason(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """A slide of a job the store does not hold (its row is gone: the store was replaced
    under the server) breaks the slide's foreign key, as a failed row does too
    (IntegrityError): that was retried as an outage each second, for ever. Now the finisher
    tells the server that the run cannot be stored, with the reason, and goes on."""
    finishing = Finishing(store, tmp_path / "out")
    try:
        finishing.send(_failed_slide("gone", "/slides/s0.jpg", "/slides/s0.jpg: corrupt"))
        kind, (job_id, run_id, reason) = finishing.next_told()
        request = make_request([tmp_path / "s1.jpg"], 0.5, "lab")  # the next job is stored
        assert store.accept(request, "here", lease_s=30)
        finishing.send(_failed_slide(request.job_id, "/slides/s1.jpg", "/slides/s1.jpg: corrupt"))
        assert finishing.next_told()[0] == "stored"
    finally:
        finishing.stop()
    assert (kind, job_id, run_id) == ("unstored", "gone", 1)
    assert reason.startswith("slide 0 (s0) could not be stored, not even as failed (")
    assert "FOREIGN KEY" in reason.upper()
    assert store.slide_results("gone") == []


@pytest.mark.postgres
def test_a_read_only_postgresql_server_is_waited_out_as_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A standby after a failover refuses every write (ReadOnlySqlTransaction) until it is
    promoted or the connection is made again to the new primary: an outage, not the row's
    fault. The slide waits, the finisher reconnects, and it is stored, not failed."""
    with fresh_store("postgres", tmp_path, "test_finisher", open_pathology_store) as store:
        request = make_request([tmp_path / "s0.jpg"], 0.5, "lab")
        assert store.accept(request, "here", lease_s=30)
        store._conn.execute("SET default_transaction_read_only TO on")  # noqa: SLF001 - a standby
        finishing = Finishing(store, tmp_path / "out")
        try:
            finishing.send(_failed_slide(request.job_id, "/slides/s0.jpg", "/slides/s0.jpg: x"))
            kind, _ = finishing.next_told()
        finally:
            finishing.stop()
        [stored] = store.slide_results(request.job_id)
    assert (kind, stored["error"]) == ("stored", "/slides/s0.jpg: x")
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.pathology.finisher"]
    assert "storing a slide result failed (cannot execute INSERT in a read-only transaction)" \
        in said[0], said
    assert "answers again after 1 failed tries" in said[1], said


def test_a_slide_whose_outputs_the_guard_cannot_read_fails_saying_why_and_the_next_is_scored(
    store: PathologyStore, tmp_path: Path,
) -> None:
    """A model whose out-of-distribution guard was fitted on features of another size than
    the model gives (a guard fitted for another variant of it): the guard raised GuardError on
    every batch, the finisher lost the batch with a line in its log, and every slide in it, and
    so every job, waited for ever. Now such a slide fails saying why, and a later one whose
    features fit is scored."""
    guard = DistributionGuard(np.zeros((2, 3)), np.eye(3), np.linspace(0.0, 9.0, 201))
    guarded = ModelInfo("test", "1", ("MSS", "MSI"), TILE_PX, 4.0, 0.5, REFERENCE, guard)
    misfit, fit = (make_request([tmp_path / "s0.jpg"], 0.5, "lab") for _ in range(2))
    for request in (misfit, fit):
        assert store.accept(request, "here", lease_s=30)
    finishing = Finishing(store, tmp_path / "out", guarded)
    try:
        finishing.send(_slide(misfit.job_id, 1, tiles=2), _slide(fit.job_id, 1, tiles=2),
                       _outputs(misfit.job_id, 1, range(0, 2), 0.9, np.zeros((2, 2), np.float32)),
                       _outputs(fit.job_id, 1, range(0, 2), 0.9, np.zeros((2, 3), np.float32)))
        told = [finishing.next_told(), finishing.next_told()]
    finally:
        finishing.stop()
    assert [(kind, job_id) for kind, (job_id, _, _) in told] == [
        ("stored", misfit.job_id), ("stored", fit.job_id)]
    [failed], [scored] = store.slide_results(misfit.job_id), store.slide_results(fit.job_id)
    assert failed["error"] == ("/slides/s0.jpg: its tiles could not be scored (GuardError: "
                               "features of shape (2, 2); the guard expects N x 3)")
    assert (scored["error"], scored["label"]) == ("", "MSI")
