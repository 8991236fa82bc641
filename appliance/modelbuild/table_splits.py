"""A labelled table's splits and its fewest rows: plain values, without NumPy, so that the
command line's options (``models evaluate --split``, ``models skin-table --rows``) name them
without loading the table code (table.py)."""

from __future__ import annotations

MIN_TABLE_ROWS = 6  # a skin table: two rows of each of the three grades (tertiles)
SPLITS = ("train", "calibration", "validation", "test")
SPLIT_SHARES = {"train": 0.6, "calibration": 0.1, "validation": 0.1, "test": 0.2}
