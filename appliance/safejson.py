"""JSON from outside: ``json.loads`` with nesting too deep to decode refused as bad JSON.

The standard decoder recurses once per ``[`` or ``{``, so 1,000 of them (2 KB) raise
RecursionError, which is not a ValueError: a reader that refuses bad JSON with
``except ValueError`` would crash on it instead (a job server killed by one message that the
broker then redelivers). Here that case raises JsonNestingError, a ValueError, so every
reader refuses it the way it refuses any other malformed JSON. So is an integer longer than
Python converts (4300 digits by default, and 4300 too where the interpreter's limit is switched
off): JsonNumberError names its length in place of the interpreter's hint to raise the limit.

A document nested deeper than MAX_JSON_DEPTH is refused before the decoder sees it, so how deep
the decoder goes hangs neither on the interpreter's recursion limit nor on how deep the reading
thread already is: a library that raises the limit and lowers it again (hypothesis does, around
each example) left a thread deep in such a document over the lowered limit, and CPython 3.11
aborted the process ("Cannot recover from stack overflow"; docs/experiments/README.md "crash").
"""

from __future__ import annotations

import json
import re
import sys
from itertools import accumulate
from typing import Any


class JsonNestingError(ValueError):
    """Arrays or objects nested inside each other deeper than the decoder can follow."""


# no document the product reads nests a tenth as deep; the decoder's recursion stays far
# below the interpreter's limit (1000) at any thread's depth
MAX_JSON_DEPTH = 200
# a JSON string, escapes included, or one never closed (to the end): each quote is read once,
# so a run of unclosed strings costs one pass, not one a quote
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


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
    if (depth := nesting_depth(document)) > MAX_JSON_DEPTH:
        raise JsonNestingError(f"JSON nested too deeply (arrays or objects {depth} deep, at "
                               f"most {MAX_JSON_DEPTH} are read)")
    try:
        return json.loads(document, **options)
    except RecursionError as exc:
        raise JsonNestingError("JSON nested too deeply (arrays or objects inside each other "
                               "past the decoder's recursion limit)") from exc


def nesting_depth(document: str | bytes) -> int:
    """How deep arrays and objects nest in ``document``, its strings left out (for a document
    that is not JSON, an unclosed string say, a reading the decoder then refuses anyway): one
    pass of C-speed work, a few milliseconds for a megabyte of brackets."""
    data = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    brackets = _STRING.sub(b"", data).translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
