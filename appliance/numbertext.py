"""Numbers as a person types them on the command line: ASCII decimal notation only.

``float()`` and ``int()`` also read full-width and other scripts' digits (``"１０"`` is 10),
underscores (``"1_0"``) and blanks around the number, so a value pasted from a document set in
another script was taken as if typed in ASCII; the options' parsers read their text here, and
those are refused as not a number. ``inf``, ``infinity`` and ``nan`` (any case, signed) are read, so
that the option's own range check refuses them with its range message.
"""

from __future__ import annotations

import re

WHOLE = re.compile(r"[+-]?\d+", re.ASCII)
DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.ASCII | re.IGNORECASE)
# what argparse must take as an option's value, not as an option, where it starts with "-":
# its own rule (a digit, or "." and a digit, after the "-") leaves out "-inf" and "-nan",
# which then met "expected one argument" instead of the option's range message
NEGATIVE_NUMBER = re.compile(r"^-(?:\.?\d|(?:inf|infinity|nan)$)", re.IGNORECASE)


def decimal_number(text: str) -> float:
    """``text`` as a float where it is ASCII decimal notation (or inf, nan); else ValueError."""
    if DECIMAL.fullmatch(text) is None and NON_FINITE.fullmatch(text) is None:
        raise ValueError(f"not a number in ASCII decimal notation: {text!r}")
    return float(text)


def whole_number(text: str) -> int:
    """``text`` as an int where it is ASCII digits (with a sign or not); else ValueError."""
    if WHOLE.fullmatch(text) is None:
        raise ValueError(f"not a whole number in ASCII digits: {text!r}")
    return int(text)
