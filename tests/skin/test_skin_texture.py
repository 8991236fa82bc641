"""Hill cells on drawn scenes: faint furrows split hills, stray marks do not, density counts."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial import Voronoi

from appliance.skin.analysis import analyze
from appliance.skin.borders import CrackMasks
from appliance.skin.hills import hair_mask
from appliance.skin.preprocess import prepare
from appliance.skin.texture import (
    Texture,
    furrow_mask,
    furrow_sample,
    measure_texture,
    tophat_response,
)

UM_PER_PX = 10.0
SIZE = (960, 1280)  # rows, columns: one camera frame
SPACING_PX = 50.0  # hills 500 µm apart: 0.25 mm² squares
SKIN_GREY = 175.0
QUAD = (1, 0)  # the one lattice square of the triangle scenes left without a diagonal


def _lattice(angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame centre and the two lattice directions turned by ``angle_deg`` (unit vectors)."""
    angle = math.radians(angle_deg)
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    return np.array([SIZE[1] / 2.0, SIZE[0] / 2.0]), along, across


def _grid_lines(angle_deg: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both families of straight furrows of a square lattice turned by ``angle_deg``."""
    centre, along, across = _lattice(angle_deg)
    lines = []
    for direction, offset_dir in ((along, across), (across, along)):
        for k in range(-20, 21):
            base = centre + (k + 0.5) * SPACING_PX * offset_dir
            lines.append((base - 2000.0 * direction, base + 2000.0 * direction))
    return lines


def _diagonals(angle_deg: float, skip: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One diagonal furrow in every lattice square but ``skip``: triangular hills."""
    centre, along, across = _lattice(angle_deg)
    half = 0.5 * SPACING_PX * (along + across)
    return [
        (middle - half, middle + half)
        for i in range(-16, 17)
        for j in range(-13, 14)
        if (i, j) != skip
        for middle in [centre + (i * along + j * across) * SPACING_PX]
    ]


def _scene(
    angle_deg: float = 12.0,
    extra: list[tuple[np.ndarray, np.ndarray, float, float]] | None = None,
    seed: int = 0,
    triangles: bool = False,
) -> np.ndarray:
    """RGB skin: a lattice of furrows (40 µm wide, 35 % dark), with ``triangles`` a narrower
    diagonal furrow in every square but square (1, 0), optional extra strokes (start, end,
    width px, darkness), a gentle blur and sensor noise."""
    darkness = np.zeros(SIZE, np.float32)
    for start, end in _grid_lines(angle_deg):
        _stroke(darkness, start, end, 4.0, 0.35)
    for start, end in _diagonals(angle_deg, QUAD) if triangles else []:
        _stroke(darkness, start, end, 3.0, 0.3)
    for start, end, width, dark in extra or []:
        _stroke(darkness, start, end, width, dark)
    grey = SKIN_GREY * (1.0 - cv2.GaussianBlur(darkness, (0, 0), 1.0))
    noise = np.random.default_rng(seed).normal(0.0, 2.0, SIZE).astype(np.float32)
    rgb = np.repeat((grey + noise)[..., None], 3, axis=2) * np.array([1.0, 0.85, 0.75], np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _stroke(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float, dark: float
            ) -> None:
    """Darken a straight stroke (keeping the darker of overlapping strokes). Drawn in the box
    around it, its caps and antialiased edge: the pixels a layer of the whole image gets, in a
    small part of the time (the random networks draw thousands of strokes)."""
    thickness = max(1, round(width))
    reach = thickness // 2 + 3
    low = np.floor(np.minimum(start, end)).astype(int) - reach
    high = np.ceil(np.maximum(start, end)).astype(int) + reach + 1
    x0, y0 = max(int(low[0]), 0), max(int(low[1]), 0)
    x1, y1 = min(int(high[0]), image.shape[1]), min(int(high[1]), image.shape[0])
    if x0 >= x1 or y0 >= y1:
        return  # wholly off the image
    box = image[y0:y1, x0:x1]
    layer = np.zeros_like(box)
    points = [tuple(np.round(p * 16).astype(int) - (16 * x0, 16 * y0)) for p in (start, end)]
    cv2.line(layer, points[0], points[1], dark, thickness, cv2.LINE_AA, 4)
    np.maximum(box, layer, out=box)


def _measure(rgb: np.ndarray) -> Texture:
    return measure_texture(prepare(rgb, UM_PER_PX))


def _cell_centre(point: np.ndarray, texture: Texture, scale: float) -> int:
    """The hill label at a point given in frame pixels (x, y); ``scale``: frame px per work px."""
    x, y = (point + 0.5) / scale - 0.5
    return int(texture.hill_labels[round(y), round(x)])


def _a_hill(angle_deg: float, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre of lattice hill (i, j) and its two lattice directions (frame px)."""
    angle = math.radians(angle_deg)
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    centre = np.array([SIZE[1] / 2.0, SIZE[0] / 2.0]) + (i * along + j * across) * SPACING_PX
    return centre, np.stack([along, across])


def _diagonal(angle_deg: float, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """The corners at either end of one diagonal of hill (i, j)."""
    centre, (along, across) = _a_hill(angle_deg, i, j)
    half = 0.5 * SPACING_PX
    return centre - half * (along + across), centre + half * (along + across)


def _dashed(
    start: np.ndarray, end: np.ndarray, stroke: tuple[float, float], dash: float, gap: float
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """A furrow (width px, darkness) broken into dashes ``dash`` px long, ``gap`` px apart."""
    length = float(np.hypot(*(end - start)))
    step = (end - start) / length
    strokes, at = [], 0.0
    while at < length:
        strokes.append((start + at * step, start + min(at + dash, length) * step, *stroke))
        at += dash + gap
    return strokes


@pytest.fixture(scope="module")
def plain() -> Texture:
    return _measure(_scene())


@pytest.fixture(scope="module")
def quad() -> Texture:
    """Triangular hills, and one four-sided hill (two triangles without their diagonal)."""
    return _measure(_scene(triangles=True))


def _sides_of_quad(texture: Texture) -> tuple[int, int]:
    """The hill labels on either side of the missing diagonal of the four-sided hill."""
    scale = SIZE[1] / texture.hill_labels.shape[1]
    centre, (along, across) = _a_hill(12.0, *QUAD)
    side = 0.25 * SPACING_PX * (across - along)
    return _cell_centre(centre + side, texture, scale), _cell_centre(centre - side, texture, scale)


def test_a_lattice_reads_its_hill_density_and_area(plain: Texture) -> None:
    true_density = 1e6 / (SPACING_PX * UM_PER_PX) ** 2  # 4 hills per mm²
    assert plain.metrics["hill_density_per_mm2"] == pytest.approx(true_density, rel=0.03)
    assert plain.metrics["hill_mean_area_mm2"] == pytest.approx(1.0 / true_density, rel=0.03)
    # two furrow families, each 1/spacing lines per unit length: 2 / 0.5 mm = 4 mm/mm²
    assert plain.metrics["furrow_density_mm_per_mm2"] == pytest.approx(4.0, rel=0.03)


def test_a_hill_without_a_furrow_through_it_stays_one(quad: Texture) -> None:
    first, second = _sides_of_quad(quad)
    assert first == second


def test_two_hills_merged_by_a_faint_broken_furrow_are_two(quad: Texture) -> None:
    start, end = _diagonal(12.0, *QUAD)
    faint = _dashed(start, end, (2.0, 0.1), dash=6.0, gap=4.0)
    split = _measure(_scene(triangles=True, extra=faint))
    first, second = _sides_of_quad(split)
    assert first != second
    assert len(np.unique(split.hill_labels)) == len(np.unique(quad.hill_labels)) + 1


def test_a_furrow_that_stops_inside_a_hill_does_not_split_it(quad: Texture) -> None:
    start, end = _diagonal(12.0, *QUAD)
    stub = [(start, start + 0.4 * (end - start), 3.0, 0.3)]  # dies before the hill's middle
    marked = _measure(_scene(triangles=True, extra=stub))
    first, second = _sides_of_quad(marked)
    assert first == second
    assert len(np.unique(marked.hill_labels)) == len(np.unique(quad.hill_labels))


def _shaded_quad() -> Texture:
    """The triangle scene with half of the four-sided hill turned from the lamp (10 % darker):
    a dip across the hill's core that is no furrow."""
    centre, (along, across) = _a_hill(12.0, *QUAD)
    rgb = _scene(triangles=True).astype(np.float32)
    rows, cols = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    dx, dy = cols - centre[0], rows - centre[1]
    inside = (np.abs(dx * along[0] + dy * along[1]) < 20) & (
        np.abs(dx * across[0] + dy * across[1]) < 20
    )
    diagonal = along + across
    rgb[inside & (dx * diagonal[0] + dy * diagonal[1] > 0)] *= 0.9
    return _measure(np.clip(rgb, 0, 255).astype(np.uint8))


def test_a_shading_edge_across_a_hill_does_not_split_it(quad: Texture) -> None:
    shaded = _shaded_quad()
    first, second = _sides_of_quad(shaded)
    assert first == second


@pytest.mark.parametrize("angle_deg", [7.0, 30.0, 57.0])
def test_hill_density_does_not_depend_on_how_the_frame_cuts_the_lattice(angle_deg: float) -> None:
    texture = _measure(_scene(angle_deg=angle_deg, seed=1))
    assert texture.metrics["hill_density_per_mm2"] == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize("top_left", [(0, 0), (240, 320), (100, 500)])
def test_coarse_hills_cut_by_a_small_frame_are_not_over_counted(top_left: tuple[int, int]) -> None:
    # a 6.4 x 4.8 mm frame of 0.25 mm² hills: the centre of a hill the edge cuts is that of its
    # visible part, further in than its own by half of what the edge cuts off; counted in the
    # 200 µm inset alone, the cut hills whose own centre lies outside it read +4.9-6 %
    row, column = top_left
    small = _measure(_scene()[row:row + 480, column:column + 640])
    assert small.metrics["hill_density_per_mm2"] == pytest.approx(4.0, rel=0.025)


def test_texture_features_have_no_step_between_neighbouring_calibrations() -> None:
    rgb = _scene(seed=2)
    keys = ("furrow_density_mm_per_mm2", "hill_density_per_mm2", "hill_mean_area_mm2")
    powers = {"furrow_density_mm_per_mm2": 1, "hill_density_per_mm2": 2, "hill_mean_area_mm2": -2}
    readings = []
    for um in (9.90, 9.95, 10.00, 10.05, 10.10):
        metrics = measure_texture(prepare(rgb, um)).metrics
        readings.append([metrics[k] * um ** powers[k] for k in keys])  # the scale divided out
    values = np.array(readings)
    steps = np.abs(np.diff(values, axis=0)) / values[:-1]
    assert steps.max() <= 0.02, values


def test_a_merged_split_leaves_one_border_per_pair_of_hills(quad: Texture) -> None:
    # the shading splits the hill's core in two; the split is undone before the borders are
    # measured, so the hill's border with each neighbour is one segment, not two pieces that
    # both end at the junction the undone border made
    shaded = _shaded_quad()
    pairs = shaded.segments.cell_pairs
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    assert shaded.metrics["furrow_density_mm_per_mm2"] == pytest.approx(
        quad.metrics["furrow_density_mm_per_mm2"], rel=0.002)


def _strand_cover() -> np.ndarray:
    """Coverage (0..1, rows x columns x 1) of a 60 µm strand across the scene at 33° to the
    lattice, blurred as the scene is."""
    strand = np.zeros(SIZE, np.float32)
    start, end = np.array([-100.0, 150.0]), np.array([1400.0, 1100.0])
    _stroke(strand, start, end, 6.0, 1.0)
    cover: np.ndarray = cv2.GaussianBlur(strand, (0, 0), 1.0)[..., None]
    return cover


def _with_strand(rgb: np.ndarray, melanin: float) -> np.ndarray:
    """The scene with the strand (``_strand_cover``) darkened by ``melanin`` as a hair is
    (blue absorbed most, red least) or, at ``melanin`` 0, by a grey shadow."""
    strand = _strand_cover()
    if melanin > 0:
        absorb = melanin * np.array([0.45, 0.75, 1.05], np.float32)  # red, green, blue
        dark = np.exp(-strand * absorb)
    else:
        dark = 1.0 - 0.6 * strand
    return np.clip(rgb * dark, 0, 255).astype(np.uint8)


def test_a_hair_across_hills_does_not_split_them_but_a_grey_furrow_does(plain: Texture) -> None:
    hair = _measure(_with_strand(_scene(), melanin=3.0))
    # the hills the hair crosses stay one each: the density stays the lattice's
    assert hair.metrics["hill_density_per_mm2"] == pytest.approx(4.0, rel=0.03)
    assert hair.metrics["hill_density_per_mm2"] == pytest.approx(
        plain.metrics["hill_density_per_mm2"], rel=0.02)
    # the same strand, grey (a furrow, not a hair): the ~25 hills it crosses are two each
    furrow = _measure(_with_strand(_scene(), melanin=0.0))
    assert furrow.metrics["hill_density_per_mm2"] > 1.03 * plain.metrics["hill_density_per_mm2"]


def _with_grey_hair(rgb: np.ndarray, level: float = 0.7) -> np.ndarray:
    """The scene with the strand (``_strand_cover``) as a grey hair, drawn as the wide preset
    draws one: each pixel it covers takes ``level`` times its own grey and none of the skin's
    red, so the hair darkens the skin as a furrow does and keeps the relief under it."""
    strand = _strand_cover()
    colour = rgb.astype(np.float32)
    grey = colour @ np.array([0.299, 0.587, 0.114], np.float32)
    drawn = colour * (1.0 - strand) + strand * (level * grey)[..., None]
    return np.clip(drawn, 0, 255).astype(np.uint8)


def test_a_grey_hair_across_hills_is_found_and_splits_none_of_them(plain: Texture) -> None:
    rgb = _with_grey_hair(_scene())
    found = hair_mask(prepare(rgb, UM_PER_PX).rgb_work)
    work = prepare(np.repeat((_strand_cover() * 255).astype(np.uint8), 3, axis=2), UM_PER_PX)
    strand = work.rgb_work[..., 0] > 127  # the hair's middle at work scale
    assert np.mean(found[strand]) > 0.9  # the hair is found all along
    assert np.sum(found) < 3 * np.sum(strand)  # and not much around it
    hair = _measure(rgb)
    # the ~25 hills the hair crosses stay one each, as under a brown hair
    assert hair.metrics["hill_density_per_mm2"] == pytest.approx(4.0, rel=0.03)
    assert hair.metrics["hill_density_per_mm2"] == pytest.approx(
        plain.metrics["hill_density_per_mm2"], rel=0.02)
    # its crossings with the furrows are no pores (the lattice has none)
    assert analyze(rgb, UM_PER_PX).features.pore_count == 0


def _with_glints(rgb: np.ndarray) -> np.ndarray:
    """The scene with white shine: a 100 µm glint on every hill top along a straight row
    across the frame (a long line of pale spots, each greyer than the skin)."""
    shine = np.zeros(SIZE, np.float32)
    centre, along, across = _lattice(12.0)
    for k in range(-16, 17):
        x, y = centre + (k * along + 0.5 * across) * SPACING_PX
        cv2.circle(shine, (round(x), round(y)), 5, 1.0, -1, cv2.LINE_AA)
    cover = cv2.GaussianBlur(shine, (0, 0), 1.0)[..., None]
    return np.clip(rgb * (1.0 - cover) + 250.0 * cover, 0, 255).astype(np.uint8)


def test_a_straight_furrow_network_and_a_row_of_glints_are_no_hair() -> None:
    # straight furrows cross the whole frame, each a long uniform dark strand, and the glints
    # are greyer than the skin in a long row; neither is a narrow strand greyer than the skin
    for rgb in (_scene(), _scene(angle_deg=45.0), _with_glints(_scene())):
        assert not np.any(hair_mask(prepare(rgb, UM_PER_PX).rgb_work))


FRAME_MM2 = SIZE[0] * SIZE[1] * (UM_PER_PX / 1000.0) ** 2


def _length_mm(texture: Texture) -> float:
    return texture.metrics["furrow_density_mm_per_mm2"] * FRAME_MM2


def _spur_pixels(texture: Texture) -> np.ndarray:
    """Work pixels (x, y) of the centre lines that are no border between two hill cells."""
    borders = CrackMasks.of(texture.cell_labels).line_mask()
    rows, cols = np.nonzero(texture.centre_lines & ~borders)
    return np.stack([cols, rows], axis=1).astype(np.float64)


def _near_stroke(points: np.ndarray, start: np.ndarray, end: np.ndarray, scale: float,
                 reach: float) -> np.ndarray:
    """Which work pixels lie within ``reach`` work px of a stroke given in frame px."""
    a, b = (start + 0.5) / scale - 0.5, (end + 0.5) / scale - 0.5
    t = np.clip((points - a) @ (b - a) / float((b - a) @ (b - a)), 0.0, 1.0)
    return np.hypot(*(points - a - t[:, None] * (b - a)).T) <= reach


def _dead_end(i: int, j: int, length_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A furrow from the middle of hill (i, j)'s side into the hill, ending inside it."""
    centre, (_, across) = _a_hill(12.0, i, j)
    start = centre - 0.5 * SPACING_PX * across
    return start, start + length_px * across


@pytest.mark.parametrize("kind", ["from a junction", "from a border"])
def test_a_furrow_that_stops_inside_a_hill_adds_its_length(quad: Texture, kind: str) -> None:
    if kind == "from a junction":  # the four-sided hill's diagonal, dying before the middle
        start, end = _diagonal(12.0, *QUAD)
        end = start + 0.4 * (end - start)
    else:
        start, end = _dead_end(*QUAD, length_px=20.0)
    marked = _measure(_scene(triangles=True, extra=[(start, end, 3.0, 0.3)]))
    true_mm = float(np.hypot(*(end - start))) * UM_PER_PX / 1000.0
    assert _length_mm(marked) - _length_mm(quad) == pytest.approx(true_mm, rel=0.2)
    # it adds length, not hills
    for key in ("hill_density_per_mm2", "hill_mean_area_mm2"):
        assert marked.metrics[key] == quad.metrics[key]


def _strokes_and_dead_end(strokes: list[tuple[np.ndarray, np.ndarray, float, float]]
                          ) -> tuple[Texture, Texture, tuple[np.ndarray, np.ndarray]]:
    """The lattice with ``strokes``, without and with one dead-end furrow 20 px long."""
    start, end = _dead_end(-5, 3, length_px=20.0)  # a hill without a stroke
    without = _measure(_scene(extra=strokes, seed=3))
    with_end = _measure(_scene(extra=[*strokes, (start, end, 3.0, 0.3)], seed=3))
    return without, with_end, (start, end)


def _assert_only_the_dead_end(without: Texture, with_end: Texture,
                              dead_end: tuple[np.ndarray, np.ndarray]) -> None:
    scale = SIZE[1] / with_end.hill_labels.shape[1]
    assert len(_spur_pixels(without)) == 0
    assert np.all(_near_stroke(_spur_pixels(with_end), *dead_end, scale, reach=3.0))
    true_mm = float(np.hypot(*(dead_end[1] - dead_end[0]))) * UM_PER_PX / 1000.0
    assert _length_mm(with_end) - _length_mm(without) == pytest.approx(true_mm, rel=0.2)


def test_the_wedges_of_furrows_meeting_at_acute_angles_are_no_dead_ends() -> None:
    # furrows from a lattice corner at 15-30° to a lattice line, across the hill: between them
    # and the line the furrows' darkness fills a wedge that is no border but no dead end either
    strokes = []
    for (i, j), angle_deg in zip(((-3, -2), (0, 1), (3, 2), (-2, 3), (2, -3)),
                                 (15.0, 20.0, 25.0, 30.0, 15.0), strict=True):
        centre, (along, across) = _a_hill(12.0, i, j)
        corner = centre - 0.5 * SPACING_PX * (along + across)
        angle = math.radians(angle_deg)
        direction = math.cos(angle) * along + math.sin(angle) * across
        strokes.append((corner, corner + SPACING_PX / math.cos(angle) * direction, 3.0, 0.3))
    _assert_only_the_dead_end(*_strokes_and_dead_end(strokes))


def test_specks_on_hill_tops_are_no_dead_ends() -> None:
    # short dark specks (60 x 30 µm) near the middle of every other hill: furrow-like, but not
    # joined to any border
    rng = np.random.default_rng(0)
    strokes = []
    for i in range(-8, 9, 2):
        for j in range(-6, 7, 2):
            centre = _a_hill(12.0, i, j)[0] + rng.uniform(-5.0, 5.0, 2)
            direction = rng.normal(size=2)
            strokes.append((centre, centre + 6.0 * direction / np.hypot(*direction), 3.0, 0.3))
    _assert_only_the_dead_end(*_strokes_and_dead_end(strokes))


def _random_hills(seed: int) -> Voronoi:
    """Random (Voronoi) hills about 450 µm apart over the frame: three furrows to a junction."""
    sites = np.random.default_rng(seed).uniform(0.0, 1.0, (800, 2))
    return Voronoi(sites * np.array([1500.0, 1100.0]) - np.array([100.0, 70.0]))


def _random_network(hills: Voronoi, extra: list[tuple[np.ndarray, np.ndarray, float, float]]
                    ) -> np.ndarray:
    """RGB skin of ``hills``: every furrow 30-60 µm wide and 15-40 % dark, none ending inside a
    hill; with ``extra`` strokes, a gentle blur and sensor noise."""
    rng = np.random.default_rng(1)
    darkness = np.zeros(SIZE, np.float32)
    for first, second in hills.ridge_vertices:
        start, end = hills.vertices[first], hills.vertices[second]
        if min(first, second) >= 0 and np.hypot(*(end - start)) < 300.0:  # not at infinity
            _stroke(darkness, start, end, rng.uniform(3.0, 6.0), rng.uniform(0.15, 0.4))
    for start, end, width, dark in extra:
        _stroke(darkness, start, end, width, dark)
    grey = SKIN_GREY * (1.0 - cv2.GaussianBlur(darkness, (0, 0), 1.0))
    grey += rng.normal(0.0, 2.0, SIZE).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2) * np.array([1.0, 0.85, 0.75], np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _random_dead_end(hills: Voronoi) -> tuple[np.ndarray, np.ndarray]:
    """A furrow from the middle of a hill's side towards the hill's site, 45 % of the way: of
    the sides at least 400 µm long near the frame's centre (so that the furrow leaves its side
    squarely, away from the junctions), the one whose middle lies furthest from the site."""
    ends = np.array(hills.ridge_vertices)
    whole = np.all(ends >= 0, axis=1)
    corners = hills.vertices[ends[whole]]  # (sides, 2 corners, xy)
    sites = hills.points[hills.ridge_points[whole]]  # (sides, 2 sites, xy)
    middles = corners.mean(axis=1)
    central = np.hypot(*(sites - np.array([640.0, 480.0])).transpose(2, 0, 1)) < 200.0
    long_side = np.hypot(*(corners[:, 1] - corners[:, 0]).T)[:, None] >= 40.0
    reach = np.hypot(*(sites - middles[:, None]).transpose(2, 0, 1))
    side, site = np.unravel_index(int(np.argmax(np.where(central & long_side, reach, 0.0))),
                                  reach.shape)
    return middles[side], middles[side] + 0.45 * (sites[side, site] - middles[side])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_network_without_dead_ends_gets_no_spur_but_its_one_dead_end(seed: int) -> None:
    # three-arm junctions at any angle (the second renderer's kind of skin), furrows of many
    # widths and depths: every furrow is a border, so the only centre line off the borders is
    # the one dead end drawn
    hills = _random_hills(seed)
    start, end = _random_dead_end(hills)
    without = _measure(_random_network(hills, []))
    with_end = _measure(_random_network(hills, [(start, end, 3.0, 0.3)]))
    _assert_only_the_dead_end(without, with_end, (start, end))


def test_the_furrow_sample_is_the_hysteresis_on_every_second_row_and_column() -> None:
    """A weak branch joined to a strong furrow stays, a weak blob alone goes, also on the
    grid of every 2nd pixel the pores read; the mask has that grid's size."""
    response = np.zeros((41, 61), np.float32)
    response[20, 2:58] = 0.1  # a clear furrow, 3 px wide
    response[19, 2:58] = response[21, 2:58] = 0.1
    response[4:20, 30:33] = 0.03  # a faint branch leaving it
    response[30:36, 8:14] = 0.03  # a faint blot on its own
    sample = furrow_sample(response)
    assert sample.shape == (21, 31)
    assert sample[10, 5]  # the furrow
    assert sample[5, 15]  # its branch
    assert not sample[16, 5]  # the blot
    assert np.array_equal(sample, furrow_mask(response)[::2, ::2])


@pytest.mark.parametrize("connectivity", [4, 8])
def test_the_furrow_mask_keeps_exactly_the_weak_components_that_hold_a_strong_pixel(
        connectivity: int) -> None:
    """``furrow_mask`` is the hysteresis threshold of the response: every weak component
    (``scipy.ndimage.label`` with the same connectivity) that holds a strong pixel, whole, and
    nothing else; on smoothed noise with components of every size, some touching the frame's
    edge, and on no furrow at all."""
    from scipy import ndimage

    from appliance.skin.hills import STRONG_VALLEY
    from appliance.skin.texture import WEAK_VALLEY

    rng = np.random.default_rng(connectivity)
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    for shape, sigma in (((120, 160), 1.5), ((97, 131), 3.0), ((240, 320), 2.0)):
        noise = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), sigma)
        response = (noise - noise.mean()) * np.float32(4.0 / max(float(noise.std()), 1e-6) * 0.02)
        for scene in (response, np.zeros(shape, np.float32)):
            labels, _ = ndimage.label(scene > WEAK_VALLEY, structure)
            held = np.unique(labels[scene > STRONG_VALLEY])
            expected = np.isin(labels, held[held > 0])
            assert np.array_equal(furrow_mask(scene, connectivity), expected)


def test_the_texture_keeps_the_furrow_mask_on_the_pores_grid(plain: Texture) -> None:
    response = tophat_response(prepare(_scene(), UM_PER_PX).flat_work)
    full = furrow_mask(response)[::2, ::2]
    assert plain.furrow_sample.shape == full.shape
    assert np.count_nonzero(full) > 0.1 * full.size
    assert np.mean(plain.furrow_sample == full) > 0.995


def test_run_starts_finds_the_first_index_of_every_run() -> None:
    from appliance.skin.hills import run_starts  # the helper hill_seeds reads the cores by

    assert run_starts(np.array([], dtype=np.uint16)).tolist() == []
    assert run_starts(np.array([7], dtype=np.uint16)).tolist() == [0]
    # a value coming back after another run starts a new run
    values = np.array([3, 3, 1, 1, 1, 3, 0, 0, 2], dtype=np.uint16)
    assert run_starts(values).tolist() == [0, 2, 5, 6, 8]


def test_hill_seeds_give_each_core_of_a_split_region_its_own_seed() -> None:
    from appliance.skin.hills import CORE_LEVEL, HILL_LEVEL, hill_seeds

    # one hill region (response below HILL_LEVEL) holding two cores, a U and a bar; the U's
    # rows hold two runs each, and a region of one core
    response = np.full((60, 80), 2.0 * HILL_LEVEL, dtype=np.float32)
    response[5:55, 5:45] = 0.5 * (HILL_LEVEL + CORE_LEVEL)
    core = 0.5 * CORE_LEVEL
    response[10:40, 10:15] = core  # the U: two arms and a foot
    response[10:40, 25:30] = core
    response[35:40, 10:30] = core
    response[45:52, 10:40] = core  # the bar
    response[5:55, 55:75] = 0.5 * (HILL_LEVEL + CORE_LEVEL)
    response[20:40, 60:70] = core
    seeds = hill_seeds(response, UM_PER_PX)
    u_label, bar_label = seeds.labels[12, 12], seeds.labels[48, 20]
    assert u_label != bar_label
    assert min(u_label, bar_label) >= seeds.first_core
    assert np.all(seeds.labels[10:40, 25:30] == u_label)  # the U's other arm: the same core
    assert seeds.region[u_label] == seeds.region[bar_label]
    # the region that does not split is seeded whole, below the cores' labels
    assert 0 < seeds.labels[10, 60] < seeds.first_core
    assert np.all(seeds.labels[5:55, 55:75] == seeds.labels[10, 60])
