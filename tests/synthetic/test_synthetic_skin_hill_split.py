"""The hill definition's rule for gaps the camera cannot show (docs/measurement.md, "Definitions"):
a dead end that ends within 13 µm (edge to edge) of another furrow meets it and splits its hill;
one farther away splits nothing; the rule is in µm, so the truth is the same at every scale."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.synthetic.skin import synthetic_geometry
from appliance.synthetic.skin_geometry import DEAD_END, SkinGeometry
from appliance.synthetic.skin_hill_split import MEET_GAP_UM, dead_end_gaps_um, split_hills
from appliance.synthetic.skin_truth import ground_truth, polygon_area_px2

SIDE_UM, WIDTH_UM = 350.0, 20.0
ROW_LEFT_UM, ROW_TOP_UM = 420.0, 280.0
FRAME_UM = (3640.0, 910.0)  # 40 x 91 and 10 x 91 µm: whole pixels at 7 and at 13 µm/px
Point = tuple[float, float]


class _Builder:
    """A furrow network drawn by hand in µm, stored in px at one scale."""

    def __init__(self, um_per_px: float) -> None:
        self.um_per_px = um_per_px
        self.vertices: dict[Point, int] = {}
        self.edges: dict[tuple[int, int], int] = {}  # piece -> family
        self.faces: list[tuple[int, ...]] = []

    def vertex(self, point_um: Point) -> int:
        key = (round(point_um[0], 6), round(point_um[1], 6))
        return self.vertices.setdefault(key, len(self.vertices))

    def square(self, left_um: float, top_um: float) -> list[int]:
        """A square hill with a vertex in the middle of each side (as the generator bends
        its furrows there); its vertices in order, the left side's middle last."""
        right, bottom, middle_x, middle_y = (left_um + SIDE_UM, top_um + SIDE_UM,
                                             left_um + SIDE_UM / 2, top_um + SIDE_UM / 2)
        ring = [self.vertex(p) for p in ((left_um, top_um), (middle_x, top_um), (right, top_um),
                                         (right, middle_y), (right, bottom), (middle_x, bottom),
                                         (left_um, bottom), (left_um, middle_y))]
        self.faces.append(tuple(ring))
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            self.edges.setdefault((min(a, b), max(a, b)), 0)
        return ring

    def dead_end(self, start: int, tip_um: Point) -> None:
        self.edges[(start, self.vertex(tip_um))] = DEAD_END

    def geometry(self) -> SkinGeometry:
        pieces = list(self.edges)
        return SkinGeometry(
            width_px=round(FRAME_UM[0] / self.um_per_px),
            height_px=round(FRAME_UM[1] / self.um_per_px),
            vertices_px=np.array(list(self.vertices), dtype=np.float64) / self.um_per_px,
            edges=np.array(pieces, dtype=np.int64),
            edge_width_px=np.full(len(pieces), WIDTH_UM / self.um_per_px),
            edge_family=np.array([self.edges[p] for p in pieces], dtype=np.int64),
            faces=tuple(self.faces),
            pore_centres_px=np.zeros((0, 2)),
            pore_radii_px=np.zeros(0),
            pore_at_junction=np.zeros(0, dtype=np.bool_),
        )


def _row(um_per_px: float, gaps_um: list[float | None]) -> SkinGeometry:
    """A row of square hills; hill i has a dead end from the middle of its left side straight
    across, its round tip ``gaps_um[i]`` short of the right side, edge to edge (None: none)."""
    build = _Builder(um_per_px)
    for index, gap in enumerate(gaps_um):
        left = ROW_LEFT_UM + index * SIDE_UM
        ring = build.square(left, ROW_TOP_UM)
        if gap is not None:
            build.dead_end(ring[-1], (left + SIDE_UM - WIDTH_UM - gap, ROW_TOP_UM + SIDE_UM / 2))
    return build.geometry()


def _hills(geometry: SkinGeometry, um_per_px: float) -> tuple[float, float]:
    """Hill density (1/mm²) and the mean area (mm²) of the inside hills, as the truth says."""
    truth = ground_truth(geometry, um_per_px)
    return truth["hill_density_per_mm2"], truth["hill_mean_area_mm2"]


FRAME_MM2 = FRAME_UM[0] * FRAME_UM[1] / 1e6
SQUARE_MM2 = SIDE_UM**2 / 1e6


def test_a_dead_end_5_um_short_of_a_furrow_splits_its_hill_in_two() -> None:
    geometry = _row(10.0, [5.0])
    assert dead_end_gaps_um(geometry, 10.0) == pytest.approx([5.0])
    density, mean_area = _hills(geometry, 10.0)
    assert density == pytest.approx(2 / FRAME_MM2)
    assert mean_area == pytest.approx(SQUARE_MM2 / 2)  # the two halves of the square


def test_a_dead_end_60_um_short_splits_nothing() -> None:
    geometry = _row(10.0, [60.0])
    assert _hills(geometry, 10.0) == _hills(_row(10.0, [None]), 10.0)
    assert _hills(geometry, 10.0) == pytest.approx((1 / FRAME_MM2, SQUARE_MM2))


def test_the_rule_stops_at_13_um_edge_to_edge() -> None:
    meets, misses = _row(10.0, [MEET_GAP_UM - 0.01]), _row(10.0, [MEET_GAP_UM + 0.01])
    assert _hills(meets, 10.0)[0] == pytest.approx(2 / FRAME_MM2)
    assert _hills(misses, 10.0)[0] == pytest.approx(1 / FRAME_MM2)


def test_a_dead_end_that_ends_near_its_hills_side_splits_off_the_corner() -> None:
    # from the middle of the left side towards the top side, its tip 5 µm short of that side,
    # edge to edge: it cuts the square's top-left corner off along the dead end and its bridge
    build = _Builder(10.0)
    ring = build.square(ROW_LEFT_UM, ROW_TOP_UM)
    tip = (ROW_LEFT_UM + 100.0, ROW_TOP_UM + WIDTH_UM + 5.0)
    build.dead_end(ring[-1], tip)
    geometry = build.geometry()
    (parts,) = split_hills(geometry, 10.0).values()
    areas_um2 = sorted(polygon_area_px2(part) * 100.0 for part in parts)
    # the corner: the triangle-like piece (left middle, tip, the foot on the top side)
    corner = polygon_area_px2(np.array([(0.0, 0.0), (0.0, SIDE_UM / 2), (100.0, SIDE_UM / 2
                                        - (SIDE_UM / 2 - WIDTH_UM - 5.0)), (100.0, 0.0)]))
    assert areas_um2 == pytest.approx([corner, SIDE_UM**2 - corner])


def test_a_dead_end_that_meets_another_dead_end_splits_its_hill_along_both() -> None:
    # A from the left side's middle to the right, B from the top side's middle down, stopping
    # 5 µm short of A (edge to edge); A stops far from the right side (B meets A, not the side)
    build = _Builder(10.0)
    ring = build.square(ROW_LEFT_UM, ROW_TOP_UM)
    middle_y = ROW_TOP_UM + SIDE_UM / 2
    build.dead_end(ring[-1], (ROW_LEFT_UM + 250.0, middle_y))
    build.dead_end(ring[1], (ROW_LEFT_UM + SIDE_UM / 2, middle_y - WIDTH_UM - 5.0))
    geometry = build.geometry()
    # A's tip is 79 µm from B's tip, centre to centre
    assert sorted(dead_end_gaps_um(geometry, 10.0)) == pytest.approx([5.0, np.hypot(75, 25) - 20])
    (parts,) = split_hills(geometry, 10.0).values()
    # the top-left quarter of the square, closed by A, B and B's bridge to A
    areas_um2 = sorted(polygon_area_px2(part) * 100.0 for part in parts)
    assert areas_um2 == pytest.approx([SIDE_UM**2 / 4, SIDE_UM**2 * 3 / 4])


def test_the_rule_is_in_um_the_same_hills_at_7_and_13_um_per_px() -> None:
    gaps: list[float | None] = [5.0, 2.0, 12.0, 12.9, 13.2, 20.0, 60.0, None]
    at_7, at_13 = _hills(_row(7.0, gaps), 7.0), _hills(_row(13.0, gaps), 13.0)
    assert at_7 == pytest.approx(at_13, rel=1e-9)
    # the four dead ends of 2-12.9 µm split their hills, the others do not
    assert at_7[0] == pytest.approx((8 + 4) / FRAME_MM2)
    assert at_7[1] == pytest.approx(8 * SQUARE_MM2 / 12)


@pytest.fixture(scope="module")
def wide_frame() -> tuple[float, SkinGeometry]:
    """The scale and geometry of the first wide frame of seed 7 with 50 dead ends or more."""
    for index in range(20):
        params, geometry = synthetic_geometry(7, index, "wide")
        if (geometry.edge_family == DEAD_END).sum() >= 50:
            return params.um_per_px, geometry
    raise AssertionError("no wide frame of seed 7 among 0-19 has 50 dead ends")


def test_the_parts_of_each_split_hill_add_up_to_the_hill(
        wide_frame: tuple[float, SkinGeometry]) -> None:
    um_per_px, geometry = wide_frame
    gaps = dead_end_gaps_um(geometry, um_per_px)
    parts = split_hills(geometry, um_per_px)
    # one dead end a hill: each one that meets makes one hill more
    assert len(parts) == (gaps <= MEET_GAP_UM).sum() > 20
    for face, pieces in parts.items():
        whole = polygon_area_px2(geometry.vertices_px[list(geometry.faces[face])])
        areas = [polygon_area_px2(piece) for piece in pieces]
        assert len(pieces) == 2
        assert min(areas) > 0.01 * whole
        assert sum(areas) == pytest.approx(whole, rel=1e-9)


# docs/experiments/README.md "hilldef": the truth main f9e8dfbd computed for these frames
TRUTH_BEFORE = {
    (1, 0, "mixed"): (18.221028645833336, 0.05467814749106886),
    (1, 1, "wide"): (40.125675245725944, 0.024883035210821712),
}


@pytest.mark.parametrize(("seed", "index", "preset"), sorted(TRUTH_BEFORE))
def test_a_frame_without_dead_ends_keeps_its_truth(seed: int, index: int, preset: str) -> None:
    params, geometry = synthetic_geometry(seed, index, preset)
    assert not (geometry.edge_family == DEAD_END).any()
    assert _hills(geometry, params.um_per_px) == pytest.approx(TRUTH_BEFORE[seed, index, preset],
                                                               rel=1e-9)


def test_a_dead_end_that_meets_a_furrow_runs_on_to_its_centre_line_in_the_furrow_length() -> None:
    """The meeting dead end bounds hills as a through furrow does, so its centre line goes on
    from its tip to the centre line it meets (the bridge): 5 µm short, edge to edge, it adds
    the side's whole width across; 60 µm short it adds only its own length."""
    plain = ground_truth(_row(10.0, [None]), 10.0)["furrow_density_mm_per_mm2"]

    def added_um(gap_um: float) -> float:
        truth = ground_truth(_row(10.0, [gap_um]), 10.0)
        assert truth["furrow_mean_width_um"] == pytest.approx(WIDTH_UM)
        return (truth["furrow_density_mm_per_mm2"] - plain) * FRAME_MM2 * 1000.0

    assert added_um(5.0) == pytest.approx(SIDE_UM)  # 325 µm of dead end, 25 µm of bridge
    assert added_um(60.0) == pytest.approx(SIDE_UM - WIDTH_UM - 60.0)
