"""Furrow centre-line length and direction from hill-cell borders, on exact polygon networks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay, Voronoi

from appliance.skin.borders import border_segments
from appliance.skin.hills import grow_cells
from appliance.synthetic.skin_truth import tiling_labels
from appliance.synthetic.tilings import hexagonal_voronoi

SIZE_PX = 400


def _stripes(angle_deg: float, spacing_px: float) -> tuple[np.ndarray, float]:
    """Cells between parallel lines at ``angle_deg``, and the lines' true length inside."""
    yy, xx = np.mgrid[0:SIZE_PX, 0:SIZE_PX].astype(float) + 0.5
    angle = math.radians(angle_deg)
    across = (xx - 200.25) * -math.sin(angle) + (yy - 200.25) * math.cos(angle)
    labels = np.floor(across / spacing_px).astype(np.int32) + 100
    true_length = 0.0
    for k in range(int(labels.min()) - 99, int(labels.max()) - 99):
        offset = k * spacing_px  # the line across == offset, clipped to the square
        t = np.linspace(-400, 400, 8001)
        x = 200.25 + t * math.cos(angle) - offset * math.sin(angle)
        y = 200.25 + t * math.sin(angle) + offset * math.cos(angle)
        inside = (x >= 0) & (x <= SIZE_PX) & (y >= 0) & (y <= SIZE_PX)
        true_length += inside.sum() * (t[1] - t[0])
    return labels, true_length


@pytest.mark.parametrize("angle_deg", [0.0, 10.0, 22.5, 45.0, 63.0, 100.0, 137.0])
def test_straight_furrows_measure_true_length_at_any_angle(angle_deg: float) -> None:
    labels, true_length = _stripes(angle_deg, 23.0)
    segments = border_segments(labels)
    assert segments.total_length_px == pytest.approx(true_length, rel=0.015)
    assert segments.anisotropy() > 0.98


def _polygon_network(kind: str, spacing_px: float, seed: int) -> tuple[np.ndarray, float]:
    """A rasterised polygon network and the exact length of its edges inside the square."""
    rng = np.random.default_rng(seed)
    if kind == "delaunay":
        grid = np.stack(np.meshgrid(np.arange(-50, 450, spacing_px),
                                    np.arange(-50, 450, spacing_px * 0.85)), -1).reshape(-1, 2)
        points = grid + rng.normal(0.0, spacing_px * 0.12, grid.shape)
        polygons = [points[t] for t in Delaunay(points).simplices]
    else:
        points = rng.uniform(-50, 450, (int(500 * 500 / spacing_px**2), 2))
        diagram = Voronoi(points)
        polygons = [diagram.vertices[r] for r in diagram.regions if r and -1 not in r]
    return tiling_labels(polygons, SIZE_PX)


@pytest.mark.parametrize(
    ("kind", "spacing_px", "tolerance"),
    # Fine random (Voronoi) networks have many edges shorter than a junction's reach; they
    # measure about 3 % long (7.8 % before chains were extended only beyond their own reach,
    # to where their lines meet). Skin-like triangulated networks measure within 1 %.
    [("delaunay", 14.0, 0.015), ("delaunay", 30.0, 0.015), ("voronoi", 14.0, 0.045),
     ("voronoi", 30.0, 0.015)],
)
def test_polygon_networks_measure_true_length(
    kind: str, spacing_px: float, tolerance: float
) -> None:
    labels, true_length = _polygon_network(kind, spacing_px, seed=5)
    measured = border_segments(labels).total_length_px
    assert measured == pytest.approx(true_length, rel=tolerance)


def test_random_network_is_nearly_isotropic() -> None:
    labels, _ = _polygon_network("voronoi", 20.0, seed=9)
    assert border_segments(labels).anisotropy() < 0.1


def test_no_borders_in_a_single_cell() -> None:
    segments = border_segments(np.ones((50, 60), np.int32))
    assert segments.total_length_px == 0.0
    assert segments.anisotropy() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_three_arm_cells_are_not_read_long(seed: int) -> None:
    """Jittered hexagonal Voronoi cells 11 px apart (0.04 mm² hills at 20 µm/px, three furrows
    at each corner, many edges shorter than a furrow is wide): within 4 % (about 3 % long; 5 %
    when neighbouring junctions within 2 px were one and their arms extended to one point,
    16-17 % when every chain was extended to its merged cluster's centre)."""
    labels, true_length = hexagonal_voronoi(11.0, seed)
    assert border_segments(labels).total_length_px == pytest.approx(true_length, rel=0.04)


def _regrown(labels: np.ndarray, shrink_px: int) -> np.ndarray:
    """The cells without the pixels within ``shrink_px`` of another cell, grown back."""
    kernel = np.ones((2 * shrink_px + 1, 2 * shrink_px + 1), np.uint8)
    cells = labels.astype(np.uint16)
    inner = cv2.erode(cells, kernel) == cv2.dilate(cells, kernel)
    return grow_cells(np.where(inner, cells, 0).astype(np.uint16))


@pytest.mark.parametrize("spacing_px", [20.0, 30.0])
def test_grown_cells_read_their_many_arm_junctions_whole(spacing_px: float) -> None:
    """Triangulated cells (about six furrows at a junction, like the project's skin) shrunk by
    2 px and grown back, as hill cells grow from seeds that end before their furrows: growth
    resolves each junction into several three-cell points joined by short borders between
    cells that touch only at its corner. Read as one junction (their arms' lines meet in one
    point) they measure within 3 % (about 2 % short; 3.5 % when the points were joined only
    within 2 px)."""
    labels, true_length = _polygon_network("delaunay", spacing_px, seed=5)
    measured = border_segments(_regrown(labels, 2)).total_length_px
    assert measured == pytest.approx(true_length, rel=0.03)


@pytest.mark.parametrize(
    ("key_bound", "payload_bound"),
    [(2**12, 2), (2**16 + 1, 2), (2**30, 2), (2**31, 2), (2**24, 2**20), (2**40, 2**23),
     (2**48, 2**16), (2**62, 4)])
@pytest.mark.parametrize("slowly", [True, False])
def test_sort_with_sorts_keys_with_their_payloads_in_any_range(
        key_bound: int, payload_bound: int, slowly: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # a guard for the packing: int32 up to 31 bits of key and payload, int64 up to 63, lexsort
    # beyond; keys come back sorted, each with its own payload, ties by payload, as int64;
    # by OpenCV's sort (where numpy sorts slowly) and by numpy's
    from appliance.skin import borders
    from appliance.skin.borders import sort_with

    monkeypatch.setattr(borders, "NUMPY_SORTS_SLOWLY", slowly)

    rng = np.random.default_rng(key_bound % 1000 + payload_bound)
    keys = rng.integers(0, key_bound, 5000, dtype=np.int64)
    keys[::7] = keys[0]  # many ties
    keys[1] = key_bound - 1
    payload = rng.integers(0, payload_bound, 5000, dtype=np.int64)
    payload[2] = payload_bound - 1
    order = np.lexsort((payload, keys))
    for typed in {np.dtype(np.int64), np.dtype(np.int32) if key_bound <= 2**31 else np.int64}:
        sorted_keys, sorted_payload = sort_with(keys.astype(typed), payload, key_bound,
                                                payload_bound)
        assert sorted_keys.dtype == sorted_payload.dtype == np.int64
        assert sorted_keys.tolist() == keys[order].tolist()
        assert sorted_payload.tolist() == payload[order].tolist()


@pytest.mark.parametrize("opencv", [True, False])
@pytest.mark.parametrize("bits", [1, 8, 16, 31, 32, 44, 52, 53])
def test_sorted_whole_is_np_sort_of_whole_numbers_of_every_width(
        bits: int, opencv: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV's sort of whole numbers, int32 as they are and int64 through float64, and
    numpy's: np.sort's array and type, ties, the extremes 0 and 2**bits - 1, no and one value
    included, the input left as it was; past 53 bits (not exact in a float64) it refuses."""
    from appliance.skin import borders

    monkeypatch.setattr(borders, "NUMPY_SORTS_SLOWLY", opencv)
    rng = np.random.default_rng(bits)
    for typed in (np.int32, np.int64) if bits <= 31 else (np.int64,):
        for length in (0, 1, 2, 3, 5000, 70_000):
            values = rng.integers(0, 2**bits, length, dtype=np.int64)
            values[::5] = values[:1].repeat(len(values[::5]))  # many ties
            values[1:2] = 2**bits - 1
            values[2:3] = 0
            values = values.astype(typed)
            before = values.copy()
            ordered = borders.sorted_whole(values, bits)
            assert ordered.dtype == values.dtype
            assert np.array_equal(ordered, np.sort(values))
            assert np.array_equal(values, before)
    with pytest.raises(ValueError, match="54 bits"):
        borders.sorted_whole(np.arange(5, dtype=np.int64), 54)


def test_numpy_sorts_slowly_where_it_would_sort_with_avx512_on_an_amd_cpu() -> None:
    """numpy's AVX-512 sort is the slow one on AMD Zen 4; not its AVX2 sort, not on Intel's
    AVX-512, other machines, or where the vendor is unknown."""
    from appliance.skin.borders import numpy_sorts_slowly

    avx512, avx2 = {"AVX512_SKX": True, "AVX2": True}, {"AVX512_SKX": False, "AVX2": True}
    assert numpy_sorts_slowly(avx512, "AuthenticAMD")
    assert not numpy_sorts_slowly(avx2, "AuthenticAMD")
    assert not numpy_sorts_slowly(avx512, "GenuineIntel")
    assert not numpy_sorts_slowly({}, "AuthenticAMD")
    assert not numpy_sorts_slowly(avx512, "")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cracks_are_each_border_pixel_pair_with_its_midpoint(seed: int) -> None:
    """``_cracks`` against a plain reading: every pair of 4-neighbours with different labels,
    its key and midpoint, the keys in order; of one key the same cracks (in any order)."""
    from appliance.skin.borders import CrackMasks, _cracks

    tiling, _ = hexagonal_voronoi(9.0, seed)
    labels = _regrown(tiling[:90, :130], 1)  # grown cells' staircase borders, not square
    labels[:5, :7] = labels.max() + 1  # a cell in the corner
    span = int(labels.max()) + 1
    expected = []
    for (dy, dx), (x_off, y_off) in (((0, 1), (0.5, 0.0)), ((1, 0), (0.0, 0.5))):
        here, there = labels[:labels.shape[0] - dy, :labels.shape[1] - dx], labels[dy:, dx:]
        for y, x in zip(*np.nonzero(here != there), strict=True):
            low, high = sorted((int(here[y, x]), int(there[y, x])))
            expected.append((low * span + high, x + x_off, y + y_off))
    cracks = _cracks(labels, CrackMasks.of(labels), span)
    assert cracks.keys.tolist() == sorted(key for key, _, _ in expected)
    found = sorted(zip(cracks.keys.tolist(), (cracks.x2 / 2.0).tolist(), (cracks.y2 / 2.0).tolist(),
                       strict=True))
    assert found == sorted(expected)


def test_column_sums_add_each_owner_s_values_as_a_bincount_per_row_does() -> None:
    """The one-bincount column sums are the same floats as a bincount of each row: the same
    values added in the same order, owners that own nothing read 0, and no rows or owners."""
    from appliance.skin.borders import _column_sums

    rng = np.random.default_rng(7)
    for rows, values, count in ((8, 500, 700), (4, 3000, 40), (8, 0, 12), (4, 6, 0)):
        columns = rng.normal(size=(rows, values)) * 10.0 ** rng.integers(-3, 4, size=(rows, 1))
        owner = rng.integers(0, max(count, 1), values) if count else np.zeros(0, dtype=np.int64)
        columns = columns[:, : len(owner)]
        expected = np.zeros((rows, count))
        for row in range(rows):
            for value, at in zip(columns[row], owner, strict=True):
                expected[row, at] += value
        summed = _column_sums(columns, owner, count)
        assert summed.shape == (rows, count)
        assert np.array_equal(summed, expected)


def test_run_lengths_are_the_gaps_between_run_starts_and_the_last_run_to_the_end() -> None:
    """``run_lengths`` is ``np.diff`` of the starts with the total appended: the same values and
    type, a single run and no run at all included."""
    from appliance.skin.borders import run_lengths

    rng = np.random.default_rng(8)
    cases = [(np.zeros(0, dtype=np.intp), 0), (np.zeros(1, dtype=np.intp), 7)]
    for total in (1, 2, 50, 3000):
        changes = rng.random(total - 1) < 0.3
        cases.append((np.flatnonzero(np.concatenate([[True], changes])), total))
    for starts, total in cases:
        lengths = run_lengths(starts, total)
        expected = np.diff(starts, append=total)
        assert lengths.dtype == expected.dtype
        assert np.array_equal(lengths, expected)
        assert lengths.sum() == total


def test_rows_and_columns_are_numpys_divmod_of_flat_indices() -> None:
    """``rows_and_columns`` gives what ``np.divmod`` gives for flat indices of any image width:
    the same rows and columns, in the same type (int32 and int64 indices, Python and NumPy
    widths, the first and last pixel of a row, none at all)."""
    from appliance.skin.borders import rows_and_columns

    rng = np.random.default_rng(11)
    for dtype in (np.int32, np.int64, np.intp):
        for width in (1, 2, 639, 640, 1280, np.int64(641)):
            size = 480 * int(width)
            edges = np.array([0, int(width) - 1, int(width), size - 1], dtype=dtype)
            for flat in (np.zeros(0, dtype=dtype), edges,
                         np.sort(rng.integers(0, size, 5000)).astype(dtype)):
                rows, columns = rows_and_columns(flat, width)
                expected_rows, expected_columns = np.divmod(flat, width)
                assert rows.dtype == expected_rows.dtype
                assert columns.dtype == expected_columns.dtype
                assert np.array_equal(rows, expected_rows)
                assert np.array_equal(columns, expected_columns)
