"""Text cells of the CSV files people open in a spreadsheet, kept from running as formulas.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula, so text from outside (a kiosk's label, a slide file's name)
could fetch a link or run a command when the file is opened (OWASP "CSV injection"). Such a
cell gets a leading apostrophe, which a spreadsheet takes as "this is text" and does not show;
so does a cell that starts with an apostrophe itself, which a spreadsheet would otherwise drop.
Every text thus reads as it was, in a spreadsheet and through ``cell_text`` (a CSV the product
reads back: pathology results.csv).
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, or whose apostrophe it would take
    for its text mark, with a leading apostrophe; numbers and other text as they are."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, TEXT_MARK)):
        return TEXT_MARK + value
    return value


def cell_text(cell: str) -> str:
    """The text ``csv_safe`` wrote as ``cell``."""
    return cell.removeprefix(TEXT_MARK)
