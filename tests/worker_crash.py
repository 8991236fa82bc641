"""A pytest plugin: a pytest-xdist worker that dies is reported with how its process ended.

xdist says only "worker 'gw2' crashed while running TEST": the same words for a segmentation
fault, an abort, a SIGTERM whose default action ended the process (a test's thread that sent
it late), the kernel's OOM killer (SIGKILL) and ``os._exit``. A segmentation fault or an abort
leaves faulthandler's traceback in the run's stderr, but for a Fatal Python error (its text
goes to the test's captured stderr, which dies with the process: the crash write-up in
docs/experiments/README.md); the others leave nothing. The controller started each worker, so
it reads the worker's exit status and adds it to the report: "its process (pid N) was killed by
SIGABRT (...)"."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest

EXIT_WAIT_S = 10.0  # the worker's connection has ended: its process is ending, a guard only
CAUSES = {  # what usually sends each signal, where it helps to say
    signal.SIGKILL: "kill -9, or the kernel's OOM killer",
    signal.SIGTERM: "its default action: sent while the process had no handler for it",
    # Py_FatalError writes to fd 2, which the test's capture holds (and loses with the
    # process), and turns faulthandler off before it aborts
    signal.SIGABRT: "an abort: faulthandler's traceback is in the run's stderr, but for a "
                    "Fatal Python error, whose words went to the test's captured stderr: run "
                    "the test with -s to see them",
    signal.SIGSEGV: "a native crash: faulthandler's traceback is in the run's stderr",
}


def worker_process(worker: Any) -> subprocess.Popen[bytes] | None:
    """The Popen of an xdist worker started on this machine (None for another kind).
    execnet keeps it only under a private name, ``Gateway._io.popen``: a test of this plugin
    fails when an upgrade moves it (tests/test_worker_crash.py)."""
    gateway = getattr(worker, "gateway", None)
    if gateway is None:
        return None
    popen = getattr(gateway._io, "popen", None)  # noqa: SLF001 - execnet's only handle on it
    return popen if isinstance(popen, subprocess.Popen) else None


def how_it_ended(popen: subprocess.Popen[bytes]) -> str:
    """The worker's end in words: the signal that killed it, or its exit status."""
    try:
        code = popen.wait(EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        return f"its process (pid {popen.pid}) still ran {EXIT_WAIT_S:.0f} s after its " \
               "connection ended"
    if code >= 0:
        return f"its process (pid {popen.pid}) exited with status {code} (os._exit, or an " \
               "exit before the test ended)"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    cause = CAUSES.get(-code)
    return f"its process (pid {popen.pid}) was killed by {name}" + (f" ({cause})" if cause else "")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    popen = worker_process(getattr(report, "node", None))
    if popen is not None:
        report.longrepr = f"{report.longrepr}: {how_it_ended(popen)}"
