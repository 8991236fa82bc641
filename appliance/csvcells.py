"""Text cells of the CSV files people open in a spreadsheet, kept from running as formulas.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula, so text from outside (a kiosk's label, a slide file's name)
could fetch a link or run a command when the file is opened (OWASP "CSV injection"). Such a
cell gets a leading apostrophe, which a spreadsheet takes as "this is text" and does not show;
so does a cell that starts with an apostrophe itself, which a spreadsheet would otherwise drop.
Every text thus reads as it was, in a spreadsheet and through ``cell_text`` (a CSV the product
reads back: pathology results.csv).

A file name's bytes that are not UTF-8 (Python holds them as lone surrogates, which no UTF-8
file can hold) are written as ``\\xNN``, as appliance/skin/frames.py's ``record_name`` writes
them: before, one slide file so named stopped ``pathology run`` with a traceback after every
slide was scored, and no results.csv was written.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, or whose apostrophe it would take
    for its text mark, with a leading apostrophe; undecodable bytes written as ``\\xNN``;
    numbers and other text as they are."""
    if not isinstance(value, str):
        return value
    text = _utf8_text(value)
    return TEXT_MARK + text if text.startswith((*FORMULA_STARTS, TEXT_MARK)) else text


def _utf8_text(text: str) -> str:
    """``text`` that UTF-8 encodes: a file name's undecodable byte as ``\\xNN``, any other
    lone surrogate as ``\\udNNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file system byte made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def cell_text(cell: str) -> str:
    """The text ``csv_safe`` wrote as ``cell``."""
    return cell.removeprefix(TEXT_MARK)
