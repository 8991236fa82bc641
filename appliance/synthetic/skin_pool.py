"""Write a series of synthetic skin frames, in a small process pool on multi-core machines."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from appliance.outfile import temp_name_part
from appliance.synthetic.pool_stop import PoolRun, run_in_order, worker_died
from appliance.synthetic.skin import frame_name, synthetic_frame, write_frame


def write_one(out_dir: Path, seed: int, index: int, preset: str) -> Path:
    """Generate frame ``index`` of series ``seed``, save it with its sidecar; return the JPEG."""
    image_path, _ = write_frame(synthetic_frame(seed, index, preset), out_dir)
    return image_path


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
    frames = ((out_dir, seed, index, preset) for index in indices)
    run = run_in_order(write_one, frames, min(jobs, len(indices)), keep_started=True)
    _keep_up_to_the_first_failure(out_dir, seed, indices, run)
    return len(indices)


def _keep_up_to_the_first_failure(
    out_dir: Path, seed: int, indices: Sequence[int], run: PoolRun[Path]
) -> None:
    """Nothing when every frame was written; else remove the frames on disk from the first one
    that was not written on and raise SeriesIncomplete (the error itself when it is neither the
    disk's, an OSError, nor a dead worker's, BrokenProcessPool: the reason then names the
    worker and how many frames were written before it).

    Every frame from the gap on is removed, not only those whose future says written: when a
    worker dies the pool fails the futures of the others too, and one of them may have put its
    frame in place just before the pool stopped it (a frame on disk that no future reports)."""
    futures = run.futures
    settled = [None if future.cancelled() else future.exception() for future in futures]
    gap = next((place for place, future in enumerate(futures)
                if future.cancelled() or settled[place] is not None), None)
    if gap is None:
        return
    failed, reason = next((place, error) for place, error in enumerate(settled) if error)
    removed = [index for index in indices[gap:] if _remove_frame(out_dir, seed, index)]
    if isinstance(reason, BrokenProcessPool):  # kill -9, the kernel's OOM killer
        said = (f"{worker_died(run)} after {gap} of {len(indices)} frames were written; the "
                "ones being drawn are not kept")
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
