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
as clusters of points where three or more cells meet (within about a furrow width), each
placed where the straight lines of the chains ending in it meet (least squares); a segment's
length reaches as far as its crack count says, and it is extended from there to that point
when the point lies further out (on exact cells the crack count already reaches the junction,
so nothing is added; docs/measurement.md "Texture accuracy"). Borders that lie wholly inside
one junction are not furrows and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_CRACKS_FOR_DIRECTION = 3
MEETING_WEIGHT_CAP_PX = 10.0  # a chain's line counts by its length up to this
MEETING_PULL = 2.0  # weight of the junction cluster's centre against the chains' lines


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
    xs: np.ndarray
    ys: np.ndarray


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
    """Every crack: its cell-pair key and midpoint, sorted by key."""
    keys, xs, ys = [], [], []
    key_type = np.int32 if span * span < 2**31 else np.int64
    flat_labels = labels.ravel()
    width = labels.shape[1]
    for horizontal, differs in ((True, masks.right), (False, masks.below)):
        rows, cols = np.divmod(np.flatnonzero(differs), differs.shape[1])  # 10x faster: nonzero
        at = rows * width + cols
        first = flat_labels[at].astype(key_type)
        second = flat_labels[at + (1 if horizontal else width)].astype(key_type)
        keys.append(np.minimum(first, second) * key_type(span) + np.maximum(first, second))
        xs.append(cols + (0.5 if horizontal else 0.0))
        ys.append(rows + (0.0 if horizontal else 0.5))
    all_keys, order = _sort_order(np.concatenate(keys), span * span)
    return _Cracks(all_keys, np.concatenate(xs)[order], np.concatenate(ys)[order])


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
    meeting = _meeting_points(labels, masks or CrackMasks.of(labels))
    size = max(1, round(radius_px)) * 2 + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    grown = cv2.dilate(meeting.view(np.uint8), disk)
    count, ids = cv2.connectedComponents(grown, connectivity=8)
    # flatnonzero of a bool mask: 7x faster than of the same mask as uint8
    rows, cols = np.divmod(np.flatnonzero(meeting), meeting.shape[1])
    owner = ids[rows, cols]
    weight = np.maximum(np.bincount(owner, minlength=count), 1)
    centre_x = np.bincount(owner, cols + 0.5, count) / weight
    centre_y = np.bincount(owner, rows + 0.5, count) / weight
    centres = np.stack([centre_x, centre_y], axis=1)
    return ids, centres


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
    starts = np.flatnonzero(np.r_[True, cracks.keys[1:] != cracks.keys[:-1]])
    count = np.diff(np.r_[starts, len(cracks.keys)]).astype(np.float64)
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


def _junction_ends(
    chains: _Chains, ids: np.ndarray, centres: np.ndarray, chain_px: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For both ends of every chain: the junction it stops in (0: none) and how far that
    junction's meeting point (``_lines_meeting_point``) lies beyond the end the chain's length
    reaches.

    The junction is looked up at the chain's last crack; the gap is measured from the end of
    the measured length (centre +- half of it along the chain), outwards along the chain: on
    exact cells a chain's crack count already reaches its junction, so nothing is added; where
    grown cells stop short of a wide junction, the rest is. Both ends go through one set of
    array operations (half the numpy calls).
    """
    height, width = ids.shape
    end = np.concatenate(chains.ends)
    cos, sin = np.tile(chains.cos, 2), np.tile(chains.sin, 2)
    x = np.tile(chains.mean_x, 2) + end * cos
    y = np.tile(chains.mean_y, 2) + end * sin
    rows = np.clip(np.rint(y).astype(np.int64), 0, height - 1)
    cols = np.clip(np.rint(x).astype(np.int64), 0, width - 1)
    junction = ids.ravel()[rows * width + cols]
    mean_x, mean_y, length = (np.tile(v, 2) for v in (chains.mean_x, chains.mean_y, chain_px))
    centres = _lines_meeting_point(junction, centres, x=mean_x, y=mean_y, cos=cos, sin=sin,
                                   length=length)
    outward = np.r_[-np.ones(len(chain_px)), np.ones(len(chain_px))]
    reach_x = mean_x + outward * length / 2.0 * cos
    reach_y = mean_y + outward * length / 2.0 * sin
    gap = (centres[:, 0][junction] - reach_x) * cos + (centres[:, 1][junction] - reach_y) * sin
    gap = np.maximum(gap * outward, 0.0)
    gap[junction == 0] = 0.0
    count = len(chains.mean_x)
    return [junction[:count], junction[count:]], [gap[:count], gap[count:]]


def _lines_meeting_point(junction: np.ndarray, centres: np.ndarray, *, x: np.ndarray, y: np.ndarray,
                    cos: np.ndarray, sin: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per junction, the point nearest (least squares) to the straight lines of the chains
    ending in it, each weighted by its length up to ``MEETING_WEIGHT_CAP_PX``, pulled towards
    the cluster's centre (``centres``) with weight ``MEETING_PULL``. Furrows run straight into
    their junction, while the meeting points of grown cells spread around it (and a cluster may
    hold two junctions joined by a short edge): the chains' lines say where they meet. One row
    per chain end: its ``junction`` (0: none), its chain's centre, direction and length."""
    count = len(centres)
    weight = (junction > 0) * np.minimum(length, MEETING_WEIGHT_CAP_PX)
    # normal projector of each line, I - d d^T, summed per junction; plus the pull
    nxx, nyy, nxy = 1.0 - cos * cos, 1.0 - sin * sin, -cos * sin
    axx = np.bincount(junction, weight * nxx, count) + MEETING_PULL
    ayy = np.bincount(junction, weight * nyy, count) + MEETING_PULL
    axy = np.bincount(junction, weight * nxy, count)
    bx = np.bincount(junction, weight * (nxx * x + nxy * y), count) + MEETING_PULL * centres[:, 0]
    by = np.bincount(junction, weight * (nxy * x + nyy * y), count) + MEETING_PULL * centres[:, 1]
    det = axx * ayy - axy * axy  # >= MEETING_PULL**2 > 0
    return np.stack([(ayy * bx - axy * by) / det, (axx * by - axy * bx) / det], axis=1)


def border_segments(
    labels: np.ndarray, junction_radius_px: float = 2.5, masks: CrackMasks | None = None
) -> BorderSegments:
    """The furrow segments between cells, with centre-line length and direction each."""
    span = int(labels.max()) + 1
    masks = masks or CrackMasks.of(labels)
    cracks = _cracks(labels, masks, span)
    if len(cracks.keys) == 0:
        empty = np.zeros(0)
        return BorderSegments(np.zeros((0, 2), dtype=np.int64), empty, empty, np.zeros((0, 3)))
    chains = _chains(cracks)
    factor = np.abs(chains.cos) + np.abs(chains.sin)
    usable = chains.count >= MIN_CRACKS_FOR_DIRECTION
    chain_px = chains.count / np.where(usable, factor, 4.0 / np.pi)
    ids, centres = junctions(labels, junction_radius_px, masks)
    end_ids, gaps = _junction_ends(chains, ids, centres, chain_px)
    lengths = chain_px + gaps[0] + gaps[1]
    lengths[(end_ids[0] == end_ids[1]) & (end_ids[0] > 0)] = 0.0  # wholly inside one junction
    keys = cracks.keys[chains.starts]
    pairs = np.stack([keys // span, keys % span], axis=1)
    sums = np.stack([chains.count, chains.mean_x * chains.count, chains.mean_y * chains.count], 1)
    return BorderSegments(pairs, lengths, chains.angles, sums)
