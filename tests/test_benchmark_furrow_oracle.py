"""benchmarks/skin_furrow_oracle.py: the *detected* cells, true hills as the method found them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from skin_furrow_oracle import _detected  # noqa: E402


def _strips(widths: list[int], height: int = 6) -> np.ndarray:
    """Labels 1, 2, ... in vertical strips of the given widths."""
    return np.repeat(np.arange(1, len(widths) + 1), widths)[None, :].repeat(height, axis=0)


def test_hills_the_method_merged_become_one_cell_with_the_true_borders_elsewhere() -> None:
    oracle = _strips([4, 5, 6])  # three true hills
    cells = np.zeros_like(oracle)
    cells[:, :10] = 7  # the method merged the first two, its border off the true one
    cells[:, 10:] = 3
    detected = _detected(oracle, cells.astype(np.uint16))
    assert detected.dtype == np.uint16
    assert np.unique(detected[:, :9]).tolist() == [7]  # hills 1 and 2: one cell
    assert np.unique(detected[:, 9:]).tolist() == [3]  # the true border at column 9, not 10


def test_a_hill_the_method_split_stays_one_cell_of_its_larger_part() -> None:
    oracle = _strips([8, 8])
    cells = _strips([3, 5, 8])  # the first hill split in two cells, 3 and 5 px wide
    detected = _detected(oracle, cells.astype(np.uint16))
    assert np.unique(detected[:, :8]).tolist() == [2]
    assert np.unique(detected[:, 8:]).tolist() == [3]
