"""The preparation worker processes: a worker that dies at any moment of a call fails that call
only, and the next call gets a new worker (appliance/pathology/workerpool.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from appliance.pathology.workerpool import (
    PreparationWorkers,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
)
from tests import pathology_worker_hooks as hooks


@pytest.fixture
def workers() -> Iterator[PreparationWorkers]:
    with PreparationWorkers(2) as pool:
        yield pool


@pytest.fixture
def one_worker() -> Iterator[PreparationWorkers]:
    with PreparationWorkers(1) as pool:
        yield pool


def test_a_worker_killed_while_it_sends_its_answer_fails_that_call_and_no_other(
    workers: PreparationWorkers,
) -> None:
    # a process pool whose workers share one result pipe waited for the rest of such an
    # answer for ever: no call ended again
    killed = workers.submit(hooks.die_while_answering, 4_000_000)
    other = workers.submit(hooks.answer, "prepared")
    with pytest.raises(WorkerDiedError, match=r"\(pid \d+\) died: killed by SIGKILL"):
        killed.result(timeout=60)
    assert other.result(timeout=60) == "prepared"
    assert [workers.submit(hooks.answer, n).result(timeout=60) for n in range(3)] == [0, 1, 2]


def test_a_worker_killed_as_it_takes_its_call_fails_that_call(
    one_worker: PreparationWorkers,
) -> None:
    with pytest.raises(WorkerDiedError, match="killed by SIGKILL"):
        one_worker.submit(hooks.answer, hooks.DiesWhenTaken()).result(timeout=60)
    assert one_worker.submit(hooks.answer, "next").result(timeout=60) == "next"


def test_a_call_whose_worker_is_killed_once_is_answered_by_a_new_worker(
    one_worker: PreparationWorkers, tmp_path: Path,
) -> None:
    """The kernel may kill a worker for another's memory: its call is tried once more."""
    marker = tmp_path / "killed-once"
    answered_by = one_worker.submit(hooks.die_the_first_time, str(marker)).result(timeout=60)
    assert marker.exists()  # the first worker made it, then was killed
    assert one_worker.worker_pids() == [answered_by]


def test_a_call_that_kills_every_worker_fails_after_its_second_try(
    one_worker: PreparationWorkers,
) -> None:
    with pytest.raises(WorkerDiedError, match=r"^tried twice: the preparation worker \(pid "
                       r"(\d+)\) died: killed by SIGKILL; then the preparation worker \(pid "
                       r"(?!\1)\d+\) died: killed by SIGKILL$"):
        one_worker.submit(hooks.die_now).result(timeout=60)
    assert one_worker.submit(hooks.answer, "next").result(timeout=60) == "next"


def test_a_call_past_the_time_limit_ends_its_worker_and_the_next_call_gets_a_new_one() -> None:
    with PreparationWorkers(1, call_limit_s=1.0) as pool:
        first = pool.submit(os.getpid).result(timeout=60)
        with pytest.raises(WorkerTimeoutError, match=rf"^ran past its time limit of 1 s; its "
                           rf"worker \(pid {first}\) was ended$"):
            pool.submit(time.sleep, 120).result(timeout=60)
        assert wait_until(lambda: first not in _living([first]), 30, poll_s=0.05), \
            f"worker {first} still runs past the time limit"
        second = pool.submit(os.getpid).result(timeout=60)
        assert second != first
        assert pool.worker_pids() == [second]


def test_a_worker_killed_while_idle_fails_no_call_and_is_replaced(
    one_worker: PreparationWorkers,
) -> None:
    first = one_worker.submit(os.getpid).result(timeout=60)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: first not in _living(one_worker.worker_pids()), 30, poll_s=0.05), \
        f"worker {first} still runs after SIGKILL"
    second = one_worker.submit(os.getpid).result(timeout=60)
    assert second != first
    assert one_worker.worker_pids() == [second]


def test_an_error_in_a_call_fails_that_call_and_the_worker_goes_on(
    one_worker: PreparationWorkers,
) -> None:
    before = one_worker.submit(os.getpid).result(timeout=60)
    with pytest.raises(WorkerError, match=r"^ValueError: no tissue$") as failed:
        one_worker.submit(hooks.fail, "no tissue").result(timeout=60)
    assert 'in fail\n    raise ValueError(text)' in str(failed.value.__cause__)  # the log shows it
    assert one_worker.submit(os.getpid).result(timeout=60) == before


def test_shutdown_ends_a_busy_worker_and_cancels_the_waiting_calls() -> None:
    pool = PreparationWorkers(1)
    busy = pool.submit(time.sleep, 30)
    waiting = pool.submit(hooks.answer, "never")
    while not busy.running():
        time.sleep(0.01)
    pool.shutdown()
    with pytest.raises(WorkerDiedError, match="killed by SIGTERM"):
        busy.result(timeout=0)
    assert waiting.cancelled()
    assert pool.worker_pids() == []


def _living(pids: list[int]) -> list[int]:
    """The pids still running: a worker that died is gone once its fork server reaped it."""
    living = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        living.append(pid)
    return living
