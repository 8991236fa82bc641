"""Log records whose message cannot forge lines or drive a terminal.

Payload text, topics and file names from outside reach log messages as ``%s`` arguments. A
newline there forges a second log line; an ANSI escape recolours or hides a terminal. Every
record's message is therefore rendered with control characters escaped (``\\n`` becomes the
two characters backslash-n), for every handler (stderr, journald). Tracebacks are added by the
formatter after this and keep their lines. Bidirectional-text controls (U+202E and kin) are
escaped too: they show text in another order than it has ("Trojan Source", CVE-2021-42574); and
so is every other character that draws nothing (a word joiner, a tag, a Hangul filler), which
makes two texts that differ read the same.
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

# Every character of Unicode's categories Cc (controls), Cf (format characters: bidirectional-
# text controls, zero-width marks, the byte order mark, tags, ...), Zl and Zp (line and paragraph
# separators) and Cs (lone surrogates: a file name's undecodable bytes, which no terminal
# encoding can print), as Unicode 14 (Python 3.11) lists them, a test checks them against
# unicodedata; and the Hangul fillers, letters that draw nothing.
INVISIBLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    r"\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ud800-\udfff\ufeff"
    r"\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
SHOWN_ARGUMENT_CHARS = 200  # of a command-line argument named in an error (it may be 100,000)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def escape_controls(text: str) -> str:
    """``text`` with every control character (every ``INVISIBLE`` one) written as a visible
    escape, as Python writes it: ``\\u2060``, ``\\U000e0041`` past U+FFFF."""
    return INVISIBLE.sub(lambda m: _NAMED.get(m.group()) or _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


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
