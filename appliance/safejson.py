"""JSON from outside: ``json.loads`` with nesting too deep to decode refused as bad JSON.

The standard decoder recurses once per ``[`` or ``{``, so 1,000 of them (2 KB) raise
RecursionError, which is not a ValueError: a reader that refuses bad JSON with
``except ValueError`` would crash on it instead (a job server killed by one message that the
broker then redelivers). Here that case raises JsonNestingError, a ValueError, so every
reader refuses it the way it refuses any other malformed JSON. So is an integer longer than
Python converts (4300 digits by default): JsonNumberError names its length in place of the
interpreter's hint to raise the limit.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class JsonNestingError(ValueError):
    """Arrays or objects nested inside each other deeper than the decoder can follow."""


class JsonNumberError(ValueError):
    """An integer with more digits than Python converts from text."""


def _bounded_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > sys.get_int_max_str_digits():
        raise JsonNumberError(f"an integer of {digits} digits (at most "
                              f"{sys.get_int_max_str_digits()} are read)")
    return int(text)


def loads(document: str | bytes, **options: Any) -> Any:
    """``json.loads(document, **options)``; JsonNestingError (a ValueError) for deep nesting,
    JsonNumberError (a ValueError) for an integer too long to convert."""
    options.setdefault("parse_int", _bounded_int)
    try:
        return json.loads(document, **options)
    except RecursionError as exc:
        raise JsonNestingError("JSON nested too deeply (arrays or objects inside each other "
                               "past the decoder's recursion limit)") from exc
