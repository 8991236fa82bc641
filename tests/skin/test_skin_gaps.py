"""Hill borders that a gap cuts (skin/gaps.py): a dead end that stops short of the furrow across
its hill, the hill's top between them too narrow to stay a hill region, leaves one hill; a
furrow that fades between two hills of their own size keeps them two."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.skin.borders import BorderSegments, border_segments
from appliance.skin.gaps import gap_hills
from appliance.skin.hills import FURROW_LEVEL, HILL_LEVEL, label_areas
from appliance.skin.preprocess import WORK_UM_PER_PX
from appliance.skin.texture import hill_cells

SQUARE_PX = 25  # lattice squares of 500 µm at the work scale
ROWS, COLUMNS = 6, 8
CLEAR = 0.2  # valley response of the lattice's furrows
FLANK = 0.75 * CLEAR
NECK = 0.5 * (HILL_LEVEL + FURROW_LEVEL)  # above a hill region, below a furrow
ROW, COLUMN = 2, 3  # the square that is drawn into


def _lattice() -> np.ndarray:
    """Valley response of a lattice of squares, one hill each: furrows three pixels wide, their
    flanks at three quarters of their centre's response."""
    response = np.zeros((ROWS * SQUARE_PX + 1, COLUMNS * SQUARE_PX + 1), dtype=np.float32)
    for flank in (1, SQUARE_PX - 1):
        response[flank::SQUARE_PX, :] = FLANK
        response[:, flank::SQUARE_PX] = FLANK
    response[::SQUARE_PX, :] = CLEAR
    response[:, ::SQUARE_PX] = CLEAR
    return response


def _hills(response: np.ndarray) -> np.ndarray:
    """Every pixel's hill: the hill cells, then those a gap cuts merged (texture steps 3 and 5)."""
    cells, masks = hill_cells(response, WORK_UM_PER_PX)
    areas = label_areas(cells, int(cells.max()) + 1)
    cell_hills = gap_hills(border_segments(cells, masks=masks), response, areas)
    hills: np.ndarray = cell_hills[cells]
    return hills


def _hill_at(cells: np.ndarray, row: int, column: int, x: int, y: int) -> int:
    return int(cells[row * SQUARE_PX + y, column * SQUARE_PX + x])


def _with_dead_end(response: np.ndarray) -> np.ndarray:
    """A dead end from the middle of the square's left side two fifths of the way across, and
    on from its tip to the right side a neck of hill too shaded to stay a hill region, lowest
    in its middle (one lowest pixel: the gap reads the same from either end of the border)."""
    top, left = ROW * SQUARE_PX, COLUMN * SQUARE_PX
    middle = top + SQUARE_PX // 2
    tip = left + 2 * SQUARE_PX // 5
    response[middle - 1:middle + 2, left:tip + 1] = FLANK
    response[middle, left:tip + 1] = CLEAR
    neck = np.arange(tip + 1, left + SQUARE_PX - 1)
    lowest = (neck[0] + neck[-1]) // 2
    response[middle - 1:middle + 2, neck] = NECK + 0.002 * np.abs(neck - lowest)
    return response


def test_a_dead_end_stopping_short_of_the_next_furrow_leaves_one_hill() -> None:
    cells = _hills(_with_dead_end(_lattice()))
    above = _hill_at(cells, ROW, COLUMN, SQUARE_PX - 3, 3)
    below = _hill_at(cells, ROW, COLUMN, SQUARE_PX - 3, SQUARE_PX - 3)
    assert above == below
    # and every other square is a hill of its own
    assert len(np.unique(cells)) == ROWS * COLUMNS


def test_a_furrow_that_fades_between_two_hills_keeps_them_two() -> None:
    response = _lattice()
    # the side between the square and the one right of it fades to the neck over a stretch of
    # its middle: a furrow on both sides of it, and two hills of their own size
    x = (COLUMN + 1) * SQUARE_PX
    top = ROW * SQUARE_PX
    response[top + 10:top + 16, x] = NECK
    cells = _hills(response)
    left = _hill_at(cells, ROW, COLUMN, SQUARE_PX - 3, 12)
    assert left != _hill_at(cells, ROW, COLUMN + 1, 3, 12)
    assert len(np.unique(cells)) == ROWS * COLUMNS


def test_the_gap_step_reads_each_border_s_cracks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The borders whose lowest crack is low enough keep the responses read for that test: the
    cracks' midpoints are read once for the responses and once to order them along their
    border, not again for the gap's responses."""
    reads: list[int] = []
    read = BorderSegments.crack_xs

    def counted(segments: BorderSegments, at: np.ndarray) -> np.ndarray:
        reads.append(len(at))
        return read(segments, at)

    monkeypatch.setattr(BorderSegments, "crack_xs", counted)
    cells = _hills(_with_dead_end(_lattice()))
    assert len(np.unique(cells)) == ROWS * COLUMNS  # the dead end's hill joined, as above
    assert len(reads) == 2
