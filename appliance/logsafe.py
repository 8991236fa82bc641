"""Log records whose message cannot forge lines or drive a terminal.

Payload text, topics and file names from outside reach log messages as ``%s`` arguments. A
newline there forges a second log line; an ANSI escape recolours or hides a terminal. Every
record's message is therefore rendered with control characters escaped (``\\n`` becomes the
two characters backslash-n), for every handler (stderr, journald). Tracebacks are added by the
formatter after this and keep their lines. Bidirectional-text controls (U+202E and kin) are
escaped too: they show text in another order than it has ("Trojan Source", CVE-2021-42574).
"""

from __future__ import annotations

import logging
import re

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
