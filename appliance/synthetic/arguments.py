"""The argparse types of the ``synth`` commands (and of other commands' numbers and paths):
every number has a bounded range, every path and name names something.

A value outside it is a usage error (exit 2) naming the option, the range and what was typed,
never a clamp, a crash deep in a generator or a frame that describes nothing: ``float()`` also
reads ``inf``, ``nan`` and ``1e308``, ``int()`` reads ``-1`` and numbers of any length.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from appliance.numbertext import decimal_number
from appliance.numbertext import whole_number as ascii_whole_number

MAX_SEED = 2**63 - 1  # a seed or frame index: a 64-bit whole number (and a short file name)
MAX_WORKERS = 256


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = ascii_whole_number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number in ASCII digits, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


def finite_number(
    low: float, high: float, what: str, *, above_low: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite number from ``low`` (or over it, ``above_low``) to ``high``;
    ``what`` names the quantity in the error (its unit, where it comes from)."""
    lower = f"over {low:g} and at most" if above_low else f"from {low:g} to"

    def parse(text: str) -> float:
        try:
            value = decimal_number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number in ASCII digits, got {text!r}") from None
        inside = value > low if above_low else value >= low
        if not (math.isfinite(value) and inside and value <= high):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {lower} {high:g} ({what}), got {text!r}")
        return value

    return parse


SEED = whole_number(0, MAX_SEED)
WORKERS = whole_number(1, MAX_WORKERS)


def named_path(text: str) -> Path:
    """argparse type: a file or folder name; an empty one (a script's ``"$DIR"`` with DIR unset)
    is refused, where ``Path("")`` would quietly be the working folder."""
    return Path(named(text))


def given(what: str) -> Callable[[str], str]:
    """argparse type: a value that names ``what``; an empty or blank one (a script's
    ``"$VARIABLE"`` left unset) is refused, where a command would take it for the option left
    out and do what it does without it."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"{'blank' if text else 'empty'}; name {what} (a script's \"$VARIABLE\" left "
                "unset?)")
        return text

    return parse


def named(text: str) -> str:
    """argparse type: ``named_path`` keeping the name as given (it is shown as typed)."""
    if not text:
        raise argparse.ArgumentTypeError(
            "empty; name a file or folder (a script's \"$VARIABLE\" left unset?)")
    return text
