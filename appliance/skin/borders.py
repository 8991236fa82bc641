"""The furrow network as a graph: centre-line segments between hill cells, and their lengths.

Every border between two hill cells is a chain of pixel cracks (a crack separates two
4-neighbours with different labels). A straight border at angle φ to the x axis, of length
L, has L·|sin φ| cracks between horizontal neighbours and L·|cos φ| between vertical ones,
so L = cracks / (|cos φ| + |sin φ|): we group cracks by the pair of cells they separate (one
furrow segment), take φ from the principal axis of the segment's crack positions and correct
its crack count by that factor. This is exact for straight segments at any angle, where
counting skeleton pixels is up to 8 % off.

Where several furrows meet, the cells' borders do not meet in one point: the wide junction
(and any pore sitting on it) breaks into a few three-cell points joined by short borders
between cells that touch only at its corner, and the real segments stop short of the junction.
Neighbouring three-arm junctions a short furrow apart look the same in the labels. So the
junctions are first the points where three or more cells meet (next to each other: one), each
chain ending in the ones its end cracks lie in; two of them joined by a short border are then
one junction when the straight lines of the chains ending in either meet in one point (a
junction of many furrows resolved by growth), and stay two when they meet in two (three-arm
junctions with a furrow between). Each junction is placed where its chains' lines meet (least
squares); a segment's length reaches as far as its crack count says, and it is extended from
there to that point when the point lies further out (at a three-arm junction also trimmed back
to it: there the point misses by noise alone; on exact cells the crack count already reaches
the junction, so nothing is added; docs/measurement.md "Texture accuracy"). Borders that lie
wholly inside one junction are not furrows and are dropped.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import cv2
import numpy as np

MIN_CRACKS_FOR_DIRECTION = 3
MEETING_WEIGHT_CAP_PX = 10.0  # a chain's line counts by its length up to this
MEETING_PULL = 2.0  # weight of the junction cluster's centre against the chains' lines
# Junctions joined into one (``_grouped_junctions``): work px (20 µm). Fitted on the project's
# generator (seeds 11 and 12, mixed and wide) and own three-arm scenes only.
JUNCTION_LINK_PX = 8.0  # junctions joined by a border at most this long
JUNCTION_MISS_PX = 2.0  # when the lines of their chains miss one point by at most this (RMS)
JUNCTION_SPREAD_PX = 6.0  # and their meeting points lie within this of it (RMS)
JUNCTION_ROUNDS = 2  # a third joins few (speed: furrow density p90 +0.02 points, fit seed 12)
# A three-arm junction is a T (``_tee_points``) when two of its arms run on in one line: fully
# within TEE_FULL_DEG of it, not at all beyond TEE_NONE_DEG, linearly between (no step).
TEE_FULL_DEG = 10.0
TEE_NONE_DEG = 20.0


@dataclass(frozen=True)
class BorderSegments:
    """One entry per pair of neighbouring cells: the two cells, the length (px) of the furrow
    segment between them (0 for a border wholly inside one junction: no furrow) and its
    direction (rad)."""

    cell_pairs: np.ndarray  # (S, 2) int: the two cell labels
    lengths_px: np.ndarray  # (S,) float
    angles_rad: np.ndarray  # (S,) float, direction of the segment, 0..π
    crack_sums: np.ndarray  # (S, 3): cracks, sum of their x, sum of their y (pixel indices)
    # every crack's midpoint (pixel indices) doubled, whole numbers, segment by segment in
    # their order (``crack_xs`` and ``crack_ys`` give them halved back)
    crack_x2: np.ndarray
    crack_y2: np.ndarray

    def crack_xs(self, at: np.ndarray) -> np.ndarray:
        """The midpoints' x of the cracks ``at`` (whole or half pixel indices), float64."""
        xs: np.ndarray = self.crack_x2.take(at) * 0.5
        return xs

    def crack_ys(self, at: np.ndarray) -> np.ndarray:
        """The midpoints' y of the cracks ``at``, float64."""
        ys: np.ndarray = self.crack_y2.take(at) * 0.5
        return ys

    @property
    def total_length_px(self) -> float:
        """Total centre-line length in pixels."""
        return float(self.lengths_px.sum())

    def anisotropy(self) -> float:
        """The segments' ``anisotropy``."""
        return anisotropy(self.lengths_px, self.angles_rad)


def anisotropy(lengths_px: np.ndarray, angles_rad: np.ndarray) -> float:
    """|Σ l_i exp(2iθ_i)| / Σ l_i of furrow pieces (docs/measurement.md furrow_anisotropy)."""
    total = float(lengths_px.sum())
    if total <= 0.0:
        return 0.0
    resultant = complex(np.sum(lengths_px * np.exp(2j * angles_rad)))
    return float(min(abs(resultant) / total, 1.0))


@dataclass(frozen=True)
class _Cracks:
    keys: np.ndarray  # pair key per crack, sorted
    x2: np.ndarray  # twice the crack's midpoint, x (a whole number)
    y2: np.ndarray  # and y


@dataclass(frozen=True)
class CrackMasks:
    """Where 4-neighbours differ: right neighbour (H, W-1) and lower neighbour (H-1, W)."""

    right: np.ndarray
    below: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> CrackMasks:
        """The crack masks of a label image."""
        return cls(labels[:, :-1] != labels[:, 1:], labels[:-1, :] != labels[1:, :])

    def line_mask(self) -> np.ndarray:
        """Pixels whose right or lower neighbour has another label (the centre lines)."""
        height, width = self.below.shape[0] + 1, self.right.shape[1] + 1
        lines = np.zeros((height, width), dtype=bool)
        lines[:, :-1] = self.right
        lines[:-1, :] |= self.below
        return lines


def _cracks(labels: np.ndarray, masks: CrackMasks, span: int) -> _Cracks:
    """Every crack: its cell-pair key and midpoint, sorted by key (of one key, in no set order:
    a chain's sums of its cracks' doubled midpoints are whole numbers, exact in any order)."""
    # gathers of many elements by ndarray.take here and below: the values indexing reads, faster
    key_type = np.int32 if span * span < 2**31 else np.int64
    flat_labels = labels.ravel()
    height, width = labels.shape
    x_bits = (2 * width - 1).bit_length()
    found = [np.flatnonzero(differs) for differs in (masks.right, masks.below)]  # 10x: nonzero
    keys = np.empty(sum(map(len, found)), dtype=key_type)
    places = np.empty(len(keys), dtype=np.int64)
    start = 0
    for step, flat in zip((1, width), found, strict=True):
        part = slice(start, start + len(flat))
        start += len(flat)
        rows, cols = rows_and_columns(flat, width - 1 if step == 1 else width)
        at = flat + rows if step == 1 else flat  # the right mask is one column short
        first, second = flat_labels.take(at), flat_labels.take(at + step)
        np.multiply(np.minimum(first, second), span, out=keys[part], dtype=key_type)
        np.add(keys[part], np.maximum(first, second), out=keys[part])
        # the doubled midpoint: (2 col + 1, 2 row) between left and right neighbours, (2 col,
        # 2 row + 1) between upper and lower ones; it rides with its key through the sort
        np.left_shift(rows, x_bits + 1, out=places[part])
        places[part] |= cols << 1 | (1 if step == 1 else 1 << x_bits)
    all_keys, place = sort_with(keys, places, span * span, 2 * height << x_bits)
    return _Cracks(all_keys, np.bitwise_and(place, (1 << x_bits) - 1),
                   np.right_shift(place, x_bits))


def run_lengths(starts: np.ndarray, total: int) -> np.ndarray:
    """The length of each run of ``total`` items from the runs' ``starts`` (ascending, the
    first 0): ``np.diff(starts, append=total)``, without its Python-level argument handling."""
    lengths = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
    if len(starts):
        lengths[-1] = total - starts[-1]
    return lengths


def rows_and_columns(flat: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The row and column of each flat index (whole numbers >= 0) of an image ``width``
    pixels wide: ``np.divmod(flat, width)``, by one division and one product."""
    rows = flat // width
    columns = np.multiply(rows, width)
    np.subtract(flat, columns, out=columns)
    return rows, columns


def sort_with(keys: np.ndarray, payload: np.ndarray, key_bound: int,
              payload_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """The keys (whole numbers >= 0, below ``key_bound``) sorted, each with its payload (whole
    numbers >= 0, below ``payload_bound``) alongside, equal keys in the order of their payloads;
    both as int64.

    One sort of key and payload packed into one number (several times faster than any argsort;
    ``sorted_whole`` where numpy sorts slowly, up to 53 bits), its halves read back; beyond 63
    bits, by ``np.lexsort``.
    """
    payload_bits = max(int(payload_bound - 1).bit_length(), 1)
    bits = max(int(key_bound - 1).bit_length(), 1) + payload_bits
    if bits > 63:
        order = np.lexsort((payload, keys))
        return keys.take(order).astype(np.int64), payload.take(order).astype(np.int64)
    packed = keys.astype(np.int32 if bits <= 31 else np.int64)
    np.left_shift(packed, payload_bits, out=packed)
    np.bitwise_or(packed, payload, out=packed)
    if NUMPY_SORTS_SLOWLY and bits <= WHOLE_SORT_BITS:
        packed = sorted_whole(packed, bits)
    else:
        packed.sort()  # in place
    sorted_keys = np.right_shift(packed, payload_bits).astype(np.int64, copy=False)
    return sorted_keys, np.bitwise_and(packed, (1 << payload_bits) - 1).astype(np.int64,
                                                                                copy=False)


WHOLE_SORT_BITS = 53  # float64 holds every whole number below 2**53 exactly
_ASCENDING_ROW = cv2.SORT_EVERY_ROW | cv2.SORT_ASCENDING


def numpy_sorts_slowly(cpu_features: dict[str, bool], vendor: str) -> bool:
    """Whether numpy's sort and partition are its AVX-512 ones (the CPU has AVX512_SKX and numpy
    uses it) on an AMD CPU. Their compress-stores are slow on AMD Zen 4: there np.sort runs
    about 5x slower than numpy's own AVX2 sort, np.partition about 6x, and OpenCV's sort (Intel
    IPP's) beats them; elsewhere numpy's are the faster (and OpenCV's, without IPP off x86, a
    plain sort)."""
    return bool(cpu_features.get("AVX512_SKX")) and vendor == "AuthenticAMD"


def _this_cpu() -> tuple[dict[str, bool], str]:
    """numpy's CPU features as it runs (NPY_DISABLE_CPU_FEATURES applied) and the CPU vendor
    (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        core = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # a numpy that keeps them elsewhere: numpy's sort
        core = None
    features = getattr(core, "__cpu_features__", {})
    vendor = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    vendor = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return dict(features), vendor


NUMPY_SORTS_SLOWLY = numpy_sorts_slowly(*_this_cpu())  # ``sorted_whole``, ``median_of``


def sorted_whole(values: np.ndarray, bits: int) -> np.ndarray:
    """``np.sort`` of a 1-D array of whole numbers 0 <= v < 2**``bits`` (int32 up to 31 bits,
    else int64; ``bits`` <= ``WHOLE_SORT_BITS``): the same array, in the same type; where
    ``NUMPY_SORTS_SLOWLY``, by OpenCV's sort, int32 as they are and int64 as float64 (exact
    below 2**53).

    Speed only: on this project's AMD Zen 4 host OpenCV's sort took 0.6 ms where np.sort took
    2.7 for the ~60,000 cracks of a mixed frame (docs/experiments/README.md "speed5"). Sorted
    whole numbers are one array whichever sort made it."""
    if bits > WHOLE_SORT_BITS:
        raise ValueError(f"sorted_whole: {bits} bits do not fit a float64 exactly")
    if not NUMPY_SORTS_SLOWLY or len(values) < 2:
        return np.sort(values)
    if bits <= 31:
        ordered: np.ndarray = cv2.sort(values.astype(np.int32, copy=False).reshape(1, -1),
                                       _ASCENDING_ROW).reshape(-1)
        return ordered.astype(values.dtype, copy=False)
    in_floats = cv2.sort(values.astype(np.float64).reshape(1, -1), _ASCENDING_ROW)
    return in_floats.reshape(-1).astype(values.dtype)


def _meeting_points(labels: np.ndarray, masks: CrackMasks) -> np.ndarray:
    """Bool mask of the 2x2 blocks (top-left pixel) that hold three or more cells.

    Around a block's cycle a-b-d-c the labels change 3 times (3 cells) or 4 times (3 or 4
    cells, or 2 cells placed diagonally: a = d and b = c), never an odd number with 2 cells.
    """
    changes = (
        masks.right[:-1].view(np.uint8)
        + masks.right[1:].view(np.uint8)
        + masks.below[:, :-1].view(np.uint8)
        + masks.below[:, 1:].view(np.uint8)
    )
    meeting = np.zeros(labels.shape, dtype=bool)
    np.greater_equal(changes, 3, out=meeting[:-1, :-1])
    rows, cols = rows_and_columns(np.flatnonzero(changes == 4), changes.shape[1])
    diagonal = (labels[rows, cols] == labels[rows + 1, cols + 1]) & (
        labels[rows, cols + 1] == labels[rows + 1, cols]
    )
    meeting[rows[diagonal], cols[diagonal]] = False
    return meeting


def junctions(
    labels: np.ndarray, radius_px: float, masks: CrackMasks | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Junction id per pixel (0: none) and junction centres (id -> x, y).

    A junction is a cluster of 2x2 pixel blocks holding three or more cells, grown by
    ``radius_px`` so that meeting points next to each other are one.
    """
    meeting = _meeting_points(labels, masks or CrackMasks.of(labels))
    points, blocks = _meeting_clusters(meeting, radius_px)
    return blocks.ids, points.centres()


@dataclass(frozen=True)
class _MeetingPoints:
    """Per junction: its meeting points' count and sums of x, y and x² + y² (for the spread)."""

    sums: np.ndarray  # (4, J)

    def centres(self) -> np.ndarray:
        """The mean meeting point per junction (id -> x, y)."""
        weight = np.maximum(self.sums[0], 1.0)
        centres: np.ndarray = (self.sums[1:3] / weight).T
        return centres

    def grouped(self, group: np.ndarray) -> _MeetingPoints:
        """The sums of each group of junctions (``group``: junction -> group)."""
        return _MeetingPoints(_column_sums(self.sums, group, self.sums.shape[1]))


@dataclass(frozen=True)
class _MeetingBlocks:
    """The 2x2 blocks holding three or more cells and their junctions."""

    at: np.ndarray  # flat index of each block's top-left pixel
    ids: np.ndarray  # junction id per pixel (a block's at its top-left pixel)


def _meeting_clusters(
    meeting: np.ndarray, radius_px: float
) -> tuple[_MeetingPoints, _MeetingBlocks]:
    """The junctions: the meeting points grown by ``radius_px``, 8-connected."""
    size = max(1, round(radius_px)) * 2 + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    grown = cv2.dilate(meeting.view(np.uint8), disk)
    count, ids = cv2.connectedComponents(grown, connectivity=8)
    # flatnonzero of a bool mask: 7x faster than of the same mask as uint8
    at = np.flatnonzero(meeting)
    rows, cols = rows_and_columns(at, meeting.shape[1])
    owner = ids.ravel()[at]
    x, y = cols + 0.5, rows + 0.5
    sums = np.stack([np.bincount(owner, minlength=count).astype(np.float64),
                     np.bincount(owner, x, count), np.bincount(owner, y, count),
                     np.bincount(owner, x * x + y * y, count)])
    return _MeetingPoints(sums), _MeetingBlocks(at, ids)


@dataclass(frozen=True)
class _Chains:
    """Per cell pair: its key, crack count, centre and principal direction."""

    keys: np.ndarray  # cell-pair key, sorted
    count: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    angles: np.ndarray
    cos: np.ndarray  # of angles, computed once
    sin: np.ndarray


def _chains(cracks: _Cracks) -> _Chains:
    starts = np.flatnonzero(np.concatenate([[True], cracks.keys[1:] != cracks.keys[:-1]]))
    count = run_lengths(starts, len(cracks.keys)).astype(np.float64)
    x2, y2 = cracks.x2, cracks.y2
    # whole-number sums of the doubled midpoints, halved (squares quartered) back: exactly the
    # sums of the midpoints
    mean_x = np.add.reduceat(x2, starts) * 0.5 / count
    mean_y = np.add.reduceat(y2, starts) * 0.5 / count
    cxx = np.add.reduceat(x2 * x2, starts) * 0.25 / count - mean_x**2
    cyy = np.add.reduceat(y2 * y2, starts) * 0.25 / count - mean_y**2
    cxy = np.add.reduceat(x2 * y2, starts) * 0.25 / count - mean_x * mean_y
    angles = (0.5 * np.arctan2(2.0 * cxy, cxx - cyy)) % np.pi
    return _Chains(cracks.keys[starts], count, mean_x, mean_y, angles, np.cos(angles),
                   np.sin(angles))


@dataclass(frozen=True)
class _BlockCracks:
    """The cracks inside meeting blocks, once per block they lie in, in the order of the sorted
    crack list (by cell pair, cracks between left and right neighbours first, then raster
    order), the block above or left of a crack before the one below or right of it."""

    chain: np.ndarray
    x: np.ndarray
    y: np.ndarray
    across: np.ndarray  # the crack lies between left and right neighbours
    second: np.ndarray  # the block lies below or right of the crack
    junction: np.ndarray


def _block_cracks(labels: np.ndarray, blocks: _MeetingBlocks, chains: _Chains,
                  span: int) -> _BlockCracks:
    """The cracks of the meeting blocks: in block (r, c), between (r, c) and (r, c+1) and
    between (r+1, c) and (r+1, c+1) (across), between (r, c) and (r+1, c) and between
    (r, c+1) and (r+1, c+1)."""
    width, pixel_bits = labels.shape[1], labels.size.bit_length()
    flat = labels.ravel()
    at, count = blocks.at, len(blocks.at)
    # the pixel left of or above each crack; per block the crack below or right of the block's
    # first pixel (its block above or left of the crack), then the one at it
    pixel = np.concatenate([at + width, at, at + 1, at])
    first = flat.take(pixel)
    second = flat.take(np.concatenate([at + (width + 1), at + 1, at + (width + 1), at + width]))
    present = np.flatnonzero(first != second)
    first, second = first.take(present).astype(np.int64), second.take(present).astype(np.int64)
    keys = np.minimum(first, second) * span + np.maximum(first, second)
    kind = present // count  # bit 1: between upper and lower neighbours; bit 0: second block
    # the sorted crack list's order (pair, direction, raster), then the blocks' order, packed
    # into one number (below span² 2^(pixel_bits + 2): 2^63 for 10^6 cells of 10^6 pixels)
    record = ((keys << 1) | (kind >> 1)) << pixel_bits | pixel.take(present)
    record = (record << 1) | (kind & 1)  # each record is a different number
    bits = max(span * span - 1, 1).bit_length() + pixel_bits + 2
    record = sorted_whole(record, bits) if bits <= WHOLE_SORT_BITS else np.sort(record)
    second_block = (record & 1) == 1
    record >>= 1
    pixel = (record & ((1 << pixel_bits) - 1)).astype(np.int32 if labels.size < 2**31 else np.int64)
    record >>= pixel_bits
    across = (record & 1) == 0
    chain = chains.keys.searchsorted(record >> 1)
    block = pixel - np.where(second_block, 0, np.where(across, width, 1))
    rows, cols = rows_and_columns(pixel, width)
    x = cols + np.where(across, 0.5, 0.0)
    y = rows + np.where(across, 0.0, 0.5)
    return _BlockCracks(chain, x, y, across, second_block, blocks.ids.ravel()[block])


def _chain_end_junctions(block_cracks: _BlockCracks, chains: _Chains) -> np.ndarray:
    """The junction each chain ends in, both ends in one array (first ends, then second ends;
    0: none), read off the meeting points themselves: a chain ends in a junction where one of
    its cracks lies in a meeting point's 2x2 block, at the end of the chain that crack lies on
    (the outermost such crack per end). Looking the junction up where the chain's extent ends
    instead misses the junction wherever a border bends into it."""
    chain, junction = block_cracks.chain, block_cracks.junction
    count = len(chains.count)
    ends = np.zeros(2 * count, dtype=np.int64)
    cos, sin = chains.cos.take(chain), chains.sin.take(chain)
    # each block's centre lies half a pixel from the crack
    half_step = 0.5 * np.where(block_cracks.across, sin, cos)
    # a lone crack has no direction: the blocks' order
    half_step[chains.count.take(chain) == 1] = 0.5
    along = block_cracks.x * cos + block_cracks.y * sin  # from the chain's centre
    along -= chains.mean_x.take(chain) * cos + chains.mean_y.take(chain) * sin
    along = np.where(block_cracks.second, along + half_step, along - half_step)
    for side, reduce, bound in ((0, np.minimum, np.inf), (1, np.maximum, -np.inf)):
        outermost = np.full(count, bound)
        reduce.at(outermost, chain, along)
        end = along == outermost.take(chain)
        end &= (along < 0.0) if side == 0 else (along >= 0.0)
        at_end = np.flatnonzero(end)  # in crack order: of equal ones the last stays
        ends[side * count + chain[at_end]] = junction[at_end]
    return ends


def _line_terms(chains: _Chains, chain_px: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The straight line of each ``chosen`` chain as the terms of a least squares meeting point,
    Σ w (I - d dᵀ) and Σ w (I - d dᵀ) p, and of its residual, Σ w pᵀ (I - d dᵀ) p (w the chain's
    weight, d its direction, p its centre): (8, n) nxx, nyy, nxy, bx, by, residual, weight, 1
    (an arm)."""
    x, y = chains.mean_x[chosen], chains.mean_y[chosen]
    cos, sin = chains.cos[chosen], chains.sin[chosen]
    weight = np.minimum(chain_px[chosen], MEETING_WEIGHT_CAP_PX)
    nxx, nyy, nxy = 1.0 - cos * cos, 1.0 - sin * sin, -cos * sin
    bx, by = nxx * x + nxy * y, nxy * x + nyy * y
    rows = [weight * nxx, weight * nyy, weight * nxy, weight * bx, weight * by,
            weight * (x * bx + y * by), weight, np.ones_like(weight)]
    terms: np.ndarray = np.concatenate(rows).reshape(len(rows), len(weight))
    return terms


def _columns(array: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The columns ``at`` of a 2-D array (``take``: 2x faster than ``array[:, at]``)."""
    taken: np.ndarray = array.take(at, axis=1)
    return taken


def _column_sums(columns: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """The columns of ``columns`` (k, n) summed per ``owner`` (0..count-1): (k, count).

    One ``np.bincount`` over all k rows, row r's owners offset by r * count: each sum adds the
    same values in the same order as a bincount per row, so it is the same float."""
    rows = len(columns)
    bins = (owner + np.arange(rows)[:, None] * count).ravel()
    sums: np.ndarray = np.bincount(bins, columns.ravel(), rows * count).reshape(rows, count)
    return sums


def _solved(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of summed ``_line_terms``: the lines' meeting point (x, y) and their RMS miss
    of it (weighted; inf where the lines are parallel or too few)."""
    axx, ayy, axy, bx, by, residual, weight = sums[:7]
    det = axx * ayy - axy * axy
    solvable = det > 1e-6 * np.maximum(weight, 1.0) ** 2
    det = np.where(solvable, det, 1.0)
    x, y = (ayy * bx - axy * by) / det, (axx * by - axy * bx) / det
    miss = np.sqrt(np.maximum(residual - x * bx - y * by, 0.0) / np.maximum(weight, 1e-9))
    return x, y, np.where(solvable & (sums[7] >= 3), miss, np.inf)


def _grouped_junctions(ends: np.ndarray, chains: _Chains, chain_px: np.ndarray,
                       points: _MeetingPoints) -> np.ndarray:
    """Junction -> group: junctions joined by a short border are one junction when the lines
    of the chains ending in either (that short border left out) meet in one point.

    Grown cells resolve a junction of many furrows into several three-cell points joined by
    short borders between cells that touch only at its corner; three-arm junctions a short
    furrow apart look the same in the labels, but their arms' lines meet in two points. In
    rounds, each group joins the neighbour whose union misses least, when both choose each
    other (no chaining within a round), the union's lines miss by at most
    ``JUNCTION_MISS_PX`` and its meeting points lie within ``JUNCTION_SPREAD_PX`` of theirs.
    """
    count, chain_count = points.sums.shape[1], len(chain_px)
    group = np.arange(count)
    first, second = ends[:chain_count], ends[chain_count:]
    short = (first > 0) & (second > 0) & (first != second) & (chain_px <= JUNCTION_LINK_PX)
    # only the junctions at a short border can join: work on the chains that end in them
    can_join = np.zeros(count, dtype=bool)
    can_join[first[short]] = True
    can_join[second[short]] = True
    chosen = np.flatnonzero(can_join[first] | can_join[second])
    terms = _line_terms(chains, chain_px, chosen)
    chain_count, short = len(chosen), chain_px[chosen] <= JUNCTION_LINK_PX
    ends = np.concatenate([first[chosen], second[chosen]])
    both_ends = terms + terms
    for _ in range(JUNCTION_ROUNDS):
        end_group = group[ends]
        first, second = end_group[:chain_count], end_group[chain_count:]
        differ = first != second
        low_end = np.minimum(first, second)
        apart = differ & (low_end > 0)
        pair_keys = low_end * count + np.maximum(first, second)
        pairs = np.sort(pair_keys[apart & short])
        if len(pairs) == 0:
            break
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
        low, high = rows_and_columns(pairs, count)
        in_pair = np.zeros(count, dtype=bool)
        in_pair[low] = True
        in_pair[high] = True
        between = np.flatnonzero(apart & in_pair[first] & in_pair[second])
        pair_of = np.minimum(pairs.searchsorted(pair_keys[between]), len(pairs) - 1)
        of_a_pair = pairs[pair_of] == pair_keys[between]  # every border of a pair
        shared = _column_sums(_columns(both_ends, between[of_a_pair]), pair_of[of_a_pair],
                              len(pairs))
        # the arms of the groups in a pair (a border inside a group is no arm)
        arm = np.flatnonzero(in_pair[end_group] & np.concatenate([differ, differ]))
        arm_chain = np.where(arm < chain_count, arm, arm - chain_count)  # both ends on its line
        group_lines = _column_sums(_columns(terms, arm_chain), end_group[arm], count)
        x, y, miss = _solved(_columns(group_lines, low) + _columns(group_lines, high) - shared)
        member = np.flatnonzero(in_pair[group])
        spread = _column_sums(_columns(points.sums, member), group[member], count)
        union = _columns(spread, low) + _columns(spread, high)
        scatter = (union[3] - 2.0 * (x * union[1] + y * union[2])) / np.maximum(
            union[0], 1.0) + x * x + y * y
        joins = np.flatnonzero((miss <= JUNCTION_MISS_PX) & (scatter <= JUNCTION_SPREAD_PX**2))
        if len(joins) == 0:
            break
        # each group's choice: its join that misses least (ties: the first)
        joins = joins[miss[joins].argsort(kind="stable")]
        chosen = np.full(count, -1)
        sides = np.stack([low[joins], high[joins]], axis=1).ravel()
        chosen[sides[::-1]] = joins.repeat(2)[::-1]  # the best written last: it stays
        mutual = joins[(chosen[low[joins]] == joins) & (chosen[high[joins]] == joins)]
        renumber = np.arange(count)
        renumber[high[mutual]] = low[mutual]
        group = renumber[group]
    return group


def _junction_ends(chains: _Chains, ends: np.ndarray, centres: np.ndarray,
                   chain_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every chain: whether it lies wholly inside one junction, and how far the junctions'
    meeting points (``_lines_meeting_point``) lie beyond the end the chain's length reaches,
    summed over both ends.

    The gap is measured from the end of the measured length (centre +- half of it along the
    chain), outwards along the chain: on exact cells a chain's crack count already reaches its
    junction, so nothing is added; where grown cells stop short of a wide junction, the rest
    is. At a junction of three arms the gap is taken as it is, also where the point lies
    inside the chain's reach (a three-cell point is where its borders meet: the lines' point
    misses it by noise, which, cut at 0, would only add); at more arms only beyond the reach.
    """
    count = len(chain_px)
    inside = (ends[:count] == ends[count:]) & (ends[:count] > 0)
    junction = np.where(np.concatenate([inside, inside]), 0, ends)
    arms = np.bincount(junction, minlength=len(centres))
    arms[0] = 0
    cos, sin, mean_x, mean_y, length = (np.concatenate([v, v]) for v in (
        chains.cos, chains.sin, chains.mean_x, chains.mean_y, chain_px))
    points = _tee_points(_lines_meeting_point(junction, centres, chains, chain_px), junction,
                         arms, chains, chain_px)
    outward = np.concatenate([-np.ones(count), np.ones(count)])
    reach_x = mean_x + outward * length / 2.0 * cos
    reach_y = mean_y + outward * length / 2.0 * sin
    gap = outward * ((points[:, 0][junction] - reach_x) * cos
                     + (points[:, 1][junction] - reach_y) * sin)
    gap = np.where(arms[junction] <= 3, gap, np.maximum(gap, 0.0))
    gap[junction == 0] = 0.0
    return inside, gap[:count] + gap[count:]


def _lines_meeting_point(junction: np.ndarray, centres: np.ndarray, chains: _Chains,
                         chain_px: np.ndarray) -> np.ndarray:
    """Per junction, the point nearest (least squares) to the straight lines of the chains
    ending in it, each weighted by its length up to ``MEETING_WEIGHT_CAP_PX``, pulled towards
    the cluster's centre (``centres``) with weight ``MEETING_PULL``. Furrows run straight into
    their junction, while the meeting points of grown cells spread around it (and a cluster may
    hold two junctions joined by a short edge): the chains' lines say where they meet.
    ``junction``: the junction of every chain end, first ends then second ends (0: none; its
    row is not read)."""
    count = len(centres)
    # normal projector of each line, I - d d^T, summed per junction (both ends of a chain on
    # its line); plus the pull
    terms = _line_terms(chains, chain_px, np.arange(len(chain_px)))[:5]
    sxx, syy, axy, sx, sy = _column_sums(np.concatenate([terms, terms], axis=1), junction, count)
    axx, ayy = sxx + MEETING_PULL, syy + MEETING_PULL
    bx, by = sx + MEETING_PULL * centres[:, 0], sy + MEETING_PULL * centres[:, 1]
    det = axx * ayy - axy * axy  # >= MEETING_PULL**2 > 0
    points = np.stack([(ayy * bx - axy * by) / det, (axx * by - axy * bx) / det], axis=1)
    return points


def _tee_points(points: np.ndarray, junction: np.ndarray, arms: np.ndarray, chains: _Chains,
                chain_px: np.ndarray) -> np.ndarray:
    """``points`` moved onto the through furrow at T-junctions: where two of a three-arm
    junction's arms run on in one line, the junction lies on that line, where the third arm's
    line meets it.

    Grown cells do not meet there: the cell across the through furrow reaches the junction
    with a straight side, the two cells beside the third arm with corners, so their three-cell
    point lies inside the third arm (a quarter of the way from the centre line to the seeds
    where cells grow by distance), its borders with the cell across dip towards it, and the
    lines' point, pulled to the meeting points, lies short of the through furrow's centre line,
    which the definition's centre line of the third arm reaches (docs/measurement.md
    "Definitions").
    Blended by how nearly the two arms are one line (``TEE_FULL_DEG``, ``TEE_NONE_DEG``) and
    only where the third arm meets that line at 24-30 degrees or more, so nothing steps.
    ``arms``: each junction's number of chain ends (0 for junction 0, none)."""
    count = len(chain_px)
    ends = np.flatnonzero(arms.take(junction) == 3)  # ``arms``: per junction, 0 for none
    if len(ends) == 0:
        return points
    trio = ends[np.argsort(junction[ends], kind="stable")].reshape(-1, 3)
    first = trio < count
    chain = np.where(first, trio, trio - count)
    # as complex numbers x + iy: each arm's direction away from the junction (a first end
    # lies at -direction from its chain's centre), its chain's centre and weight
    away = (chains.cos[chain] + 1j * chains.sin[chain]) * np.where(first, 1.0, -1.0)
    centre = chains.mean_x[chain] + 1j * chains.mean_y[chain]
    weight = np.minimum(chain_px[chain], MEETING_WEIGHT_CAP_PX)
    # the pair of arms most nearly opposite is the through furrow; the third arm ends on it
    dots = (away[:, [1, 0, 0]] * away[:, [2, 2, 1]].conj()).real
    third = dots.argmin(axis=1)
    rows = np.arange(len(trio))
    one, other = (third + 1) % 3, (third + 2) % 3
    along = away[rows, one] - away[rows, other]
    along /= np.maximum(np.abs(along), 1e-9)
    w_one, w_other = weight[rows, one], weight[rows, other]
    through = (w_one * centre[rows, one] + w_other * centre[rows, other]) / (w_one + w_other)
    stem, stem_centre = away[rows, third], centre[rows, third]
    sine = (stem * along.conj()).imag
    reach = ((through - stem_centre) * along.conj()).imag / np.where(sine == 0.0, 1.0, sine)
    full, none = np.cos(np.radians(TEE_FULL_DEG)), np.cos(np.radians(TEE_NONE_DEG))
    share = np.clip((-dots[rows, third] - none) / (full - none), 0.0, 1.0)
    share *= np.clip((np.abs(sine) - 0.4) / 0.1, 0.0, 1.0)
    at = junction[trio[:, 0]]
    point = points[at, 0] + 1j * points[at, 1]
    point += share * (stem_centre + reach * stem - point)
    points[at, 0], points[at, 1] = point.real, point.imag  # ``points``: the caller's new array
    return points


def border_segments(
    labels: np.ndarray, junction_radius_px: float = 1.0, masks: CrackMasks | None = None
) -> BorderSegments:
    """The furrow segments between cells, with centre-line length and direction each."""
    span = int(labels.max()) + 1
    masks = masks or CrackMasks.of(labels)
    cracks = _cracks(labels, masks, span)
    if len(cracks.keys) == 0:
        empty = np.zeros(0)
        return BorderSegments(np.zeros((0, 2), dtype=np.int64), empty, empty, np.zeros((0, 3)),
                              empty, empty)
    chains = _chains(cracks)
    factor = np.abs(chains.cos) + np.abs(chains.sin)
    usable = chains.count >= MIN_CRACKS_FOR_DIRECTION
    chain_px = chains.count / np.where(usable, factor, 4.0 / np.pi)
    keys = chains.keys
    meeting = _meeting_points(labels, masks)
    points, blocks = _meeting_clusters(meeting, junction_radius_px)
    ends = _chain_end_junctions(_block_cracks(labels, blocks, chains, span), chains)
    group = _grouped_junctions(ends, chains, chain_px, points)
    used = np.zeros(len(group), dtype=bool)
    used[group] = True
    renumber = used.cumsum() - 1  # junction 0 (none) stays 0
    inside, gaps = _junction_ends(chains, renumber[group][ends],
                                  points.grouped(renumber[group]).centres(), chain_px)
    lengths = np.where(inside, 0.0, chain_px + gaps)  # inside one junction: no furrow
    pairs = np.stack([keys // span, keys % span], axis=1)
    sums = np.stack([chains.count, chains.mean_x * chains.count, chains.mean_y * chains.count], 1)
    return BorderSegments(pairs, lengths, chains.angles, sums, cracks.x2, cracks.y2)
