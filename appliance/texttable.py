"""Plain-text tables for the commands that print rows to a terminal, and counted nouns for
their summaries."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """The rows (the header first) as lines, each column as wide as its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows]


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, the noun plural (an ``s`` added) unless the count is one: "1
    frame", "2 frames", "0 slides"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
