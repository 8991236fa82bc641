"""Ground truth of synthetic skin, checked on geometry built by hand and on generated networks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.synthetic.skin import synthetic_geometry
from appliance.synthetic.skin_geometry import SECONDARY, SkinGeometry
from appliance.synthetic.skin_truth import area_in_frame_px2, clipped_lengths_px, ground_truth

UM_PER_PX = 10.0
GRID_XS = (-10.0, 20.0, 50.0, 80.0, 110.0, 140.0)
GRID_YS = (-10.0, 30.0, 70.0, 110.0)
VERTICAL_WIDTH_PX, HORIZONTAL_WIDTH_PX = 3.0, 5.0


def _grid_geometry() -> SkinGeometry:
    """A 100 x 80 px frame (1 mm x 0.8 mm) crossed by a rectangular furrow grid, with 4 pores."""
    nx, ny = len(GRID_XS), len(GRID_YS)
    vertices = np.array([(x, y) for y in GRID_YS for x in GRID_XS], dtype=np.float64)

    def vid(i: int, j: int) -> int:
        return j * nx + i

    horizontal = [(vid(i, j), vid(i + 1, j)) for j in range(ny) for i in range(nx - 1)]
    vertical = [(vid(i, j), vid(i, j + 1)) for j in range(ny - 1) for i in range(nx)]
    faces = tuple(
        (vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1))
        for j in range(ny - 1)
        for i in range(nx - 1)
    )
    widths = [HORIZONTAL_WIDTH_PX] * len(horizontal) + [VERTICAL_WIDTH_PX] * len(vertical)
    return SkinGeometry(
        width_px=100,
        height_px=80,
        vertices_px=vertices,
        edges=np.array(horizontal + vertical, dtype=np.int64),
        edge_width_px=np.array(widths),
        edge_family=np.zeros(len(widths), dtype=np.int64),
        faces=faces,
        pore_centres_px=np.array([(50.0, 30.0), (10.0, 10.0), (99.0, 40.0), (-2.0, 50.0)]),
        pore_radii_px=np.array([5.0, 3.0, 4.0, 4.0]),
        pore_at_junction=np.array([True, False, False, False]),
    )


def _segment_area(radius: float, distance: float) -> float:
    """Area of the part of a disc beyond a chord at ``distance`` from its centre."""
    return radius**2 * math.acos(distance / radius) - distance * math.sqrt(radius**2 - distance**2)


def test_grid_furrows_by_hand() -> None:
    truth = ground_truth(_grid_geometry(), UM_PER_PX)
    # In frame: verticals x=20,50,80 over 80 px, horizontals y=30,70 over 100 px -> 4.4 mm.
    assert truth["furrow_density_mm_per_mm2"] == pytest.approx(4.4 / 0.8)
    assert truth["furrow_mean_width_um"] == pytest.approx((240 * 3 + 200 * 5) / 440 * UM_PER_PX)
    assert truth["furrow_anisotropy"] == pytest.approx(40 / 440)


def test_grid_hills_by_hand() -> None:
    truth = ground_truth(_grid_geometry(), UM_PER_PX)
    # Inside: the two 30x40 px cells at x 20-80, y 30-70; cut: 10 cells; outside: x 110-140.
    assert truth["hill_density_per_mm2"] == pytest.approx((2 + 0.5 * 10) / 0.8)
    assert truth["hill_mean_area_mm2"] == pytest.approx(30 * 40 * UM_PER_PX**2 / 1e6)


def test_grid_pores_by_hand() -> None:
    truth = ground_truth(_grid_geometry(), UM_PER_PX)
    assert truth["pore_count"] == 3  # the pore centred at x=-2 lies outside the frame
    assert truth["pore_density_per_cm2"] == pytest.approx(3 / 0.008)
    assert truth["pore_mean_diameter_um"] == pytest.approx((10 + 6 + 8) / 3 * UM_PER_PX)
    in_frame_px2 = (
        math.pi * 25 + math.pi * 9 + (math.pi * 16 - _segment_area(4, 1)) + _segment_area(4, 2)
    )
    assert truth["pore_area_ratio"] == pytest.approx(in_frame_px2 / 8000, rel=1e-5)


def test_clipping_of_a_diagonal_through_a_corner() -> None:
    starts = np.array([[-10.0, -10.0], [5.0, 5.0], [200.0, 0.0]])
    ends = np.array([[10.0, 10.0], [5.0, 50.0], [300.0, 0.0]])
    lengths = clipped_lengths_px(starts, ends, 100.0, 20.0)
    assert lengths == pytest.approx([10 * math.sqrt(2), 15.0, 0.0])


def _face_edge_counts(geometry: SkinGeometry) -> Counter[tuple[int, int]]:
    """How many hills each polygon side belongs to."""
    counts: Counter[tuple[int, int]] = Counter()
    for face in geometry.faces:
        for a, b in zip(face, face[1:] + face[:1], strict=True):
            if a != b:
                counts[(min(a, b), max(a, b))] += 1
    return counts


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["fine", "normal", "coarse"]))
def test_every_drawn_furrow_separates_two_hills(seed: int, preset: str) -> None:
    _, geometry = synthetic_geometry(seed, 0, preset)
    counts = _face_edge_counts(geometry)
    starts = geometry.vertices_px[geometry.edges[:, 0]]
    ends = geometry.vertices_px[geometry.edges[:, 1]]
    in_frame = clipped_lengths_px(starts, ends, geometry.width_px, geometry.height_px) > 0
    kept = {(min(a, b), max(a, b)) for a, b in geometry.edges[in_frame].tolist()}
    assert kept, "no furrow crosses the frame"
    assert all(counts[edge] == 2 for edge in kept)
    every_furrow = {(min(a, b), max(a, b)) for a, b in geometry.edges.tolist()}
    assert set(counts) <= every_furrow  # every hill side is a drawn furrow


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["fine", "normal", "coarse"]))
@example(136, "normal")  # once overlapped by 2 px²: a bend crossed a neighbouring furrow
def test_hills_tile_the_frame_without_gaps_or_overlaps(seed: int, preset: str) -> None:
    _, geometry = synthetic_geometry(seed, 1, preset)
    width, height = float(geometry.width_px), float(geometry.height_px)
    covered_px2 = sum(
        area_in_frame_px2(geometry.vertices_px[list(face)], width, height)
        for face in geometry.faces
    )
    assert covered_px2 == pytest.approx(width * height, rel=1e-9)


def test_hill_areas_tile_the_frame() -> None:
    params, geometry = synthetic_geometry(5, 2, "normal")
    truth = ground_truth(geometry, params.um_per_px)
    frame_mm2 = geometry.width_px * geometry.height_px * params.um_per_px**2 / 1e6
    # Inside hills plus half the cut ones cover about the frame area.
    covered = truth["hill_density_per_mm2"] * truth["hill_mean_area_mm2"]
    assert covered == pytest.approx(1.0, abs=0.1)
    assert frame_mm2 == pytest.approx(122.88)


def test_secondary_furrows_are_dropped_with_age() -> None:
    shares = {}
    for preset in ("fine", "coarse"):
        families = [synthetic_geometry(3, i, preset)[1].edge_family for i in range(3)]
        shares[preset] = np.mean(np.concatenate(families) == SECONDARY)
    assert shares["fine"] > shares["coarse"] + 0.05
