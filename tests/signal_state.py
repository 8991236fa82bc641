"""The process's signal state that a test must leave as it found it: the handlers of the stop
and reload signals (SIGINT, SIGTERM, SIGHUP) and, on Linux, the ignored and blocked sets of
/proc/self/status. A command run in-process (``cli.main([...])``) that left its stop handler in
place left the test process, as any library caller, with a Ctrl-C that only set a dead Event."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STATUS_MASKS = {"SigIgn": "ignored", "SigBlk": "blocked"}  # /proc/self/status field: what it says


@dataclass(frozen=True)
class SignalState:
    handlers: dict[int, Any]  # signal.getsignal of each watched signal (typeshed's type is private)
    masks: dict[str, int]  # /proc/self/status SigIgn, SigBlk (empty off Linux)


def signal_state() -> SignalState:
    """The watched handlers and the ignored and blocked signals, now."""
    return SignalState({signum: signal.getsignal(signum) for signum in WATCHED_SIGNALS},
                       _status_masks())


def _status_masks() -> dict[str, int]:
    try:
        lines = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:  # not Linux: the handlers are still compared
        return {}
    fields = dict(line.partition(":")[::2] for line in lines)
    return {name: int(fields[name], 16) for name in STATUS_MASKS if name in fields}


def changes(before: SignalState, after: SignalState) -> list[str]:
    """What differs between ``before`` and ``after``, each naming the signal and the handler."""
    found = [f"{signal.Signals(signum).name}'s handler was {_named(handler)} and is now "
             f"{_named(after.handlers[signum])}"
             for signum, handler in before.handlers.items() if after.handlers[signum] != handler]
    for field, word in STATUS_MASKS.items():
        old, new = before.masks.get(field, 0), after.masks.get(field, 0)
        found += [f"{_signal_named(n)} is now {word} ({field})" for n in _bits(new & ~old)]
        found += [f"{_signal_named(n)} is no longer {word} ({field})" for n in _bits(old & ~new)]
    return found


def restore(state: SignalState) -> None:
    """Put the watched handlers of ``state`` back (None: not set from Python, left as it is)."""
    for signum, handler in state.handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


def _named(handler: object) -> str:
    if isinstance(handler, signal.Handlers):
        return handler.name
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(handler)


def _bits(mask: int) -> list[int]:
    """The signal numbers in a /proc/self/status mask (bit n-1 is signal n)."""
    return [bit + 1 for bit in range(mask.bit_length()) if mask >> bit & 1]


def _signal_named(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal has no name
        return f"signal {signum}"
