"""`synthetic/pool_stop.run_in_order` names the worker whose death broke its pool, and only it:
not the workers the pool then ended itself."""

from __future__ import annotations

import multiprocessing.connection
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import pytest

from appliance.edge.testing import wait_until
from appliance.synthetic.pool_stop import _ended_workers, run_in_order


@pytest.mark.slow  # starts two worker processes (spawn), one killed with SIGKILL
def test_a_worker_killed_while_no_job_is_pending_is_named_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With no job pending when a worker died, no job failed with it: the next submit did, and
    # by then the pool had ended the other worker itself (SIGTERM). The run named both
    # ('worker process A was killed by SIGKILL ...; worker process B was killed by SIGTERM'),
    # as if two had been killed.
    pools: list[ProcessPoolExecutor] = []
    submitted: list[Future[Any]] = []
    submit = ProcessPoolExecutor.submit

    def kept(pool: ProcessPoolExecutor, *args: Any, **kwargs: Any) -> Future[Any]:
        pools.append(pool)
        future = submit(pool, *args, **kwargs)
        submitted.append(future)
        return future

    monkeypatch.setattr(ProcessPoolExecutor, "submit", kept)
    killed: list[int] = []

    def jobs() -> Iterator[tuple[()]]:
        yield ()
        yield ()  # one worker a job: two started
        assert wait_until(lambda: all(future.done() for future in submitted), 60)
        workers = list(pools[0]._processes.values())  # noqa: SLF001 - the pool's own workers
        assert len(workers) == 2
        killed.append(workers[0].pid)
        os.kill(workers[0].pid, signal.SIGKILL)
        sentinels = [worker.sentinel for worker in workers]  # waited on, not reaped: the pool's
        assert wait_until(lambda: len(multiprocessing.connection.wait(sentinels, 0)) == 2, 60)
        yield ()  # its submit fails: the pool broke

    run = run_in_order(os.getpid, jobs(), 2, keep_started=True)
    assert run.failed
    assert run.died == [
        f"worker process {killed[0]} was killed by SIGKILL (kill -9, or out of memory)"]


def test_a_job_failed_after_the_run_ended_the_others_names_only_the_killed_worker() -> None:
    # A submit that finds the pool broken (its manager thread marks the pool broken before it
    # fails the dead worker's jobs) makes the run end the other workers with SIGTERM; the
    # dead worker's job then failed with both ended, and the run named both ('worker process
    # B was killed by SIGTERM; worker process A was killed by SIGKILL ...': seen under xdist
    # in synth he's killed-worker test). A SIGTERM end beside another is the run's own doing.
    context = multiprocessing.get_context("spawn")
    workers = {number: context.Process(target=signal.pause) for number in range(2)}
    for worker in workers.values():
        worker.start()
    workers[1].terminate()  # what the run does to the others
    os.kill(workers[0].pid or 0, signal.SIGKILL)
    sentinels = [worker.sentinel for worker in workers.values()]
    assert wait_until(lambda: len(multiprocessing.connection.wait(sentinels, 0)) == 2, 60)
    assert _ended_workers(workers) == [
        f"worker process {workers[0].pid} was killed by SIGKILL (kill -9, or out of memory)"]


def test_workers_all_ended_by_sigterm_are_each_named() -> None:
    # with no other end beside them, a SIGTERM is what someone sent a worker: it is named
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=signal.pause)
    worker.start()
    worker.terminate()
    assert wait_until(lambda: bool(multiprocessing.connection.wait([worker.sentinel], 0)), 60)
    assert _ended_workers({0: worker}) == [f"worker process {worker.pid} was killed by SIGTERM"]
