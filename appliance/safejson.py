"""JSON from outside: ``json.loads`` with nesting too deep to decode refused as bad JSON.

The standard decoder recurses once per ``[`` or ``{``, so 1,000 of them (2 KB) raise
RecursionError, which is not a ValueError: a reader that refuses bad JSON with
``except ValueError`` would crash on it instead (a job server killed by one message that the
broker then redelivers). Here that case raises JsonNestingError, a ValueError, so every
reader refuses it the way it refuses any other malformed JSON. So is an integer longer than
Python converts (4300 digits by default, and 4300 too where the interpreter's limit is switched
off): JsonNumberError names its length in place of the interpreter's hint to raise the limit.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class JsonNestingError(ValueError):
    """Arrays or objects nested inside each other deeper than the decoder can follow."""


class JsonNumberError(ValueError):
    """An integer with more digits than Python converts from text."""


def max_int_digits() -> int:
    """The most digits an integer read from JSON may have: the interpreter's limit, or its
    default (4300) where that is switched off (0: PYTHONINTMAXSTRDIGITS=0), which would
    otherwise let one hostile number take seconds of quadratic conversion."""
    return sys.get_int_max_str_digits() or sys.int_info.default_max_str_digits


def _bounded_int(text: str) -> int:
    digits, limit = len(text) - text.startswith("-"), max_int_digits()
    if digits > limit:
        raise JsonNumberError(f"an integer of {digits} digits (at most {limit} are read)")
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
