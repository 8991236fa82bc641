"""Splits of a hill region: a faint furrow between two hills keeps them apart where the frame's
split borders fall into dips and furrows; a frame whose borders do not separate keeps the fixed
share (splits.split_share_limit)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.skin.borders import CrackMasks
from appliance.skin.hills import CORE_LEVEL, FURROW_LEVEL, HILL_LEVEL, MIN_SPLIT_DEPTH, border_depth
from appliance.skin.preprocess import WORK_UM_PER_PX
from appliance.skin.splits import MIN_FURROW_SHARE, SPLIT_SHARE_FLOOR, split_share_limit
from appliance.skin.texture import hill_cells

SQUARE_PX = 25  # lattice squares of 500 µm at the work scale
ROWS, COLUMNS = 12, 16
CLEAR = 0.2  # valley response of the lattice's furrows
DIP = 0.5 * (CORE_LEVEL + HILL_LEVEL)  # a dome's own shading: splits a core, no furrow


def _faint_diagonal(response: np.ndarray, corner: np.ndarray, below_every: int) -> None:
    """A faint furrow from corner to corner of one square: one pixel in ``below_every`` just
    below FURROW_LEVEL, the others above it, and a gap in its middle where the two hills run
    into one region (at the level of a dip: their cores stay apart)."""
    for step in range(SQUARE_PX + 1):
        x, y = corner + step
        level = 0.8 * FURROW_LEVEL if step % below_every == 0 else 1.5 * FURROW_LEVEL
        response[y, x] = max(response[y, x], level)
    middle = corner + SQUARE_PX // 2
    response[middle[1] - 1:middle[1] + 2, middle[0] - 1:middle[0] + 2] = DIP


def _dips(response: np.ndarray, corner: np.ndarray) -> None:
    """In each triangle of the square, a line of shading from leg to leg, parallel to the
    diagonal: it cuts the triangle's core in two but is no furrow."""
    x, y = corner
    cut = SQUARE_PX // 2
    # the triangle above the diagonal (legs: the top and right sides) and the one below it
    cv2.line(response, (x + cut, y), (x + SQUARE_PX, y + SQUARE_PX - cut), DIP, 1)
    cv2.line(response, (x, y + cut), (x + SQUARE_PX - cut, y + SQUARE_PX), DIP, 1)


def _lattice(faint: bool = True, dips: bool = True) -> np.ndarray:
    """Valley response of a lattice of squares, each cut into two triangular hills by a faint
    furrow (``faint``; else by nothing): in every third square one pixel in four is below
    FURROW_LEVEL (under MIN_FURROW_SHARE on a furrow), in the others one in twenty-six; each
    triangle with a dip of shading (``dips``)."""
    height, width = ROWS * SQUARE_PX + 1, COLUMNS * SQUARE_PX + 1
    response = np.zeros((height, width), dtype=np.float32)
    for row in range(ROWS):
        for column in range(COLUMNS):
            corner = np.array([column * SQUARE_PX, row * SQUARE_PX])
            if faint:
                _faint_diagonal(response, corner, 4 if _fainter(row, column) else SQUARE_PX + 1)
            if dips:
                _dips(response, corner)
    response[::SQUARE_PX, :] = CLEAR
    response[:, ::SQUARE_PX] = CLEAR
    return response


def _fainter(row: int, column: int) -> bool:
    return (row + column) % 3 == 0


def _label_at(cells: np.ndarray, row: int, column: int, above: bool) -> int:
    """The cell of the triangle above (x > y) or below the diagonal of square (row, column),
    read near that triangle's right-angle corner."""
    x, y = column * SQUARE_PX, row * SQUARE_PX
    inset = 3
    at = (y + inset, x + SQUARE_PX - inset) if above else (y + SQUARE_PX - inset, x + inset)
    return int(cells[at])


def test_a_faint_furrow_between_two_hills_splits_them() -> None:
    # the fainter furrows lie on a furrow for 3/4 of their length, under MIN_FURROW_SHARE, the
    # others for nearly all of it; the dips' borders hardly at all: the frame's split borders
    # fall into dips and furrows, and the frame's own split between them keeps every furrow
    cells, _ = hill_cells(_lattice(), WORK_UM_PER_PX)
    inner = [(row, column) for row in range(1, ROWS - 1) for column in range(1, COLUMNS - 1)]
    assert any(_fainter(r, c) for r, c in inner)
    split = [_label_at(cells, r, c, True) != _label_at(cells, r, c, False) for r, c in inner]
    assert all(split)
    # and the dips split no triangle: one cell each
    triangles = {_label_at(cells, r, c, above) for r, c in inner for above in (True, False)}
    assert len(triangles) == 2 * len(inner)


def test_a_square_with_only_dips_stays_one_hill_per_triangle_half() -> None:
    # no faint furrow: each square is one hill whose core the dips cut into three; every split
    # border is a dip, none stays
    cells, _ = hill_cells(_lattice(faint=False), WORK_UM_PER_PX)
    inner = [(row, column) for row in range(1, ROWS - 1) for column in range(1, COLUMNS - 1)]
    assert all(_label_at(cells, r, c, True) == _label_at(cells, r, c, False) for r, c in inner)


def test_split_borders_that_separate_move_the_limit_to_their_own_split() -> None:
    rng = np.random.default_rng(5)
    dips = np.clip(rng.normal(0.1, 0.08, 400), 0.0, 1.0)
    furrows = np.clip(rng.normal(0.9, 0.1, 200), 0.0, 1.0)
    limit = split_share_limit(np.concatenate([dips, furrows]))
    assert SPLIT_SHARE_FLOOR <= limit < MIN_FURROW_SHARE - 0.1


def test_split_borders_of_one_group_keep_the_fixed_share() -> None:
    rng = np.random.default_rng(6)
    one_group = np.clip(rng.normal(0.55, 0.15, 600), 0.0, 1.0)
    assert split_share_limit(one_group) == pytest.approx(MIN_FURROW_SHARE)
    assert split_share_limit(np.full(300, 0.6)) == MIN_FURROW_SHARE
    assert split_share_limit(np.zeros(0)) == MIN_FURROW_SHARE


def test_split_borders_whose_upper_group_is_no_furrow_keep_the_fixed_share() -> None:
    # two groups, but the upper one is dips too (a third of them on a furrow)
    rng = np.random.default_rng(8)
    dips = np.clip(np.concatenate([rng.normal(0.05, 0.03, 400), rng.normal(0.35, 0.08, 200)]),
                   0.0, 1.0)
    assert split_share_limit(dips) == MIN_FURROW_SHARE


def test_the_limit_moves_continuously_with_the_shares() -> None:
    # no step: shares moved a little (as a recalibration moves them) move the limit a little,
    # and ten times less for a move ten times smaller
    rng = np.random.default_rng(7)
    shares = np.concatenate([rng.uniform(0.0, 0.35, 300), rng.uniform(0.6, 1.0, 150)])
    for step in (0.002, 0.0002):
        limits = [split_share_limit(np.clip(shares + shift, 0.0, 1.0))
                  for shift in np.arange(-0.03, 0.03, step)]
        assert np.ptp(limits) > 0.0
        assert np.max(np.abs(np.diff(limits))) <= 5.0 * step, limits


def _diagonal(response: np.ndarray, corner: np.ndarray, level: float) -> None:
    """A valley at ``level`` from corner to corner of one square (on a furrow all along but for
    a gap in its middle, at the level of a dip, where its two hills run into one region)."""
    for step in range(SQUARE_PX + 1):
        x, y = corner + step
        response[y, x] = max(response[y, x], level)
    middle = corner + SQUARE_PX // 2
    response[middle[1] - 1:middle[1] + 2, middle[0] - 1:middle[0] + 2] = DIP


def test_many_split_borders_shallow_against_the_frame_s_furrows_are_no_furrows() -> None:
    # a lattice of clear furrows; every fourth square cut corner to corner by a valley that
    # lies above FURROW_LEVEL all along: at 0.045 (under MIN_SPLIT_DEPTH of the lattice's 0.2,
    # as the shaded side of a bump under an oblique light reads; one in every eighth square,
    # many in the frame) or at 0.1 (half as deep as the lattice's furrows: a faint furrow)
    response = _lattice(faint=False, dips=False)
    cut = [(row, column) for row in range(1, ROWS - 1) for column in range(1, COLUMNS - 1)
           if (row + column) % 4 == 0]
    shallow = {(row, column) for row, column in cut if column % 2 == 0}
    for row, column in cut:
        level = 1.5 * FURROW_LEVEL if (row, column) in shallow else 0.1
        _diagonal(response, np.array([column * SQUARE_PX, row * SQUARE_PX]), level)
    assert 1.5 * FURROW_LEVEL < MIN_SPLIT_DEPTH * CLEAR < 0.1
    cells, _ = hill_cells(response, WORK_UM_PER_PX)
    assert shallow
    assert len(shallow) < len(cut)
    for row, column in cut:
        split = _label_at(cells, row, column, True) != _label_at(cells, row, column, False)
        assert split == ((row, column) not in shallow), (row, column)


def test_a_single_shallow_split_border_in_a_frame_is_a_faint_furrow() -> None:
    # one square of the lattice cut by the same shallow valley: one split border among some
    # 200 seeds is a faint furrow among deep ones, not a shaded micro-relief; it stays
    response = _lattice(faint=False, dips=False)
    row, column = ROWS // 2, COLUMNS // 2
    _diagonal(response, np.array([column * SQUARE_PX, row * SQUARE_PX]), 1.5 * FURROW_LEVEL)
    cells, _ = hill_cells(response, WORK_UM_PER_PX)
    assert _label_at(cells, row, column, True) != _label_at(cells, row, column, False)


def test_the_frame_s_furrows_read_at_the_median_of_its_cell_borders() -> None:
    # cells in vertical stripes 8 px wide: 31 borders, 16 of them at 0.25, 15 at 0.1
    labels = np.repeat(np.arange(32, dtype=np.uint16), 8)[None, :].repeat(64, axis=0)
    response = np.zeros(labels.shape, dtype=np.float32)
    for border in range(1, 32):
        response[:, 8 * border] = 0.25 if border % 2 else 0.1
    assert border_depth(CrackMasks.of(labels), response) == pytest.approx(0.25, abs=1e-3)
    response[:, 8] = 0.1  # now 16 of them at 0.1
    assert border_depth(CrackMasks.of(labels), response) == pytest.approx(0.1, abs=1e-3)
