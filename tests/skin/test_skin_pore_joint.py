"""Pores on furrows and at junctions told from the junctions by their depth over their own arms and
their width over the arms' half-width together (docs/measurement.md "Pores", the joint pass;
docs/experiments/README.md "widthpit", "widthpit2"). The scenes: straight furrows in a brick
pattern (every junction a T, as the fourth renderer draws them), a dark pit at every junction no
wider than its furrow and deeper than the pores, and funnel-free round pores on some junctions,
so that the junctions around a pore are as deep as it is (a frame whose pits are mostly pores
and junction pits, the fourth renderer's) and only its own arms tell it."""

from __future__ import annotations

import cv2
import numpy as np

from appliance.skin.analysis import analyze
from appliance.skin.pore_width import over_arms

CELL_PX, FURROW_PX, FURROW_DEPTH = 44, 8.0, 0.18
PIT_RADIUS_PX, PIT_DEPTH = 4.0, 0.75  # a junction pit: the furrow's width across, 4 x as deep
PORE_RADIUS_PX, PORE_DEPTH = 14.0, 0.6  # a pore: 280 µm across at 10 µm/px, 3.3 x the furrow
UM_PER_PX = 10.0


def _junctions() -> np.ndarray:
    """The T-junctions of the brick pattern well inside a 640 x 480 frame (x, y px)."""
    points = [(column * CELL_PX + (row % 2) * CELL_PX / 2 + shift, row * CELL_PX)
              for row in range(12) for column in range(-1, 16) for shift in (0.0, CELL_PX / 2)]
    inside = np.array([p for p in points if 60 < p[0] < 580 and 60 < p[1] < 420])
    result: np.ndarray = np.unique(inside, axis=0)
    return result


def _brick(pores: np.ndarray, seed: int = 0) -> np.ndarray:
    """The scene's RGB frame with round pores at ``pores`` (x, y px), depths max-combined."""
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
    row = np.floor(ys / CELL_PX)
    across = np.minimum(ys % CELL_PX, CELL_PX - ys % CELL_PX)
    along = (xs - (row % 2) * CELL_PX / 2) % CELL_PX
    across = np.minimum(across, np.minimum(along, CELL_PX - along))
    depth = FURROW_DEPTH * np.clip(FURROW_PX / 2 - across + 0.5, 0.0, 1.0)
    for radius, level, spots in ((PIT_RADIUS_PX, PIT_DEPTH, _junctions()),
                                 (PORE_RADIUS_PX, PORE_DEPTH, pores)):
        for x, y in spots:
            disc = np.clip(radius - np.hypot(xs - x, ys - y) + 0.5, 0.0, 1.0)
            depth = np.maximum(depth, level * disc)
    light = 1.0 - cv2.GaussianBlur(depth.astype(np.float32), (0, 0), 1.2)
    noise = np.random.default_rng(seed).normal(0.0, 2.0, (480, 640, 3))
    rgb = light[..., None] * np.array([205.0, 160.0, 140.0]) + noise
    result: np.ndarray = np.clip(rgb, 0, 255).astype(np.uint8)
    return result


def _found(rgb: np.ndarray, pores: np.ndarray, um_per_px: float = UM_PER_PX) -> tuple[int, int]:
    """Pores counted, and how many of them lie on a drawn pore (within its radius)."""
    analysis = analyze(rgb, um_per_px)
    centres = analysis.pore_centres_frame_px().reshape(-1, 2)
    on = sum(bool(len(pores)) and float(np.min(np.hypot(*(pores - c).T))) < PORE_RADIUS_PX
             for c in centres)
    return len(centres), on


def test_junction_pits_without_a_pore_are_not_pores() -> None:
    """Each junction pit is 4 times as deep as its arms, but no wider than their furrow."""
    count, _ = _found(_brick(np.zeros((0, 2))), np.zeros((0, 2)))
    assert count == 0


def test_pores_at_junctions_as_deep_as_the_junction_pits_are_counted() -> None:
    """Main counted 1 of the 32: each pore is no deeper than the junctions around it (its
    score, fitted on junctions as deep as their pores, under the keep limit), but 3.3 times as
    deep as its arms and 3.5 times as wide as their half-width."""
    pores = _junctions()[::6]
    count, on = _found(_brick(pores), pores)
    assert on == count  # nothing but pores counted
    assert count >= len(pores) // 2


def _band_and_disc(disc_radius_px: float, shift_px: float = 0.0) -> np.ndarray:
    """A depth map (fine px) of a straight furrow band 5 px wide at depth 0.5 through a disc of
    ``disc_radius_px`` as deep (the deeper of the two), edges anti-aliased, both centred
    ``shift_px`` below row 60."""
    ys, xs = np.mgrid[0:121, 0:121].astype(np.float64)
    inside = np.maximum(2.5 - np.abs(ys - 60.0 - shift_px),
                        disc_radius_px - np.hypot(xs - 60.0, ys - 60.0 - shift_px))
    depth = (0.5 * np.clip(inside + 0.5, 0.0, 1.0)).astype(np.float32)
    result: np.ndarray = cv2.GaussianBlur(depth, (0, 0), 1.0)
    return result


def test_over_arms_reads_a_disc_against_the_band_through_it() -> None:
    centre = np.array([[60.0, 60.0]])
    plain = over_arms(_band_and_disc(2.0), centre, 0.25)[0]
    wide = over_arms(_band_and_disc(8.0), centre, 0.25)[0]
    assert 0.9 <= plain <= 1.1  # a stretch of furrow: as wide as itself
    assert 2.9 <= wide <= 3.5  # a disc of radius 8 on a band of half-width 2.5


def test_over_arms_moves_smoothly_as_the_pit_moves_under_the_pixels() -> None:
    """The distance field is read continuously in the depth: a pit moved by tenths of a pixel
    reads within 3 % from one place to the next (a binary distance transform stepped by 12 %)."""
    readings = [over_arms(_band_and_disc(5.0, shift), np.array([[60.0, 60.0 + shift]]), 0.25)[0]
                for shift in np.linspace(0.0, 1.0, 11)]
    steps = np.abs(np.diff(readings)) / np.asarray(readings[:-1])
    assert np.max(steps) < 0.03


def test_over_arms_of_a_pit_in_a_dark_patch_is_not_read() -> None:
    dark = np.full((121, 121), 0.5, dtype=np.float32)
    assert over_arms(dark, np.array([[60.0, 60.0]]), 0.25)[0] == 0.0
