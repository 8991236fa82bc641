"""A pytest plugin: a signal sent to the pytest process itself, where its default action ends
that process, is said on the run's standard error first: which thread sends it, during which
test, from which line.

A thread that a test starts can outlive the test (a helper that sends SIGTERM to its own
process once a condition holds); a signal it sends once the test has put the process's
handlers back is met by the default action, which ends the process without a word, and
pytest-xdist reports only that the worker "crashed while running" whatever test ran then.
The process still dies as it would have: this says why first. It watches ``os.kill``,
``os.killpg``, ``signal.raise_signal`` and ``signal.pthread_kill`` (the product's own calls
included); a signal from another process is not seen here (tests/worker_crash.py names it)."""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Generator
from typing import Any

import pytest

# signals whose default action does not end the process: ignored, or stopped
NOT_ENDING = {signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH, signal.SIGSTOP,
              signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
_said_to: list[int] = []  # the descriptor said on: the run's own stderr, as faulthandler's
_running: list[str] = []  # the test running now
_real: dict[str, Callable[..., Any]] = {}  # the functions watched, as they were, by name


def ends_this_process(signum: int) -> bool:
    """Whether ``signum`` delivered here now meets its default action, which ends the process."""
    if signum in (0, signal.SIGKILL):
        return signum == signal.SIGKILL
    return signum not in NOT_ENDING and signal.getsignal(signum) == signal.SIG_DFL


def say(signum: int, how: str) -> None:
    """Write who sends ``signum`` to this process, during which test and from where."""
    if not _said_to or not ends_this_process(signum):
        return
    name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
    stack = "".join(traceback.format_stack()[:-2])
    test = _running[-1] if _running else "none (between tests)"
    text = (f"\ntests/self_signals.py: thread {threading.current_thread().name!r} sends {name} "
            f"to this pytest process (pid {os.getpid()}, by {how}) while it has no handler "
            f"for it: its default action ends the process. The test running: {test}. "
            f"Sent from:\n{stack}")
    os.write(_said_to[0], text.encode("utf-8", "backslashreplace"))


def _kill(pid: int, signum: int) -> None:
    if pid in (os.getpid(), 0, -1) or -pid == os.getpgrp():
        say(signum, f"os.kill({pid})")
    _real["kill"](pid, signum)


def _killpg(group: int, signum: int) -> None:
    if group in (0, os.getpgrp()):
        say(signum, f"os.killpg({group})")
    _real["killpg"](group, signum)


def _raise_signal(signum: int) -> None:
    say(signum, "signal.raise_signal")
    _real["raise_signal"](signum)


def _pthread_kill(thread_id: int, signum: int) -> None:
    if any(thread.ident == thread_id for thread in threading.enumerate()):
        say(signum, "signal.pthread_kill")
    _real["pthread_kill"](thread_id, signum)


def _watched() -> list[tuple[Any, str, Callable[..., Any]]]:
    """Each function watched: its module, its name and what stands in for it."""
    return [(os, "kill", _kill), (os, "killpg", _killpg),
            (signal, "raise_signal", _raise_signal), (signal, "pthread_kill", _pthread_kill)]


def pytest_configure(config: pytest.Config) -> None:
    _said_to.append(os.dup(2))  # the run's stderr: a test's captured stderr dies with it
    for module, name, watching in _watched():
        _real[name] = getattr(module, name)
        setattr(module, name, watching)


def pytest_unconfigure(config: pytest.Config) -> None:
    for module, name, watching in _watched():
        if getattr(module, name) is watching:
            setattr(module, name, _real.pop(name))
    while _said_to:
        os.close(_said_to.pop())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    _running.append(item.nodeid)
    try:
        return (yield)
    finally:
        _running.pop()
