"""The preparation worker processes of ``appliance pathology serve``: each is fed one call at a
time over a pipe of its own, so a worker that dies at any moment (killed by the kernel: out of
memory on a huge slide) fails only the call it held, and the next call starts a new worker.

Why not ``concurrent.futures.ProcessPoolExecutor``: its workers share one result pipe and one
lock around it. A worker killed while it wrote a prepared slide back (megabytes, written piece
by piece as the reader takes them) left half a message in that pipe and the lock held: the
pool's manager thread waited for the rest for ever, no future ended, the other workers blocked
on the lock, and the job stayed "running" at 0 slides. Here a worker is the only writer of its
pipe, so when it dies, whatever it was doing, its pipe ends (EOFError) and its call fails
saying how the process ended.

A call may be given a time limit: a slide whose decoding runs past it (a codec's own loop
within every bound on the file) ends its worker, which is replaced for the next call. A worker
that dies during a call is the kernel's doing as often as the slide's (out of memory while
another worker held the rest), so its call is tried once more in a new worker; a second death
fails it, saying it was tried twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)
Result = TypeVar("Result")


class WorkerError(Exception):
    """A call failed in its worker process; the message says with which error."""


class WorkerTracebackError(Exception):
    """Where in the worker process an error was raised: the cause of its ``WorkerError``, so
    the server's log shows the worker's own traceback."""


class WorkerDiedError(WorkerError):
    """The worker process died before its call's answer was in; the message says how."""


class WorkerTimeoutError(WorkerError):
    """The call ran past its time limit; its worker was ended (the message says which)."""


def worker_context() -> multiprocessing.context.BaseContext:
    """Preparation workers start from a fork server, never by forking this process.

    This process runs threads (paho's network loop, the inference runner, ONNX Runtime's pool);
    a child forked while one of them holds a lock can hang forever, which stalled a job here.
    The fork server is a clean single-threaded process that has imported the worker modules once.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["appliance.pathology.slideworker", __name__])
    return context


def serve_calls(connection: Connection) -> None:
    """A worker process's life: run each call the server sends and send back its result, or
    the error it raised (as text, with its traceback), until the server closes the pipe.
    Ctrl-C in the terminal reaches the whole process group: the server stops on it and then
    ends its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            function, args, kwargs = connection.recv()
        except EOFError:
            return
        try:
            answer: tuple[Any, str] = (function(*args, **kwargs), "")
        except Exception as exc:  # the call fails, not the worker
            answer = (f"{type(exc).__name__}: {exc}", traceback.format_exc())
        connection.send(answer)


def _how_it_ended(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exit status {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


class _Worker:
    """One worker process and this process's end of its pipe."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self.connection, child_end = context.Pipe()
        self.process = context.Process(  # type: ignore[attr-defined]  # each context has one
            target=serve_calls, args=(child_end,), name="SlidePreparation", daemon=True)
        self.process.start()
        child_end.close()  # the worker now holds its end alone: its death ends the pipe

    def call(self, function: Callable[..., Result], args: tuple[Any, ...],
             kwargs: dict[str, Any], limit_s: float | None = None) -> Result:
        """Run the call in this worker and wait for its answer, at most ``limit_s`` seconds
        for it to begin (then the worker is killed)."""
        try:
            self.connection.send((function, args, kwargs))
            if limit_s is not None and not self.connection.poll(limit_s):
                self.process.kill()
                raise WorkerTimeoutError(f"ran past its time limit of {limit_s:g} s; its "
                                         f"worker (pid {self.process.pid}) was ended")
            answer, failure = self.connection.recv()
        except (EOFError, OSError) as exc:
            raise WorkerDiedError(f"the preparation worker (pid {self.process.pid}) died: "
                                  f"{self.ended()}") from exc
        if failure:
            raise WorkerError(answer) from WorkerTracebackError(failure)
        return answer  # type: ignore[no-any-return]  # what function returned, pickled

    def waiting(self) -> bool:
        """The worker waits for a call. One that died has closed its end of the pipe, which
        reads as ready at once (its fork server may not have said yet that it ended)."""
        return not self.connection.poll()

    def ended(self) -> str:
        """How the worker process ended; one whose pipe broke while it lives is killed."""
        self.process.join(5.0)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        return _how_it_ended(self.process.exitcode or 0)

    def close(self) -> None:
        """Reap the process (ended before) and close this end of its pipe."""
        self.process.join()
        self.connection.close()


class PreparationWorkers:
    """``count`` worker processes, each running one call at a time; ``submit`` returns a future,
    as an executor's does, that fails with ``WorkerError``. A worker starts with its first call,
    and again with the next call after it died or ran past ``call_limit_s`` (unset: no limit)."""

    def __init__(self, count: int,
                 context: multiprocessing.context.BaseContext | None = None,
                 thread_name: str = "SlidePreparation", call_limit_s: float | None = None,
                 ) -> None:
        self._call_limit_s = call_limit_s
        self._context = context or worker_context()
        self._threads = ThreadPoolExecutor(count, thread_name_prefix=thread_name)
        self._own = threading.local()  # each thread of the pool feeds its own worker
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._stopping = False

    def submit(self, function: Callable[..., Result], /, *args: Any,
               **kwargs: Any) -> Future[Result]:
        """Run ``function(*args, **kwargs)`` in a worker process (function and arguments are
        pickled: a module-level function and plain values)."""
        return self._threads.submit(self._call, function, args, kwargs)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers started and not known dead."""
        with self._lock:
            return [worker.process.pid for worker in self._workers]

    def shutdown(self) -> None:
        """Cancel the calls not started, end every worker (its running call fails) and wait
        for the pool's threads."""
        with self._lock:
            self._stopping = True
            workers = list(self._workers)
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.process.terminate()
        self._threads.shutdown(wait=True)
        for worker in workers:
            worker.close()
        self._workers.clear()

    def __enter__(self) -> PreparationWorkers:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.shutdown()

    def _call(self, function: Callable[..., Result], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Result:
        """In a thread of the pool: the call, run by this thread's worker; tried once more in
        a new worker where its worker died (not while the pool stops)."""
        try:
            return self._call_once(function, args, kwargs)
        except WorkerDiedError as first:
            with self._lock:
                if self._stopping:
                    raise
            log.warning("%s; its call is tried once more in a new worker", first)
            try:
                return self._call_once(function, args, kwargs)
            except WorkerDiedError as second:
                raise WorkerDiedError(f"tried twice: {first}; then {second}") from second

    def _call_once(self, function: Callable[..., Result], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Result:
        """The call, run by this thread's worker, which is forgotten if it died or ran late."""
        worker = self._worker()
        try:
            return worker.call(function, args, kwargs, self._call_limit_s)
        except (WorkerDiedError, WorkerTimeoutError):
            self._forget(worker)
            raise

    def _worker(self) -> _Worker:
        """This thread's worker, started when it has none or its last one died idle."""
        worker: _Worker | None = getattr(self._own, "worker", None)
        if worker is not None and worker.waiting():
            return worker
        if worker is not None:
            log.warning("preparation worker (pid %s) died while it waited (%s); a new one "
                        "starts", worker.process.pid, worker.ended())
            self._forget(worker)
        with self._lock:
            if self._stopping:
                raise WorkerError("the preparation workers are stopping")
            worker = _Worker(self._context)
            self._workers.append(worker)
        self._own.worker = worker
        return worker

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.remove(worker)
        worker.close()
        self._own.worker = None
