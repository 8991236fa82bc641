"""Write a series of synthetic skin frames, in a small process pool on multi-core machines."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import cv2

from appliance.synthetic.skin import synthetic_frame, write_frame


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


def write_series(out_dir: Path, seed: int, indices: Sequence[int], preset: str, jobs: int) -> int:
    """Write every frame of ``indices`` to ``out_dir`` with ``jobs`` processes; return the count."""
    if jobs == 1 or len(indices) == 1:
        for index in indices:
            write_one(out_dir, seed, index, preset)
        return len(indices)
    # "spawn": forking a process whose OpenCV thread pool is already running deadlocks the child.
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(indices))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded_opencv)
    try:
        # the first submit starts every worker; they start with SIGINT ignored (an ignored
        # signal stays ignored across exec), so a Ctrl-C while one still imports is no
        # traceback of its own; the parent's own Ctrl-C handling is back once they run
        parent_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            futures = [pool.submit(write_one, out_dir, seed, indices[0], preset)]
        finally:
            signal.signal(signal.SIGINT, parent_handler)
        futures += [pool.submit(write_one, out_dir, seed, index, preset) for index in indices[1:]]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)  # all, or the first that failed
        for future in futures:
            if future in done:
                future.result()  # raises the failure of the first frame that failed
    finally:
        # A frame that could not be written (a full disk) or Ctrl-C ends the series: the frames
        # not yet started are dropped, only those being drawn are finished (whole), rather than
        # drawing every remaining frame of a long series before the error is said.
        pool.shutdown(wait=True, cancel_futures=True)
    return len(indices)
