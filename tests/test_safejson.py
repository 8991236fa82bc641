"""safejson's nesting bound: a document nested deeper than MAX_JSON_DEPTH is refused before the
decoder sees it (so how deep the decoder recurses never meets the interpreter's recursion
limit, whatever a library made of it and however deep the reading thread is), brackets inside
strings do not count, and the reading is one pass for any input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance import safejson
from appliance.safejson import MAX_JSON_DEPTH, JsonNestingError, nesting_depth


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def test_a_document_at_the_bound_is_read_and_one_past_it_refused_without_the_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert safejson.loads(nested(MAX_JSON_DEPTH))["a"] is not None

    def decoder_reached(*args: object, **kwargs: object) -> object:
        raise AssertionError("the decoder was given a document past the bound")

    monkeypatch.setattr(json, "loads", decoder_reached)
    with pytest.raises(JsonNestingError, match=rf"^JSON nested too deeply \(arrays or objects "
                       rf"{MAX_JSON_DEPTH + 1} deep, at most {MAX_JSON_DEPTH} are read\)$"):
        safejson.loads(nested(MAX_JSON_DEPTH + 1))


def test_the_bound_holds_under_a_recursion_limit_a_library_lowered() -> None:
    # hypothesis raises the limit around each example and lowers it after: a thread deep in a
    # hostile document then stood over the lowered limit and CPython 3.11 aborted the process;
    # under the bound the decoder never goes deeper than MAX_JSON_DEPTH
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 5000))
        with pytest.raises(JsonNestingError):
            safejson.loads(b"[" * 4000 + b"]" * 4000)  # the decoder would have followed it
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(("document", "depth"), [
    (b'["[[[[", {"k": "]]]}"}]', 2),
    (b'["a\\"[[[", [[1]]]', 3),  # an escaped quote does not end the string
    ('["\u00e9[", [2]]', 2),  # text, not bytes
    (b"", 0),
    (b'"never closed [[[[', 0),  # no JSON: the decoder says so
])
def test_brackets_inside_strings_do_not_count(document: bytes | str, depth: int) -> None:
    assert nesting_depth(document) == depth


def test_runs_of_unclosed_strings_are_read_in_one_pass() -> None:
    # a quote then a backslash, 300,000 times: a pattern that tried each quote as the start of
    # a string to the end of the document took hours; the bound is a hang guard, not a speed
    script = ("from appliance.safejson import nesting_depth\n"
              "print(nesting_depth(b'\"\\\\' * 300_000), nesting_depth(b'\\\\\"' * 300_000),"
              " nesting_depth(b'\"' * 600_000))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert (done.returncode, done.stdout.split()) == (0, ["0", "0", "0"]), done.stderr
