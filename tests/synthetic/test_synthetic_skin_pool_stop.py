"""`appliance synth skin --workers N` stops the series at the first frame it cannot write, and
at Ctrl-C, instead of drawing every frame left (hours for a long series) before it says so."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.synthetic.pool_stop import PoolRun, run_in_order
from appliance.synthetic.skin import synthetic_frame, write_frame
from appliance.synthetic.skin_pool import (
    SeriesIncomplete,
    _keep_up_to_the_first_failure,
    write_one,
    write_series,
)
from tests.pool_helpers import ctrl_c_when, kill_a_worker

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # starts two worker processes (spawn) and draws a few frames
def test_a_frame_that_cannot_be_written_ends_the_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    (out / "skin-3-00001.jpg").mkdir()  # frame 1 cannot take its name; frames 2-59 could
    code = main(["synth", "skin", "--out", str(out), "--count", "60", "--seed", "3",
                 "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "skin-3-00001.jpg" in err
    # frame 2 and after, drawn while frame 1 failed, are removed again: no series with a gap
    assert sorted(path.name for path in out.iterdir()) == [
        "skin-3-00000.jpg", "skin-3-00000.json", "skin-3-00001.jpg"]  # that one, the folder
    removed = re.search(r"frame 0 is written whole \((\d+) written after frame 1 removed", err)
    assert removed is not None, err
    # only the frames being drawn or queued when it failed were finished, not the other 50-odd
    assert int(removed[1]) <= 20, err
    assert err.endswith("so the series has no gap); finish with --start 1 --count 59\n")


@pytest.mark.slow  # a real process group and its spawned workers
def test_ctrl_c_stops_the_series_without_a_traceback_per_worker(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code, err = ctrl_c_when(
        [sys.executable, "-m", "appliance", "synth", "skin", "--out", str(out), "--count",
         "2000", "--seed", "3", "--workers", "2"],
        env, lambda pid: bool(list(out.glob("*.json"))))  # the workers are drawing
    assert code == 130, err
    assert "Traceback" not in err, err
    assert len(list(out.glob("*.json"))) < 2000
    assert not list(out.glob(".*")), "a temporary file was left behind"



@pytest.mark.slow  # starts two worker processes (spawn) and draws a few frames
def test_ctrl_c_on_a_long_series_finds_only_a_few_frames_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The whole series was queued before the first frame was waited for: a million futures
    # (seconds of submitting, memory a frame), and a Ctrl-C raised KeyboardInterrupt wherever
    # the main thread stood in the pool's bookkeeping, where it could leave a future's lock held
    # and shutdown wait forever. Now a few frames are queued ahead of the two workers, and the
    # signal is acted on between the pool's calls.
    submitted: list[int] = []
    submit = ProcessPoolExecutor.submit

    def counted(pool: ProcessPoolExecutor, *args: object, **kwargs: object) -> Future[object]:
        submitted.append(1)
        return submit(pool, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", counted)
    out = tmp_path / "frames"
    out.mkdir()

    def ctrl_c_after_the_first_frame() -> None:
        while not list(out.glob("*.json")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_after_the_first_frame, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        write_series(out, 3, range(1_000_000), "normal", 2)
    written = len(list(out.glob("*.json")))
    assert written < 100
    assert len(submitted) <= written + 3 * 2 + 1  # those written, the six in flight, one more
    assert not list(out.glob(".*")), "a temporary file was left behind"


@pytest.mark.slow  # a real worker killed with SIGKILL
def test_a_worker_killed_ends_the_series_with_what_is_kept_not_a_traceback(
    tmp_path: Path,
) -> None:
    # It said 'a worker process ended abruptly (killed, or out of memory)': which one, and
    # after how many frames?
    out = tmp_path / "frames"
    code, err, killed = kill_a_worker(["synth", "skin", "--out", str(out), "--count", "2000",
                                       "--seed", "3", "--workers", "2"])
    assert code == 1, err
    assert "Traceback" not in err, err
    kept = sorted(path.name for path in out.glob("*.json"))
    assert kept == [f"skin-3-{index:05d}.json" for index in range(len(kept))]  # no gap
    assert err.startswith(
        f"synth skin: writing to {str(out)!r} failed: worker process {killed} "
        f"was killed by SIGKILL (kill -9, or out of memory) after {len(kept)} of 2000 frames "
        "were written; the ones being drawn are not kept; "), err
    assert err.endswith(f"; finish with --start {len(kept)} --count {2000 - len(kept)}\n")


def test_a_frame_put_in_place_as_the_pool_broke_is_removed_with_the_rest(tmp_path: Path) -> None:
    # A worker killed: the pool fails every pending future, and another worker may have put its
    # frame in place just before the pool stopped it. No future reports that frame, so it stayed
    # after the error had said the series ends before it (seen once: 21 frames on disk, the
    # message said 20 and --start 20); with a frame after it lost, a hole.
    frames = [write_frame(synthetic_frame(3, index, "normal"), tmp_path)[0] for index in range(3)]
    done: Future[Path] = Future()
    done.set_result(frames[0])
    broken: list[Future[Path]] = [Future(), Future()]
    for future in broken:  # frames 1 and 2: on disk, their futures failed with the pool
        future.set_exception(BrokenProcessPool("a worker died"))
    with pytest.raises(SeriesIncomplete) as stop:
        _keep_up_to_the_first_failure(tmp_path, 3, range(3), PoolRun([done, *broken], broken))
    assert list(stop.value.kept) == [0]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "skin-3-00000.jpg", "skin-3-00000.json"]


def test_the_temporaries_a_killed_worker_left_are_removed_with_its_frame(tmp_path: Path) -> None:
    # A worker killed with SIGKILL while writing leaves its hidden temporary (only an exception
    # removes it): seen as ".skin-3-00004.json.x1y2.tmp.json" beside the kept series.
    frames = [write_frame(synthetic_frame(3, index, "normal"), tmp_path)[0] for index in range(1)]
    for name in ("skin-3-00001.jpg", "skin-3-00001.json"):
        suffix = Path(name).suffix
        (tmp_path / f".{name}.a1b2c3.tmp{suffix}").write_bytes(b"half")
    (tmp_path / ".notes.txt.a1b2c3.tmp.txt").write_bytes(b"not the series'")
    done: Future[Path] = Future()
    done.set_result(frames[0])
    killed: Future[Path] = Future()
    killed.set_exception(BrokenProcessPool("a worker died"))
    with pytest.raises(SeriesIncomplete):
        _keep_up_to_the_first_failure(tmp_path, 3, range(2), PoolRun([done, killed], [killed]))
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".notes.txt.a1b2c3.tmp.txt", "skin-3-00000.jpg", "skin-3-00000.json"]


def test_every_worker_starts_with_ctrl_c_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "spawn" pool starts one worker a submit (while none is idle): only the first started
    # with SIGINT ignored, so a Ctrl-C while the second still imported gave it a traceback of
    # its own. The disposition each worker inherits is the parent's as it is started.
    seen: list[object] = []
    start = ProcessPoolExecutor._spawn_process  # type: ignore[attr-defined]  # noqa: SLF001 - where a worker starts

    def spawn(pool: ProcessPoolExecutor) -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        start(pool)

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", spawn)
    handler = signal.getsignal(signal.SIGINT)
    run_in_order(write_one, ((tmp_path, 3, index, "normal") for index in range(4)), 2,
                 keep_started=True)
    assert seen == [signal.SIG_IGN, signal.SIG_IGN]
    assert signal.getsignal(signal.SIGINT) is handler  # the parent's own, back
    assert len(list(tmp_path.glob("skin-3-*.jpg"))) == 4
