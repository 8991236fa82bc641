"""Log records whose message cannot forge lines or drive a terminal.

Payload text, topics and file names from outside reach log messages as ``%s`` arguments. A
newline there forges a second log line; an ANSI escape recolours or hides a terminal. Every
record's message is therefore rendered with control characters escaped (``\\n`` becomes the
two characters backslash-n), for every handler (stderr, journald). Tracebacks are added by the
formatter after this and keep their lines. Bidirectional-text controls (U+202E and kin) are
escaped too: they show text in another order than it has ("Trojan Source", CVE-2021-42574).
A warning that each message from outside can cause is said within a budget a minute
(``LineBudget``), so a client sending such messages in a loop cannot fill the journal.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable

# Controls, line separators, bidirectional-text controls and invisible marks (zero width space,
# byte order mark), and lone surrogates (a file name's undecodable bytes, which no terminal
# encoding can print).
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069"
    r"\ufeff\ud800-\udfff]"
)
SHOWN_ARGUMENT_CHARS = 200  # of a command-line argument named in an error (it may be 100,000)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def shorten(text: str, limit: int) -> str:
    """``text`` escaped, cut to ``limit`` characters with how much was left off (an MQTT topic
    can be 65,535 bytes long: a terminal line should not be)."""
    shown = escape_controls(text[:limit])
    if len(text) <= limit:
        return shown
    return f"{shown}... ({len(text) - limit} more characters)"


def shorten_quoted(text: str, limit: int) -> str:
    """``text`` quoted as ``repr`` quotes it (controls escaped), cut to ``limit`` characters
    with how much was left off: a 100,000-character argument named in an error is one line."""
    shown = repr(text[:limit])
    if len(text) <= limit:
        return shown
    return f"{shown}... ({len(text) - limit} more characters)"


class SafeLogRecord(logging.LogRecord):
    """A LogRecord whose rendered message has its control characters escaped."""

    def getMessage(self) -> str:  # noqa: N802  (logging's name)
        """The message with arguments merged in, control characters escaped."""
        return escape_controls(super().getMessage())


def install() -> None:
    """Make every new log record in this process a SafeLogRecord (idempotent)."""
    if logging.getLogRecordFactory() is not SafeLogRecord:
        logging.setLogRecordFactory(SafeLogRecord)


class LineBudget:
    """Warnings that messages from outside can cause one each (a job request refused): the
    first ``per_window`` of each window said one by one, the rest counted, and their count
    said once the window is over (``say_due``, from a loop that looks often), so a client
    sending such messages in a loop cannot fill the journal (journald's rate limit then drops
    every line of the process, the ones that matter included)."""

    def __init__(self, logger: logging.Logger, what: str, per_window: int = 10,
                 window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.what = logger, what
        self.per_window, self.window_s, self.clock = per_window, window_s, clock
        self._lock = threading.Lock()
        self._window_from = -math.inf
        self._said = self.unsaid = 0

    def warn(self, message: str, *args: object) -> bool:
        """``logger.warning(message, *args)`` while the window's budget lasts; else counted.
        True when it is the window's first held back, so a caller without a loop that looks
        often arranges a ``say_due`` a window from now."""
        self.say_due()
        with self._lock:
            said = self._said < self.per_window
            self._said += said
            self.unsaid += not said
            first_held = not said and self.unsaid == 1
        if said:
            self.logger.warning(message, *args)
        return first_held

    def say_due(self) -> None:
        """Once the window is over: say how many were not said in it, and start the next."""
        with self._lock:
            now = self.clock()
            if now - self._window_from < self.window_s:
                return
            unsaid, self.unsaid, self._said, self._window_from = self.unsaid, 0, 0, now
        if unsaid:
            self.logger.warning("%s: %d more not said in the last %.0f s (at most %d said one "
                                "by one a window)", self.what, unsaid, self.window_s,
                                self.per_window)
