"""SIGHUP (a terminal closed, an ssh connection lost) stops a service as SIGTERM does while
``interrupts.stop_on_signals`` is in force: once, however often one hangup is delivered, and
never where the caller ignored it (``nohup``)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from appliance import interrupts

log = logging.getLogger("tests.hangup")


def _callers_handler(signum: int, frame: FrameType | None) -> None:
    """The handler of the program that calls the service (never called on this branch)."""


@pytest.fixture
def hangup_handled_by_caller() -> Iterator[None]:
    """A SIGHUP handler of the caller's for the test, so a SIGHUP that the block does not take
    is noted by nobody rather than ending the test process; Python's own back after."""
    before = signal.signal(signal.SIGHUP, _callers_handler)
    yield
    signal.signal(signal.SIGHUP, before)


def test_a_hangup_stops_the_service_once_however_often_it_comes(
        hangup_handled_by_caller: None, caplog: pytest.LogCaptureFixture) -> None:
    """Its stop line, its number for the exit code, the caller's handler back after. One closed
    terminal may send it twice (the shell to its jobs, then the kernel: sighup-harness): the
    second is not a second stop, which ends the console's requests at once."""
    stop, received = threading.Event(), list[int]()
    with caplog.at_level(logging.INFO, logger=log.name), \
            interrupts.stop_on_signals(stop, log, received):
        signal.raise_signal(signal.SIGHUP)
        signal.raise_signal(signal.SIGHUP)
    assert stop.is_set()
    assert received == [signal.SIGHUP]
    assert [r.getMessage() for r in caplog.records] == ["received SIGHUP; stopping"]
    assert signal.getsignal(signal.SIGHUP) is _callers_handler


def test_under_nohup_a_hangup_stays_ignored_from_the_start_to_the_end() -> None:
    """``nohup appliance backoffice``: the caller asked for the hangup to be ignored."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = threading.Event()
    try:
        interrupts.hold()
        try:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            with interrupts.stop_on_signals(stop, log):
                assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
                signal.raise_signal(signal.SIGHUP)
        finally:
            interrupts.release()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
    assert not stop.is_set()
