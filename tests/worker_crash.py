"""A pytest plugin: a pytest-xdist worker that dies is reported with how its process ended.

xdist says only "worker 'gw2' crashed while running TEST": the same words for a segmentation
fault, an abort, a SIGTERM whose default action ended the process (a test's thread that sent
it late), the kernel's OOM killer (SIGKILL) and ``os._exit``. A segmentation fault or an abort
leaves faulthandler's traceback in the run's stderr, but for a Fatal Python error (its text
goes to the test's captured stderr, which dies with the process: the crash write-up in
docs/experiments/README.md); the others leave nothing. The controller started each worker, so
it reads the worker's exit status and adds it to the report: "its process (pid N) was killed by
SIGABRT (...)". Through public API only: each worker is asked its pid as it starts
(``pytest_xdist_newgateway``, execnet's ``remote_exec``), and ``os.waitpid`` reads how it ended;
execnet keeps its Popen only under a private name."""

from __future__ import annotations

import os
import signal
import time
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


# each worker's pid, by its gateway's id ("gw0"), asked as the worker starts
_WORKER_PIDS: dict[str, int] = {}
PID_SOURCE = "import os; channel.send(os.getpid())"


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller
def pytest_xdist_newgateway(gateway: Any) -> None:
    """Ask a worker started on this machine (a ``popen`` gateway: the controller's child) for
    its pid, with execnet's public ``remote_exec``, before xdist runs its own code there (the
    worker runs one remote_exec at a time: asked later, it would wait for the tests). Waited
    for as xdist waits for its own start there: a worker that cannot answer cannot run tests."""
    spec = gateway.spec
    if spec.popen and not spec.via:
        _WORKER_PIDS[gateway.id] = int(gateway.remote_exec(PID_SOURCE).receive())


def how_it_ended(pid: int) -> str:
    """The end of the worker ``pid``, a child of this process, in words: the signal that killed
    it, or its exit status (read with ``waitpid``, which reaps it: execnet's own wait on it at
    the session's end then reads 0)."""
    deadline = time.monotonic() + EXIT_WAIT_S
    try:
        while (found := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                return (f"its process (pid {pid}) still ran {EXIT_WAIT_S:.0f} s after its "
                        "connection ended")
            time.sleep(0.05)
    except ChildProcessError:
        return f"its process (pid {pid}) had been reaped already: how it ended is not known"
    code = os.waitstatus_to_exitcode(found[1])
    if code >= 0:
        return f"its process (pid {pid}) exited with status {code} (os._exit, or an exit " \
               "before the test ended)"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    cause = CAUSES.get(-code)
    return f"its process (pid {pid}) was killed by {name}" + (f" ({cause})" if cause else "")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    pid = None if gateway is None else _WORKER_PIDS.pop(gateway.id, None)
    if pid is not None:
        report.longrepr = f"{report.longrepr}: {how_it_ended(pid)}"
