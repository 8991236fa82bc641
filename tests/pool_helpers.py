"""Running a command whose process pool loses a worker: the pool's workers of a process, and the
command run until its workers draw, one killed with SIGKILL (as the kernel's OOM killer does);
a synthetic H&E slide that takes a minute to paint, and rows of `models skin-table` that take a
minute to draw or kill their worker, to act on while workers paint or draw."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.imagefile import temporary_of

REPO = Path(__file__).resolve().parents[1]


def pool_workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children  # spawned or forked, the tracker is neither
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def ctrl_c_when(command: list[str], env: dict[str, str], ready: Callable[[int], bool],
                settle_s: float = 0.0) -> tuple[int, str]:
    """Run ``command`` in a process group of its own (a terminal's foreground job), wait until
    ``ready(pid)``, ``settle_s`` more, then Ctrl-C the whole group; its exit code and stderr."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        while not ready(process.pid):
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        time.sleep(settle_s)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        _, err = process.communicate(timeout=300)  # a hang guard only, never reached
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, err


def kill_a_worker(arguments: list[str]) -> tuple[int, str, int]:
    """Run ``appliance ARGUMENTS``, SIGKILL one pool worker once two are drawing, and return the
    exit code, stderr and the pid of the worker killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "appliance", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while len(workers := pool_workers(process.pid)) < 2:  # both spawned
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        time.sleep(3.0)  # past their imports: drawing frames
        os.kill(workers[0], signal.SIGKILL)
        _, err = process.communicate(timeout=300)  # a hang guard only, never reached
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err, workers[0]


PAINTING = "painting"  # beside a cohort: a file named by the pid of each worker painting a slide


def painting_for_a_minute(job: tuple[Any, Path, int]) -> None:
    """In place of ``he._write_slide`` (a worker imports it from here): a slide whose hidden
    temporary is written at once and put in place a minute later, so a worker that is not ended
    at once finishes it (after it has noted its pid in PAINTING)."""
    spec, out_dir, _ = job
    slide = out_dir / f"{spec.slide}.jpg"
    temporary_of(slide).write_bytes(b"half a slide")
    (out_dir.parent / PAINTING / str(os.getpid())).touch()
    time.sleep(60)
    temporary_of(slide).replace(slide)


def when_two_paint(folder: Path, act: Callable[[list[int]], object]) -> threading.Event:
    """In a thread: ``act`` on the pids of the workers once two paint a slide (noted in
    ``folder``/PAINTING by painting_for_a_minute); set the Event returned to give up waiting."""
    (folder / PAINTING).mkdir()
    given_up = threading.Event()

    def wait_and_act() -> None:
        while not given_up.wait(0.05):
            pids = [int(path.name) for path in (folder / PAINTING).iterdir()]
            if len(pids) >= 2:
                act(pids)
                return

    threading.Thread(target=wait_and_act, daemon=True).start()
    return given_up


ROWS_NOTED = "APPLIANCE_TEST_ROWS_NOTED"  # environment: the folder the row hooks note rows in
DRAWN = "drawn"  # in it: a file named by the index of each row drawn whole


def drawing_for_a_minute(spec: Any, index: int) -> tuple[dict[str, float], dict[str, float]]:
    """In place of ``grades.frame_row`` (a worker imports it from here): a row that takes a
    minute, after its worker has noted its pid in PAINTING; noted in DRAWN when it is done, so
    a worker that is not ended at once finishes it."""
    folder = Path(os.environ[ROWS_NOTED])
    (folder / PAINTING / str(os.getpid())).touch()
    time.sleep(60)
    return _drawn(index)


def first_row_for_a_minute(spec: Any, index: int) -> tuple[dict[str, float], dict[str, float]]:
    """In place of ``grades.frame_row``: row 0 takes a minute (drawing_for_a_minute), the
    others none, so a second worker is soon left waiting for a row."""
    return drawing_for_a_minute(spec, index) if index == 0 else _drawn(index)


def dying_on_the_first_row(spec: Any, index: int) -> tuple[dict[str, float], dict[str, float]]:
    """In place of ``grades.frame_row``: row 0 notes its worker's pid in PAINTING and kills
    that worker with SIGKILL, as the kernel's OOM killer would; the others take no time."""
    if index == 0:
        (Path(os.environ[ROWS_NOTED]) / PAINTING / str(os.getpid())).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return _drawn(index)


def _drawn(index: int) -> tuple[dict[str, float], dict[str, float]]:
    """An empty row, noted in DRAWN (a stopped table is never built from it)."""
    (Path(os.environ[ROWS_NOTED]) / DRAWN / str(index)).touch()
    return {}, {}


TAKEN = "taken"  # beside DRAWN: a file named by the index of each row the command has taken


def last_row_after_the_first_is_taken(
    spec: Any, index: int
) -> tuple[dict[str, float], dict[str, float]]:
    """In place of ``grades.frame_row``: row ``index`` as {"index": index}; the last row waits
    (a minute at most) until the command has taken row 0 (noted in TAKEN), and says whether
    it saw that: {"saw_row_0_taken": 1.0}."""
    if index < spec.rows - 1:
        return {"index": float(index)}, {}
    taken = Path(os.environ[ROWS_NOTED]) / TAKEN / "0"
    deadline = time.monotonic() + 60
    while not taken.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"index": float(index)}, {"saw_row_0_taken": float(taken.exists())}
