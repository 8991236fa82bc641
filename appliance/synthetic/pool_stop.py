"""Run a generator's jobs in a small process pool that a stop signal (Ctrl-C, SIGTERM), a job
that fails or a worker that dies ends soon, without a traceback from each worker (``synth skin``,
``synth he`` and ``models skin-table`` share it)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Generic, TypeVar

import cv2

Result = TypeVar("Result")
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers
WORKER_DIED = "a worker process ended abruptly (killed, or out of memory)"
_POLL_S = 0.2  # how soon a stop signal is acted on while the pool works
_REAP_S = 5.0  # a worker whose end the pool saw is gone in microseconds; a guard only


def _start_worker() -> None:
    """Pool initializer: one OpenCV thread per worker, so workers do not oversubscribe cores;
    Ctrl-C (SIGINT to the whole foreground group) is left to the parent, which stops the
    run, instead of each worker dying with a traceback of its own."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class PoolRun(Generic[Result]):
    """What a run submitted: ``futures`` in the order of the jobs, each done, failed or
    cancelled (but for those handed to ``delivered``); ``failed`` in the order they failed (the
    first one ended the run); ``died``: the workers found ended when the pool broke (with no
    job pending then, those the pool did not end itself), each as 'worker process PID was
    killed by SIGKILL (...)', to name in what the command says."""

    futures: list[Future[Result]]
    failed: list[Future[Result]]
    died: list[str] = field(default_factory=list)


class WorkerDied(Exception):  # noqa: N818 - a process that ended, not an error of the code
    """A worker process ended abruptly (kill -9, the kernel's OOM killer); the message names it
    and how it ended."""


def worker_died(run: PoolRun[Result]) -> str:
    """What a run that a dead worker broke says of it: which worker and how it ended, where
    the pool saw it end; else WORKER_DIED."""
    return "; ".join(run.died) if run.died else WORKER_DIED


def raise_first_failure(run: PoolRun[Result]) -> None:
    """Raise the error of the job that ended ``run``, if one did: WorkerDied, naming the
    worker, where a dead worker broke the pool (the error every job it failed carries does
    not say which)."""
    if not run.failed:
        return
    error = run.failed[0].exception()
    assert error is not None  # noted because it failed
    if isinstance(error, BrokenProcessPool):  # kill -9, the kernel's OOM killer
        raise WorkerDied(worker_died(run)) from error
    raise error


def run_in_order(
    call: Callable[..., Result], jobs: Iterable[tuple[Any, ...]], workers: int, *,
    keep_started: bool, finished: Callable[[int], object] = lambda count: None,
    delivered: Callable[[Result], object] | None = None,
) -> PoolRun[Result]:
    """``call(*job)`` for each of ``jobs``, in a pool of ``workers`` processes, submitted in
    order; ``finished`` is told (in this thread) how many more have finished; ``delivered``,
    when given, is handed each result (in this thread, in the order of the jobs) as soon as it
    and those before it are done, and the run keeps no future of it.

    A job that fails (a worker killed fails them all) or a stop signal ends the run: the jobs
    queued but not started are dropped, and the ones started are finished when
    ``keep_started``, else their workers are ended at once (their results were to be thrown
    away, and finishing them could take the time of a job or more). Only a few jobs are
    queued ahead of the workers, not the whole run, so a stop or a failure leaves little to
    cancel. A stop signal is handed to the handler it replaced (KeyboardInterrupt, exit 130;
    SIGTERM's exit 143) once the pool has stopped (``_OrderedRun.note`` says why)."""
    runner = _OrderedRun(call, workers)
    queue = iter(jobs)
    # the stop handlers replaced while the pool runs, put back once it has stopped
    replaced = _set_stop_handlers({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: runner.note})
    try:
        runner.start_workers(queue, workers, replaced)
        room = _Room(runner.unfinished, runner.run, runner.stopped, finished, delivered)
        for job in queue:
            if not room.wait(3 * workers):  # drawn or queued at once: no worker waits
                break
            runner.submit(job)
        room.wait(1)  # the last jobs: none left unfinished
    finally:
        runner.close(keep_started)
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
    if runner.stopped:
        signal.raise_signal(runner.stopped[0])  # the handler it replaced ends the command
    return runner.run


class _OrderedRun(Generic[Result]):
    """The pool of one run, and what the run has seen: its jobs' futures, the unfinished ones
    and the stop signals noted while it ran."""

    def __init__(self, call: Callable[..., Result], workers: int) -> None:
        # "spawn": forking a process whose OpenCV thread pool is already running deadlocks the
        # child, and a forked worker kept the command's own stop handlers: the SIGTERM a pool
        # ends it with raised an exception that the worker caught, going on with its next job
        context = multiprocessing.get_context("spawn")
        self.call = call
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
        self.processes = self.pool._processes  # noqa: SLF001 - no public list before Python 3.14
        self.run: PoolRun[Result] = PoolRun([], [])
        self.unfinished: list[Future[Result]] = []  # at most ``in_flight``
        self.stopped: list[int] = []

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The stop handler while the pool runs: the signal is only noted, and raised once
        the pool has stopped. Raised wherever the main thread stood, the exception could land
        inside the pool's own bookkeeping, holding a future's lock, and ``shutdown`` then
        waited for that future forever (``synth skin`` hung after Ctrl-C)."""
        self.stopped.append(signum)

    def submit(self, job: tuple[Any, ...]) -> None:
        """Hand the pool ``call(*job)``; a pool already broken fails the job at once."""
        try:
            future = self.pool.submit(self.call, *job)
        except BrokenProcessPool as broken:  # a worker died since the last wait: this job too
            future = Future()
            future.set_exception(broken)
            self.run.failed.append(future)  # the dead worker is named once the pool has stopped
        else:
            future.add_done_callback(lambda done: _note_failure(done, self.run, self.processes))
        self.run.futures.append(future)
        self.unfinished.append(future)

    def start_workers(self, queue: Iterator[tuple[Any, ...]], workers: int,
                      replaced: dict[int, Any]) -> None:
        """Submit the first ``workers`` jobs, then note stop signals instead of ignoring SIGINT.

        A "spawn" pool starts a worker at each submit while none is idle, so the first
        ``workers`` submits start them all; they start with SIGINT ignored (an ignored signal
        stays ignored across exec, a handler does not), so a Ctrl-C while one still imports is
        no traceback of its own (one in these milliseconds is lost); SIGTERM stays theirs, so a
        pool can end them."""
        try:
            for job in islice(queue, workers):
                self.submit(job)
        finally:  # one the command ignored (under nohup, in the background) stays ignored
            _set_stop_handlers({signum: signal.SIG_IGN if old == signal.SIG_IGN else self.note
                                for signum, old in replaced.items()})

    def close(self, keep_started: bool) -> None:
        """Stop the pool: its started jobs finished, or (a stopped or failed run, not
        ``keep_started``) their workers ended; name the worker that broke it, if one did."""
        run = self.run
        if (self.stopped or run.failed) and not keep_started:
            _terminate_workers(self.processes)
        self.pool.shutdown(wait=True, cancel_futures=True)
        if run.failed and not run.died and isinstance(run.failed[0].exception(),
                                                      BrokenProcessPool):
            run.died.extend(_killed_workers(self.processes))


def _set_stop_handlers(handlers: dict[int, Handler]) -> dict[int, Any]:
    """Put ``handlers`` in place; the ones they replaced (none off the main thread, where
    signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}


@dataclass
class _Room(Generic[Result]):
    """Room in the pool for one more job: what the run waits for between submits."""

    unfinished: list[Future[Result]]
    run: PoolRun[Result]
    stopped: list[int]
    finished: Callable[[int], object]
    delivered: Callable[[Result], object] | None

    def wait(self, in_flight: int) -> bool:
        """Wait until fewer than ``in_flight`` jobs are unfinished (the finished ones are
        taken out and counted, and delivered in order); False when the run ends first (a stop
        signal, a job that failed). The wait wakes every ``_POLL_S`` to see a stop signal: its
        handler only notes it."""
        while not (self.stopped or self.run.failed):
            running = [future for future in self.unfinished if not future.done()]
            self.finished(len(self.unfinished) - len(running))
            self.unfinished[:] = running
            self._deliver()
            if len(running) < in_flight:
                return True
            wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        return False

    def _deliver(self) -> None:
        """Hand ``delivered`` the results at the head of the run that are done, up to the
        first one that is not (or failed), and forget their futures."""
        futures = self.run.futures
        while self.delivered is not None and futures and _succeeded(futures[0]):
            self.delivered(futures.pop(0).result())


def _succeeded(future: Future[Result]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _note_failure(
    future: Future[Result], run: PoolRun[Result], processes: Mapping[int, BaseProcess]
) -> None:
    """A job's future is done: note it when it failed, and when a dead worker failed it (the
    pool's manager thread tells it, before it ends the other workers), which one: before the
    failure is noted, as the run then ends the other workers itself."""
    if future.cancelled() or future.exception() is None:
        return
    if isinstance(future.exception(), BrokenProcessPool) and not run.died:
        run.died.extend(_ended_workers(processes))
    run.failed.append(future)


def _ended_workers(processes: Mapping[int, BaseProcess]) -> list[str]:
    """The pool's workers that have ended, each named by its pid and how it ended (an end the
    pool has seen: the process's sentinel is ready). Those ended by SIGTERM are left out
    where another ended otherwise: the run ends the rest with SIGTERM as soon as a submit
    finds the pool broken, which can come before the pool fails the dead worker's job."""
    workers = list(processes.values())
    ended = multiprocessing.connection.wait([worker.sentinel for worker in workers], timeout=0)
    gone = [worker for worker in workers if worker.sentinel in ended]
    for worker in gone:
        worker.join(_REAP_S)
    return _named(_not_ended_by_sigterm(gone) or gone)


def _killed_workers(processes: Mapping[int, BaseProcess]) -> list[str]:
    """Once the pool has stopped, the workers that ended by other means than the SIGTERM with
    which the pool ends the rest when it sees one dead (and the run ends those of a failed
    run): the one that broke the pool while no job was pending, so that no job failed with it
    then. A worker killed with SIGTERM itself is not told from the rest: none is named."""
    for worker in processes.values():
        worker.join(_REAP_S)  # the pool has joined it: a guard only
    return _named(_not_ended_by_sigterm(list(processes.values())))


def _not_ended_by_sigterm(workers: list[BaseProcess]) -> list[BaseProcess]:
    return [worker for worker in workers if worker.exitcode != -signal.SIGTERM]


def _named(workers: list[BaseProcess]) -> list[str]:
    """Each worker as 'worker process PID was killed by ...'."""
    return [f"worker process {worker.pid} {_how_it_ended(worker.exitcode)}" for worker in workers]


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode == -signal.SIGKILL:  # what the kernel's OOM killer sends too
        return "was killed by SIGKILL (kill -9, or out of memory)"
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"ended abruptly (exit status {exitcode})"


def _terminate_workers(processes: Mapping[int, BaseProcess]) -> None:
    """SIGTERM to each of the pool's workers, whose default action ends it at once (spawned,
    a worker has no handler of its own); the pool then fails their jobs. Python 3.14's
    ``ProcessPoolExecutor.terminate_workers`` does this; 3.11 keeps them only in a private
    name."""
    for process in list(processes.values()):
        process.terminate()
