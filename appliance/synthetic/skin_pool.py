"""Write a series of synthetic skin frames, in a small process pool on multi-core machines."""

from __future__ import annotations

import glob
import multiprocessing
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import FrameType
from typing import Any

import cv2

from appliance.outfile import temp_name_part
from appliance.synthetic.skin import frame_name, synthetic_frame, write_frame


def _single_threaded_opencv() -> None:
    """Pool initializer: one OpenCV thread per worker, so workers do not oversubscribe cores;
    Ctrl-C (SIGINT to the whole foreground group) is left to the parent, which stops the
    series, instead of each worker dying with a traceback of its own."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_one(out_dir: Path, seed: int, index: int, preset: str) -> Path:
    """Generate frame ``index`` of series ``seed``, save it with its sidecar; return the JPEG."""
    image_path, _ = write_frame(synthetic_frame(seed, index, preset), out_dir)
    return image_path


Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers
WORKER_DIED = "a worker process ended abruptly (killed, or out of memory)"


class SeriesIncomplete(Exception):  # noqa: N818 - a series, not an error of the code
    """A frame of the series could not be written (``reason`` says why: the file and the disk's
    error, or a worker that died).

    What the run leaves is the frames before it, ``kept``, and none after: frames that other
    workers finished after the failed one were removed (``removed`` of them), so the folder never
    holds a series with a hole in it.
    """

    def __init__(self, failed: int, reason: str, kept: Sequence[int], removed: int):
        super().__init__(failed, reason, kept, removed)
        self.failed, self.reason, self.kept, self.removed = failed, reason, kept, removed


def write_series(out_dir: Path, seed: int, indices: Sequence[int], preset: str, jobs: int) -> int:
    """Write every frame of ``indices`` to ``out_dir`` with ``jobs`` processes; return the count.

    SeriesIncomplete when one cannot be written; the frames before it are left whole.
    """
    if jobs == 1 or len(indices) == 1:
        for place, index in enumerate(indices):
            try:
                write_one(out_dir, seed, index, preset)
            except OSError as exc:
                raise SeriesIncomplete(index, str(exc), indices[:place], 0) from exc
        return len(indices)
    futures = _write_in_pool(out_dir, seed, indices, preset, jobs)
    _keep_up_to_the_first_failure(out_dir, seed, indices, futures)
    return len(indices)


def _write_in_pool(
    out_dir: Path, seed: int, indices: Sequence[int], preset: str, jobs: int
) -> list[Future[Path]]:
    """The futures of the frames submitted, in order, each done, failed or cancelled once this
    returns: one a frame, or fewer when a frame failed (the frames after were never queued).

    Only a few frames are queued ahead of the workers, not the whole series, so a stop or a
    failure leaves little to cancel. A stop signal (Ctrl-C, SIGTERM) is only noted while the
    pool runs and handed to the handler it replaced (KeyboardInterrupt, exit 130; SIGTERM's
    exit 143) once the pool has stopped: raised wherever the main thread stood, the exception
    could land inside the pool's own bookkeeping, holding a future's lock, and ``shutdown``
    then waited for that future forever (the command hung after Ctrl-C)."""
    # "spawn": forking a process whose OpenCV thread pool is already running deadlocks the child.
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(indices))
    in_flight = 3 * workers  # drawn or queued at once: no worker waits for its next frame
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded_opencv)
    futures: list[Future[Path]] = []
    unfinished: list[Future[Path]] = []  # at most ``in_flight``
    failed: list[Future[Path]] = []
    stopped: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)

    def submit(index: int) -> None:
        future = pool.submit(write_one, out_dir, seed, index, preset)
        future.add_done_callback(lambda done: _note_failure(done, failed))
        futures.append(future)
        unfinished.append(future)

    # a "spawn" pool starts a worker at each submit while none is idle, so the first ``workers``
    # submits start them all; they start with SIGINT ignored (an ignored signal stays ignored
    # across exec, a handler does not), so a Ctrl-C while one still imports is no traceback of
    # its own (one in these milliseconds is lost); SIGTERM stays theirs, so a pool can end them
    replaced = _set_stop_handlers({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: note})
    try:
        try:
            for index in indices[:workers]:
                submit(index)
        finally:  # one the command ignored (under nohup, in the background) stays ignored
            _set_stop_handlers({signum: signal.SIG_IGN if old == signal.SIG_IGN else note
                                for signum, old in replaced.items()})
        for index in indices[workers:]:
            if not _room_for_one(unfinished, in_flight, failed, stopped):
                break
            submit(index)
        _room_for_one(unfinished, 1, failed, stopped)  # the last frames: none left unfinished
    finally:
        # A frame that could not be written (a full disk) or a stop ends the series: the frames
        # queued but not started are dropped, only those being drawn are finished (whole),
        # rather than drawing every remaining frame of a long series before the error is said.
        pool.shutdown(wait=True, cancel_futures=True)
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
    if stopped:
        signal.raise_signal(stopped[0])  # the handler it replaced ends the command
    return futures


_POLL_S = 0.2  # how soon a stop signal is acted on while the pool draws


def _set_stop_handlers(handlers: dict[int, Handler]) -> dict[int, Any]:
    """Put ``handlers`` in place; the ones they replaced (none off the main thread, where
    signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}


def _room_for_one(unfinished: list[Future[Path]], in_flight: int, failed: list[Future[Path]],
                  stopped: list[int]) -> bool:
    """Wait until fewer than ``in_flight`` of ``unfinished`` are unfinished (the finished ones
    are taken out of it); False when the series ends first (a stop signal, a frame that failed).

    The wait wakes every ``_POLL_S`` to see a stop signal: its handler only notes it."""
    while not (stopped or failed):
        unfinished[:] = [future for future in unfinished if not future.done()]
        if len(unfinished) < in_flight:
            return True
        wait(unfinished, timeout=_POLL_S, return_when=FIRST_COMPLETED)
    return False


def _note_failure(future: Future[Path], failed: list[Future[Path]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        failed.append(future)


def _keep_up_to_the_first_failure(
    out_dir: Path, seed: int, indices: Sequence[int], futures: Sequence[Future[Path]]
) -> None:
    """Nothing when every frame was written; else remove the frames on disk from the first one
    that was not written on and raise SeriesIncomplete (the error itself when it is neither the
    disk's, an OSError, nor a dead worker's, BrokenProcessPool).

    Every frame from the gap on is removed, not only those whose future says written: when a
    worker dies the pool fails the futures of the others too, and one of them may have put its
    frame in place just before the pool stopped it (a frame on disk that no future reports)."""
    settled = [None if future.cancelled() else future.exception() for future in futures]
    gap = next((place for place, future in enumerate(futures)
                if future.cancelled() or settled[place] is not None), None)
    if gap is None:
        return
    failed, reason = next((place, error) for place, error in enumerate(settled) if error)
    removed = [index for index in indices[gap:] if _remove_frame(out_dir, seed, index)]
    if isinstance(reason, BrokenProcessPool):  # kill -9, the kernel's OOM killer
        said = f"{WORKER_DIED}; the frames it was drawing are not written"
    elif isinstance(reason, OSError):
        said = str(reason)
    else:  # a bug: not the disk's doing nor a killed worker's
        raise reason
    raise SeriesIncomplete(indices[failed], said, indices[:gap], len(removed)) from reason


def _remove_frame(out_dir: Path, seed: int, index: int) -> bool:
    """Remove frame ``index`` and its sidecar where they are files (a folder in a frame's place
    stays), and the hidden temporaries of either that a worker killed while writing left
    (``outfile.replaced_when_complete`` removes its own unless the process dies); whether the
    image was there."""
    image_path = out_dir / f"{frame_name(seed, index)}.jpg"
    written = image_path.is_file()
    for path in (image_path, image_path.with_suffix(".json")):
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
        for temp in out_dir.glob(f".{glob.escape(temp_name_part(path.name))}.*.tmp{path.suffix}"):
            if temp.is_file():
                temp.unlink(missing_ok=True)
    return written
