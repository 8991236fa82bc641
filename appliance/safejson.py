"""JSON from outside: ``json.loads`` with nesting too deep to decode refused as bad JSON.

The standard decoder recurses once per ``[`` or ``{``, so 1,000 of them (2 KB) raise
RecursionError, which is not a ValueError: a reader that refuses bad JSON with
``except ValueError`` would crash on it instead (a job server killed by one message that the
broker then redelivers). Here that case raises JsonNestingError, a ValueError, so every
reader refuses it the way it refuses any other malformed JSON.
"""

from __future__ import annotations

import json
from typing import Any


class JsonNestingError(ValueError):
    """Arrays or objects nested inside each other deeper than the decoder can follow."""


def loads(document: str | bytes, **options: Any) -> Any:
    """``json.loads(document, **options)``; JsonNestingError (a ValueError) for deep nesting."""
    try:
        return json.loads(document, **options)
    except RecursionError as exc:
        raise JsonNestingError("JSON nested too deeply (arrays or objects inside each other "
                               "past the decoder's recursion limit)") from exc
