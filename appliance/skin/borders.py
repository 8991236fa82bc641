"""The furrow network as a graph: centre-line segments between hill cells, and their lengths.

Every border between two hill cells is a chain of pixel cracks (a crack separates two
4-neighbours with different labels). A straight border at angle φ to the x axis, of length
L, has L·|sin φ| cracks between horizontal neighbours and L·|cos φ| between vertical ones,
so L = cracks / (|cos φ| + |sin φ|): we group cracks by the pair of cells they separate (one
furrow segment), take φ from the principal axis of the segment's crack positions and correct
its crack count by that factor. This is exact for straight segments at any angle, where
counting skeleton pixels is up to 8 % off.

Where several furrows meet, the cells' borders do not meet in one point: the wide junction
(and any pore sitting on it) breaks into a few short borders between cells that are not
neighbours at all, and the real segments stop short of the junction. So junctions are found
as clusters of points where three or more cells meet (within about a furrow width); each
segment is extended from its chain's ends to the centres of the junctions there, and borders
that lie wholly inside one junction are not furrows and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_CRACKS_FOR_DIRECTION = 3
PIECE_PX = 16  # tile size of the pieces
END_OVERLAP_PX = 0.5  # a chain's last crack lies about half a pixel inside the junction


@dataclass(frozen=True)
class BorderSegments:
    """One entry per pair of neighbouring cells: the two cells, the length (px) of the furrow
    segment between them (0 for a border wholly inside one junction: no furrow) and its
    direction (rad)."""

    cell_pairs: np.ndarray  # (S, 2) int: the two cell labels
    lengths_px: np.ndarray  # (S,) float
    angles_rad: np.ndarray  # (S,) float, direction of the segment, 0..π
    crack_sums: np.ndarray  # (S, 3): cracks, sum of their x, sum of their y (pixel indices)

    @property
    def total_length_px(self) -> float:
        """Total centre-line length in pixels."""
        return float(self.lengths_px.sum())

    def anisotropy(self) -> float:
        """|Σ l_i exp(2iθ_i)| / Σ l_i (docs/measurement.md furrow_anisotropy)."""
        total = self.total_length_px
        if total <= 0.0:
            return 0.0
        resultant = complex(np.sum(self.lengths_px * np.exp(2j * self.angles_rad)))
        return float(min(abs(resultant) / total, 1.0))


@dataclass(frozen=True)
class _Cracks:
    keys: np.ndarray  # per cell pair (chain), sorted
    xs: np.ndarray  # per crack, sorted by pair, then by tile
    ys: np.ndarray
    pieces: np.ndarray  # index of each piece's first crack (a pair's cracks in one tile)
    piece_steps: np.ndarray  # (P, 2): cracks between horizontal, vertical neighbours per piece
    first_pieces: np.ndarray  # index of each pair's first piece


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
    """Every crack's midpoint, sorted by cell pair and, within a pair, by the tile it lies in;
    the pieces (one pair's cracks in one tile) with their steps, and the pairs."""
    keys, xs, ys, steps = [], [], [], []
    flat_labels = labels.ravel()
    width = labels.shape[1]
    tiles_across = width // PIECE_PX + 1
    tile_count = (labels.shape[0] // PIECE_PX + 1) * tiles_across
    for horizontal, differs in ((True, masks.right), (False, masks.below)):
        rows, cols = np.divmod(np.flatnonzero(differs), differs.shape[1])  # 10x faster: nonzero
        at = rows * width + cols
        first = flat_labels[at].astype(np.int64)
        second = flat_labels[at + (1 if horizontal else width)].astype(np.int64)
        pair = np.minimum(first, second) * span + np.maximum(first, second)
        keys.append(pair * tile_count + (rows // PIECE_PX) * tiles_across + cols // PIECE_PX)
        xs.append(cols + (0.5 if horizontal else 0.0))
        ys.append(rows + (0.0 if horizontal else 0.5))
        # the border runs with the lower label on its left: down a crack whose lower label is
        # to the left, right along one whose lower label is below (columns: down, along)
        steps.append(np.sign(second - first if horizontal else first - second).astype(np.float64))
    piece_keys, order = _sort_order(np.concatenate(keys), span * span * tile_count)
    if len(piece_keys) == 0:
        nothing = np.zeros(0, np.int64)
        return _Cracks(nothing, np.zeros(0), np.zeros(0), nothing, np.zeros((0, 2)), nothing)
    pieces = np.flatnonzero(np.r_[True, piece_keys[1:] != piece_keys[:-1]])
    across = order < len(steps[0])  # the cracks between horizontal neighbours come first
    step = np.concatenate(steps)[order]
    down = np.add.reduceat(np.where(across, step, 0.0), pieces)
    piece_steps = np.stack([down, np.add.reduceat(step, pieces) - down], axis=1)
    pairs = piece_keys[pieces] // tile_count
    first_pieces = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
    return _Cracks(pairs[first_pieces], np.concatenate(xs)[order], np.concatenate(ys)[order],
                   pieces, piece_steps, first_pieces)


def _sort_order(keys: np.ndarray, key_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """The keys sorted, and the order that sorts them.

    Key and index packed into one int64 and sorted by value is twice as fast as argsort.
    """
    index_bits = max(len(keys).bit_length(), 1)
    if key_bound >= 2 ** (63 - index_bits):
        order = np.argsort(keys)
        return keys[order], order
    packed = (keys.astype(np.int64) << index_bits) | np.arange(len(keys), dtype=np.int64)
    packed.sort()
    return packed >> index_bits, packed & ((1 << index_bits) - 1)


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
    rows, cols = np.divmod(np.flatnonzero(changes == 4), changes.shape[1])
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
    ``radius_px`` so that the few border meeting points of one wide junction merge.
    """
    ids, sums = _junction_sums(labels, radius_px, masks or CrackMasks.of(labels))
    return ids, sums[:, 1:] / np.maximum(sums[:, :1], 1.0)


def _junction_sums(
    labels: np.ndarray, radius_px: float, masks: CrackMasks
) -> tuple[np.ndarray, np.ndarray]:
    """Junction id per pixel and, per junction, its meeting points' count, sum of x, sum of y."""
    meeting = _meeting_points(labels, masks)
    size = max(1, round(radius_px)) * 2 + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    grown = cv2.dilate(meeting.view(np.uint8), disk)
    count, ids = cv2.connectedComponents(grown, connectivity=8)
    # flatnonzero of a bool mask: 7x faster than of the same mask as uint8
    rows, cols = np.divmod(np.flatnonzero(meeting), meeting.shape[1])
    owner = ids[rows, cols]
    sums = np.stack([np.bincount(owner, minlength=count).astype(np.float64),
                     np.bincount(owner, cols + 0.5, count), np.bincount(owner, rows + 0.5, count)],
                    axis=1)
    return ids, sums


@dataclass(frozen=True)
class _Chains:
    """Per cell pair: crack count, centre, principal direction and the extent along it."""

    starts: np.ndarray  # index of each chain's first crack in the sorted crack list
    count: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    angles: np.ndarray
    cos: np.ndarray  # of angles, computed once
    sin: np.ndarray
    ends: tuple[np.ndarray, np.ndarray]  # min and max position along the direction


def _chains(cracks: _Cracks) -> _Chains:
    starts = cracks.pieces[cracks.first_pieces]
    count = np.diff(np.r_[starts, len(cracks.xs)]).astype(np.float64)
    mean_x = np.add.reduceat(cracks.xs, starts) / count
    mean_y = np.add.reduceat(cracks.ys, starts) / count
    cxx = np.add.reduceat(cracks.xs * cracks.xs, starts) / count - mean_x**2
    cyy = np.add.reduceat(cracks.ys * cracks.ys, starts) / count - mean_y**2
    cxy = np.add.reduceat(cracks.xs * cracks.ys, starts) / count - mean_x * mean_y
    angles = (0.5 * np.arctan2(2.0 * cxy, cxx - cyy)) % np.pi
    cos, sin = np.cos(angles), np.sin(angles)
    group = np.repeat(np.arange(len(starts)), count.astype(np.int64))
    along = cracks.xs * cos[group] + cracks.ys * sin[group]  # position along the chain + offset
    offset = mean_x * cos + mean_y * sin
    ends = (
        np.minimum.reduceat(along, starts) - offset,
        np.maximum.reduceat(along, starts) - offset,
    )
    return _Chains(starts, count, mean_x, mean_y, angles, cos, sin, ends)


@dataclass(frozen=True)
class _Ends:
    """Both ends of every chain (first ends, then second ends): the junction each stops in
    (0: none) and its position."""

    junction: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def ids(self) -> list[np.ndarray]:
        """The junction at the first and at the second end of every chain."""
        count = len(self.junction) // 2
        return [self.junction[:count], self.junction[count:]]

    def gaps(self, centres: np.ndarray) -> list[np.ndarray]:
        """The distance from the first and from the second end of every chain to the centre
        of its junction (0 where it stops in none)."""
        gap = np.hypot(centres[self.junction, 0] - self.x, centres[self.junction, 1] - self.y)
        gap[self.junction == 0] = 0.0
        count = len(gap) // 2
        return [gap[:count], gap[count:]]


def _junction_ends(chains: _Chains, ids: np.ndarray) -> _Ends:
    """Both ends of every chain and the junction each stops in.

    Both ends go through one set of array operations (half the numpy calls).
    """
    height, width = ids.shape
    end = np.concatenate(chains.ends)
    x = np.tile(chains.mean_x, 2) + end * np.tile(chains.cos, 2)
    y = np.tile(chains.mean_y, 2) + end * np.tile(chains.sin, 2)
    rows = np.clip(np.rint(y).astype(np.int64), 0, height - 1)
    cols = np.clip(np.rint(x).astype(np.int64), 0, width - 1)
    return _Ends(ids.ravel()[rows * width + cols], x, y)


def border_segments(
    labels: np.ndarray,
    junction_radius_px: float = 2.5,
    masks: CrackMasks | None = None,
    seed_gap: np.ndarray | None = None,
) -> BorderSegments:
    """The furrow segments between cells, with centre-line length and direction each.

    ``seed_gap`` (``seed_gaps`` of the seeds the cells were grown from) turns on the junction
    model for grown cells (``_acute_stems``)."""
    span = int(labels.max()) + 1
    masks = masks or CrackMasks.of(labels)
    cracks = _cracks(labels, masks, span)
    if len(cracks.xs) == 0:
        empty = np.zeros(0)
        return BorderSegments(np.zeros((0, 2), dtype=np.int64), empty, empty, np.zeros((0, 3)))
    chains = _chains(cracks)
    piece_px = np.hypot(cracks.piece_steps[:, 0], cracks.piece_steps[:, 1])
    chain_px = np.add.reduceat(piece_px, cracks.first_pieces)
    short = chains.count < MIN_CRACKS_FOR_DIRECTION
    chain_px[short] = chains.count[short] * (np.pi / 4.0)
    ids, sums = _junction_sums(labels, junction_radius_px, masks)
    centres = sums[:, 1:] / np.maximum(sums[:, :1], 1.0)
    ends = _junction_ends(chains, ids)
    if seed_gap is not None:  # junctions of cells grown from seeds: retreated corners
        joins = _acute_stems(chains, chain_px, ends.ids(), centres, _CrackGaps(cracks, seed_gap))
        if len(joins):
            junction = _joined(len(sums), joins)
            merged = np.zeros((int(junction.max()) + 1, 3))
            np.add.at(merged, junction, sums)
            centres = merged[:, 1:] / np.maximum(merged[:, :1], 1.0)
            ends = _Ends(junction[ends.junction], ends.x, ends.y)
    end_ids, gaps = ends.ids(), ends.gaps(centres)
    chord = np.hypot(*(centres[end_ids[0]] - centres[end_ids[1]]).T)
    both = (end_ids[0] > 0) & (end_ids[1] > 0)
    reach = np.maximum(gaps[0] - END_OVERLAP_PX, 0.0) + np.maximum(gaps[1] - END_OVERLAP_PX, 0.0)
    lengths = np.where(both, np.maximum(chord, chain_px + reach), chain_px + gaps[0] + gaps[1])
    lengths[(end_ids[0] == end_ids[1]) & (end_ids[0] > 0)] = 0.0  # wholly inside one junction
    keys = cracks.keys
    pairs = np.stack([keys // span, keys % span], axis=1)
    sums = np.stack([chains.count, chains.mean_x * chains.count, chains.mean_y * chains.count], 1)
    return BorderSegments(pairs, lengths, chains.angles, sums)


# Junction model for cells grown from seeds. STEM_K and STEM_OVER_CORNER_GAP were fitted on the
# project's generator (seeds 11 and 12: the method's and the regrown oracle cells of
# benchmarks/skin_furrow_oracle.py) and on the polygon networks of tests/skin/test_skin_borders.py
# shrunk and regrown; never on the second renderer (docs/measurement.md, furrow density).
STEM_K = 4.0  # a stem is at most STEM_K corner half-widths / sin(θ/2) long
MAX_APEX_DEG = 90.0  # only corners narrower than this retreat far enough to matter
STEM_OVER_CORNER_GAP = 1.1  # a stem's seeds stand this much further apart than the corner's
MIN_HALF_WIDTH_PX = 0.5  # floor of a corner's half-width


@dataclass(frozen=True)
class _CrackGaps:
    """The seed gap beside every crack: the cracks' positions and the seeds' gap image."""

    cracks: _Cracks
    seed_gap: np.ndarray

    def chain_means(self, chains: _Chains, which: np.ndarray) -> np.ndarray:
        """Per chain in ``which``: the mean seed gap (px) of the two pixels beside each of its
        cracks, half the distance between the seeds on either side of the border."""
        if len(which) == 0:
            return np.zeros(0)
        counts = chains.count[which].astype(np.int64)
        firsts = np.r_[0, np.cumsum(counts)[:-1]]
        at = np.repeat(chains.starts[which] - firsts, counts) + np.arange(int(counts.sum()))
        xs, ys = self.cracks.xs[at], self.cracks.ys[at]
        width = self.seed_gap.shape[1]
        flat = self.seed_gap.ravel()
        low = flat[np.floor(ys).astype(np.int64) * width + np.floor(xs).astype(np.int64)]
        high = flat[np.ceil(ys).astype(np.int64) * width + np.ceil(xs).astype(np.int64)]
        means: np.ndarray = 0.5 * np.add.reduceat(low + high, firsts) / counts
        return means


def _acute_stems(
    chains: _Chains, chain_px: np.ndarray, end_ids: list[np.ndarray], centres: np.ndarray,
    gaps: _CrackGaps,
) -> np.ndarray:
    """Pairs of junctions to join: an acute apex (three chains, two of them at an angle θ,
    the narrowest of the three) and the junction at the other end of its third chain (the
    stem), when the stem is a retreated corner.

    A cell grown from a seed that stops a half-width h short of its borders loses the tip of
    each corner of angle θ: the tip retreats by about h / sin(θ/2), and the two neighbours
    meet along the corner's bisector instead (the stem). Joining the apex to the junction it
    came from extends the corner's two borders back to that junction and drops the stem. A
    real short furrow opposite an acute corner (common in random tilings) looks the same at
    its apex, but along it the seeds of its two cells face each other across the furrow, as
    they do across the corner's borders; along a stem they do not (the corner's tip lay
    between them), so the stem's seed gap is wider than the corner's borders' (h).
    """
    apex, trio, out = _three_arm_junctions(end_ids, centres, chains)
    # each of the three chains in turn as the stem: (left, right, stem) per row
    roles = trio[:, _ROTATIONS].reshape(-1, 3)
    unit = out[:, _ROTATIONS].reshape(-1, 3, 2)
    cos_angle = np.sum(unit[:, 0] * unit[:, 1], axis=1)
    # the stem is opposite the acute angle: the two other angles are both wider
    widest = np.maximum(np.sum(unit[:, 2] * unit[:, 0], 1), np.sum(unit[:, 2] * unit[:, 1], 1))
    apexes = np.repeat(apex, 3)
    far = np.concatenate([end_ids[1], end_ids[0]])[roles[:, 2]]  # the stem's other end
    maybe = np.flatnonzero((cos_angle > np.cos(np.radians(MAX_APEX_DEG))) & (widest < cos_angle)
                           & (far > 0) & (far != apexes))
    arms = roles[maybe].T % len(chains.mean_x)
    left_gap, right_gap, stem_gap = gaps.chain_means(chains, arms.ravel()).reshape(3, -1)
    corner_gap = np.maximum(0.5 * (left_gap + right_gap), MIN_HALF_WIDTH_PX)
    half_angle = 0.5 * np.arccos(np.clip(cos_angle[maybe], -1.0, 1.0))
    reach = STEM_K * corner_gap / np.maximum(np.sin(half_angle), 1e-3)
    pick = (chain_px[arms[2]] <= reach) & (stem_gap >= STEM_OVER_CORNER_GAP * corner_gap)
    return np.stack([apexes[maybe][pick], far[maybe][pick]], axis=1)


_ROTATIONS = np.array([[1, 2, 0], [2, 0, 1], [0, 1, 2]])


def _three_arm_junctions(
    end_ids: list[np.ndarray], centres: np.ndarray, chains: _Chains
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The junctions where exactly three chains end, their three chain ends (indices into
    both ends concatenated) and the unit vectors from the junction to those chains' centres."""
    junction = np.concatenate(end_ids)
    junction[np.tile(end_ids[0] == end_ids[1], 2)] = 0  # a chain inside one junction: no arm
    per = np.bincount(junction, minlength=len(centres))
    per[0] = 0
    three = np.flatnonzero(per[junction] == 3)
    ends = three[np.argsort(junction[three], kind="stable")].reshape(-1, 3)
    apex = junction[ends[:, 0]]
    chain = ends % len(chains.mean_x)
    out = np.stack([chains.mean_x[chain] - centres[apex, 0][:, None],
                    chains.mean_y[chain] - centres[apex, 1][:, None]], axis=-1)
    out /= np.maximum(np.hypot(out[..., 0], out[..., 1]), 1e-9)[..., None]
    return apex, ends, out


def seed_gaps(seeds: np.ndarray) -> np.ndarray:
    """Every pixel's Euclidean distance (px) from the nearest seed pixel (label > 0)."""
    gaps: np.ndarray = cv2.distanceTransform(
        cv2.compare(seeds, np.zeros_like(seeds), cv2.CMP_EQ), cv2.DIST_L2, cv2.DIST_MASK_5)
    return gaps


def _joined(count: int, pairs: np.ndarray) -> np.ndarray:
    """Ids 0..count-1 with each joined pair sharing the smaller one (0 stays 0)."""
    ids = np.arange(count)
    while True:
        low = np.minimum(ids[pairs[:, 0]], ids[pairs[:, 1]])
        if np.array_equal(ids[pairs[:, 0]], low) and np.array_equal(ids[pairs[:, 1]], low):
            return ids
        np.minimum.at(ids, pairs[:, 0], low)
        np.minimum.at(ids, pairs[:, 1], low)
        ids = ids[ids]
