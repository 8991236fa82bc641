"""Job requests checked off the pathology server's main loop, within a time limit.

Checking a request resolves each of its slide paths (``jobs.parse_job``), and where a slide
folder is a network share that stopped answering, the kernel holds such a call until the share
answers again. Run on the main loop, that stopped every job's work and the renewal of its
leases with it (other servers then took its jobs over), for as long as the share stayed away.
Here each check runs in a thread of its own: one not done within ``limit_s`` refuses its
request, saying why, and while ``max_waiting`` checks still wait on such folders a further
request is refused at once (each waiting thread ends when its share answers). A stopping server
waits for the threads whose checks have answered and leaves those still waiting on a share
(they only read; ``RequestChecks.end``), saying how many. What a request is checked against
is ``login_request``: the slide roots of the login whose topic it came on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.config.pathology import PathologyConfig
from appliance.pathology.jobs import JobRefusedError, JobRequest, job_submitter, parse_job

CHECK_S = 10.0  # resolving a request's slide paths takes milliseconds on a disk that answers
MAX_WAITING = 8

Answer = tuple[JobRequest | None, BaseException | None]


def login_request(settings: PathologyConfig, payload: bytes, job_id: str) -> JobRequest:
    """A request on the topic of ``job_id`` checked against the slide roots of its login (the
    id's first level: the broker lets only that login publish there), so one lab's login
    cannot have the server read another lab's slides (pathology.slide_roots_by_login)."""
    login = job_submitter(job_id)
    roots = settings.slide_roots_of(login)
    if not roots:
        raise JobRefusedError(f"login {login!r} has no slide folders on this server "
                              "(pathology.slide_roots_by_login does not name it); ask its "
                              "operator to add them", job_id)
    return parse_job(payload, [Path(root) for root in roots], settings.max_job_bytes,
                     settings.max_slides_per_job, job_id)


class RequestChecks:
    """Runs ``check(payload, job_id)`` (``parse_job`` with the server's settings) in a thread
    of its own per request, named ``RequestCheck SERVER_ID``, waiting for it at most
    ``limit_s``."""

    def __init__(self, check: Callable[[bytes, str], JobRequest], limit_s: float = CHECK_S,
                 max_waiting: int = MAX_WAITING, server_id: str = "") -> None:
        self._check = check
        self.limit_s = limit_s
        self.max_waiting = max_waiting
        self.thread_name = f"RequestCheck {server_id}".rstrip()
        self._lock = threading.Lock()
        self._running = 0
        # each check's thread and its answer (full once answered), kept until seen ended
        self._threads: dict[threading.Thread, queue.Queue[Answer]] = {}

    def check(self, payload: bytes, job_id: str) -> JobRequest:
        """The checked request; JobRefusedError for a bad one, and for one whose slide paths
        could not be looked at in time."""
        with self._lock:
            if self._running >= self.max_waiting:
                raise JobRefusedError(
                    f"{self._running} earlier requests still wait for their slide folders to "
                    "answer (a network share that does not answer?); submit it again once "
                    "they do", job_id)
            self._running += 1
        answer: queue.Queue[Answer] = queue.Queue(maxsize=1)
        thread = threading.Thread(target=self._run, args=(payload, job_id, answer),
                                  daemon=True, name=self.thread_name)
        with self._lock:
            self._threads = {t: a for t, a in self._threads.items() if t.is_alive()}
            self._threads[thread] = answer
        thread.start()
        try:
            request, error = answer.get(timeout=self.limit_s)
        except queue.Empty:
            raise JobRefusedError(
                f"its slide paths could not be looked at within {self.limit_s:g} s (a slide "
                "folder on a network share that does not answer?); submit it again once it "
                "answers", job_id) from None
        if error is not None:
            raise error
        if request is None:  # _run answers a request or an error
            raise RuntimeError("request check answered nothing")
        return request

    def _run(self, payload: bytes, job_id: str, answer: queue.Queue[Answer]) -> None:
        try:
            answer.put((self._check(payload, job_id), None))
        except BaseException as exc:  # handed to the waiting main loop, raised there
            answer.put((None, exc))
        finally:
            with self._lock:
                self._running -= 1

    def end(self, timeout_s: float) -> int:
        """Wait (at most ``timeout_s``) for the check threads that have answered, as a
        stopping server does; how many are left, still waiting on their slide folders (a
        share that does not answer holds them until it does: they write nothing)."""
        with self._lock:
            threads = list(self._threads.items())
        deadline_s = time.monotonic() + timeout_s
        for thread, answer in threads:
            if answer.full():  # answered: it ends at once
                thread.join(max(0.0, deadline_s - time.monotonic()))
        return sum(thread.is_alive() for thread, _ in threads)
