"""Stop signals (Ctrl-C's SIGINT, SIGTERM) and SIGHUP that come while a command still starts.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT comes. In a command's
first second that is inside an import (pydantic, numpy, ONNX Runtime): an early Ctrl-C of
``appliance pathology serve`` printed a traceback from the middle of a library, and one a
little later, before the server had put its stop handlers in place, ended it with exit 130
and without its stop message. So ``appliance`` holds them from the start of ``main``
until the command is ready for them, then delivers them: a command with its own stop handlers
(``pathology serve``, ``edge``, ``backoffice``, ``console``, ``demo``: ``own_stop_signals``
in their parsers) gets the held ones there, as it gets a later one (its stop message and exit
code); any other gets them as its run begins, from the handlers a later one meets
(``delivered``: KeyboardInterrupt, exit 130; SIGTERM as cli.sigterm_ends_as_interrupt has it,
exit 143), never from SIGTERM's default action, which killed the process where it stood.
Either way the handlers last as long as the block that put them in place (``delivered``,
``stop_on_signals``): after it, the ones from before are back, for ``main``'s caller (a
library, a test) as for the process.

SIGHUP (its terminal closed, an ssh connection lost) is held too. ``stop_on_signals`` makes it
a stop, as SIGTERM: its default action ended a service run in a terminal (``backoffice``,
``console``, ``pathology serve``) where it stood, without its orderly stop. The edge daemon
puts its own handler on it (read the config again), and one that came while it started is a
reload once it runs. A one-shot command ends on it as on SIGTERM (cli.sigterm_ends_as_interrupt,
exit 129), its partial output file removed on the way out. Under ``nohup`` (SIGHUP ignored from
the start) it stays ignored: that is what the caller asked for.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HANGUP = signal.SIGHUP  # the terminal closed: a service stops, the edge daemon reloads
HELD_SIGNALS = (*STOP_SIGNALS, HANGUP)
SignalHandler = Callable[[int, FrameType | None], Any]

_held: list[int] = []  # in the order they came, each once
_previous: dict[int, Any] = {}  # the handlers before hold(), while holding
_abandoning: list[bool] = []  # one a ``waits_abandoned_on_stop`` block the main thread is in


class WaitAbandonedError(Exception):
    """A stop signal (its name the text) came while the main thread waited in a
    ``waits_abandoned_on_stop`` block; the command's stop event is set, its stop message said."""


def hold() -> None:
    """From now until ``delivered`` or ``release``, a stop signal or SIGHUP is noted, not acted
    on (signals reach only the main thread: elsewhere this does nothing); an ignored SIGHUP
    (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread() or _previous:
        return
    for signum in HELD_SIGNALS:
        if signum != HANGUP or not hangup_ignored():
            _previous[signum] = signal.signal(signum, _note)


def hangup_ignored() -> bool:
    """Whether SIGHUP was ignored before ``hold`` (or is now, when not holding): ``nohup``."""
    return bool(_previous.get(HANGUP, signal.getsignal(HANGUP)) == signal.SIG_IGN)


def _note(signum: int, frame: FrameType | None) -> None:
    if signum not in _held:
        _held.append(signum)


def _deliver(handlers: Mapping[int, SignalHandler]) -> None:
    """Put ``handlers`` in place (a stop signal they leave out: its handler before ``hold``),
    then hand them each stop signal that came meanwhile."""
    for signum, chosen in {**_previous, **handlers}.items():
        if chosen is not None:  # None: a handler not set from Python, nothing to put back
            signal.signal(signum, chosen)
    _previous.clear()
    held = list(_held)
    _held.clear()
    for came in held:
        signal.raise_signal(came)


@contextmanager
def stop_on_signals(stop: threading.Event, log: logging.Logger,
                    received: list[int] | None = None) -> Iterator[None]:
    """For the length of the block SIGTERM, SIGINT and SIGHUP (unless ignored: ``nohup``) set
    ``stop`` (the main thread then shuts down in order), said under ``log``, the service's own
    logger; also one that came while the command started. Each one's number is added to
    ``received`` when given (a command's exit code names it: 128 + it). After the block the
    handlers before it are back: a library caller of ``cli.main`` was left with a Ctrl-C that
    only set an Event nobody waited on."""
    hung_up: list[bool] = []

    def _handler(signum: int, frame: FrameType | None) -> None:
        if signum == HANGUP:  # one hangup can come twice, from the shell (to its jobs) and
            if hung_up:  # from the kernel: not a second stop, which would end the console's
                return  # requests at once
            hung_up.append(True)
        log.info("received %s; stopping", signal.Signals(signum).name)
        if received is not None:
            received.append(signum)
        stop.set()
        if _abandoning:
            raise WaitAbandonedError(signal.Signals(signum).name)

    handlers: dict[int, SignalHandler] = {signal.SIGTERM: _handler, signal.SIGINT: _handler}
    if not hangup_ignored():
        handlers[HANGUP] = _handler
    with delivered(handlers):
        yield


@contextmanager
def delivered(handlers: Mapping[int, SignalHandler]) -> Iterator[None]:
    """``handlers`` for the length of the block (a held stop signal reaches them as the block
    begins), then the handlers from before ``hold`` (or before the block) are back, those of
    any other signal in ``handlers`` (SIGHUP) too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: _previous.get(signum, signal.getsignal(signum))
              for signum in {*HELD_SIGNALS, *handlers}}
    try:
        _deliver(handlers)
        yield
    finally:
        for signum, handler in before.items():
            if handler is not None:  # None: a handler not set from Python, nothing to put back
                signal.signal(signum, handler)


@contextmanager
def waits_abandoned_on_stop() -> Iterator[None]:
    """For the block, a stop signal that ``stop_on_signals`` takes also ends the main thread's
    wait in it at once, with WaitAbandonedError: a command that stops in order (``backoffice``,
    ``demo``, ``pathology serve``) met its stop only after a wait for a server that does not
    answer had run out, where Ctrl-C ends any other command's wait at once (KeyboardInterrupt).
    On another thread the block changes nothing (signals reach the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _abandoning.append(True)
    try:
        yield
    finally:
        _abandoning.pop()


def release() -> None:
    """The command has ended: put back the handlers before ``hold`` (when still holding) and
    forget what came too late to stop anything."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    _held.clear()
