"""Hill borders that a gap cuts: two hills whose shared border is no furrow along its whole course.

A furrow that ends inside a hill (a dead end, docs/measurement.md "Definitions": it bounds
nothing) can still cut the hill's region of low valley response in two, where it stops short
of the furrow across the hill and the hill's top between its tip and that furrow is too narrow
or too shaded to stay under ``hills.HILL_LEVEL``. Each half then grows from a seed of its own,
and their border runs along the dead end, across the gap and on into the furrow beyond. Step 4
of ``hills`` reads only borders between two cores of one region; these lie between two
regions.

Method (on the valley response of ``texture`` and the hill cells after steps 4-5 of ``hills``,
at the canonical 20 µm/px):
1. Each border between two hills: its cracks in order along the border's main axis, each
   crack's response the larger of its two pixels (as step 4 reads it).
2. Its gap: the lowest crack, and the furrow's floor on each side of it, the highest response
   before it and after it along the border; the lower of the two is the floor the gap is read
   against.
3. The two hills are one when the gap is under ``GAP_SHARE`` of that floor (a furrow on both
   sides, and between them a stretch that is none), at least ``GAP_END_SHARE`` of the border's
   course from either end (the corners where a border leaves a junction dip as the cells'
   rounded seeds meet there), and the two hills together are no larger than
   ``MAX_GAP_HILLS_AREA`` typical hills (a dead end cuts one hill in two; a faint furrow that
   dips between two hills leaves two hills of their own size).
4. Only the hills are joined: the border stays a centre line (its dead end is furrow and adds
   its length, as ``spurs`` says of dead ends), so furrow length, width and direction read as
   without this step.

Thresholds chosen on the project's generator only (seed 11, 30 wide and 30 mixed frames: false
and true borders each rule would merge; docs/experiments/README.md "deadgap"). The end share
leaves out a gap in the last quarter of a border, which is where a dead end that stops a few
µm short of the next furrow puts it: those the step does not join.
"""

from __future__ import annotations

import numpy as np

from appliance.skin.borders import BorderSegments
from appliance.skin.hills import joined_labels
from appliance.skin.pore_profile import median_of

GAP_SHARE = 0.2  # a gap reads under this share of the furrow floor on both sides of it
GAP_END_SHARE = 0.25  # the gap lies at least this share of the border's course from its ends
MAX_GAP_HILLS_AREA = 1.5  # two cells cut from one hill: together at most this many median cells
ALONG_SPAN = 2.0**14  # more than twice the diagonal of any work image, in px
MIN_GAP_CRACKS = 3  # a shorter border is a corner two cells share, not a furrow's course


def gap_hills(segments: BorderSegments, response: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Each cell's hill (indexed by cell label, 0 stays 0): the cells whose border a gap cuts
    share one (steps 1-3). ``segments``: the cells' borders; ``areas``: each cell's pixels."""
    return joined_labels(len(areas), gap_pairs(segments, response, areas))


def hill_borders(segments: BorderSegments, hill_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells' borders between two hills (``hill_of``: each cell's hill): the two hills and
    the crack sums (``BorderSegments.crack_sums``) of each; a border inside one hill is none."""
    pairs = hill_of.take(segments.cell_pairs)
    apart = np.flatnonzero(pairs[:, 0] != pairs[:, 1])
    return pairs.take(apart, axis=0), segments.crack_sums.take(apart, axis=0)


def gap_pairs(segments: BorderSegments, response: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """The pairs of neighbouring cells whose border a gap cuts (steps 1-3)."""
    none = np.zeros((0, 2), dtype=np.int64)
    if len(areas) < 2 or len(segments.cell_pairs) == 0:
        return none
    grown = areas[1:][areas[1:] > 0]
    typical = median_of(grown) if len(grown) else float("nan")  # np.median's value
    counts = segments.crack_sums[:, 0].astype(np.int64)
    pairs = segments.cell_pairs
    kept = np.flatnonzero((areas.take(pairs[:, 0]) + areas.take(pairs[:, 1])
                           <= MAX_GAP_HILLS_AREA * typical) & (counts >= MIN_GAP_CRACKS))
    if len(kept) == 0:
        return none
    # a gap is under GAP_SHARE of the highest response along its border: only borders whose
    # lowest crack is, need their cracks in order
    first = counts.cumsum() - counts  # of each border in all cracks
    at, border, starts = _cracks_of(first.take(kept), counts.take(kept))
    values = _crack_response(segments.crack_xs(at), segments.crack_ys(at), response)
    low = np.minimum.reduceat(values, starts) < GAP_SHARE * np.maximum.reduceat(values, starts)
    kept = kept.take(np.flatnonzero(low))
    if len(kept) == 0:
        return none
    # the low borders' cracks and their responses, as read above
    of_low = np.flatnonzero(low.take(border))
    at, values = at.take(of_low), values.take(of_low)
    sizes = counts.take(kept)
    starts = sizes.cumsum() - sizes
    border = np.repeat(np.arange(len(sizes)), sizes)
    values = values.take(_along_each_border(segments, kept, border, at))
    ends = starts + sizes
    lowest = _first_lowest(values, border, starts)
    # the highest response up to the gap and from it on, within each border: running maxima
    # over all borders, each lifted above every border before it in the direction run
    lift = np.float64(4.0) * border  # responses are under 4 (the level at most 1.08)
    before = np.maximum.accumulate(values + lift) - lift
    after = (np.maximum.accumulate((values - lift)[::-1]) + lift[::-1])[::-1]
    floor = np.minimum(before.take(lowest), after.take(lowest))
    from_end = np.minimum(lowest - starts, ends - 1 - lowest) / (sizes - 1)
    cut = (values.take(lowest) < GAP_SHARE * floor) & (from_end >= GAP_END_SHARE)
    found: np.ndarray = pairs.take(kept.take(np.flatnonzero(cut)), axis=0)
    return found


def _cracks_of(
    first: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cracks of some borders (each's ``first`` crack in all cracks and its ``sizes``):
    their indices in all cracks, which border each is of (in runs), and where each run starts."""
    starts = sizes.cumsum() - sizes
    border = np.repeat(np.arange(len(sizes)), sizes)
    at = np.arange(len(border)) + np.repeat(first - starts, sizes)
    return at, border, starts


def _crack_response(xs: np.ndarray, ys: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Each crack's response, the larger of its two pixels' (midpoints: a whole and a half
    pixel index; the half one says which neighbour), as float64."""
    width = response.shape[1]
    flat = response.ravel()
    before = ys.astype(np.int64) * width + xs.astype(np.int64)  # whole parts: indices >= 0
    across = np.where(xs != np.floor(xs), 1, width)  # right neighbour, else the one below
    values: np.ndarray = np.maximum(flat.take(before), flat.take(before + across)).astype(
        np.float64)
    return values


def _along_each_border(segments: BorderSegments, kept: np.ndarray, border: np.ndarray,
                       at: np.ndarray) -> np.ndarray:
    """The order of the kept borders' cracks (``at`` in all cracks, ``border``: which kept
    border each is of, in runs) that keeps each border's run and sorts it along its principal
    direction."""
    count = segments.crack_sums[:, 0].take(kept)
    centre_x = (segments.crack_sums[:, 1].take(kept) / count).take(border)
    centre_y = (segments.crack_sums[:, 2].take(kept) / count).take(border)
    # the axis pointing right (x up), as arctan2 gives it: where several cracks share the
    # lowest response, the first along the border is the gap (``_first_lowest``)
    angle = segments.angles_rad.take(kept)
    angle = np.where(angle > 0.5 * np.pi, angle - np.pi, angle)
    along = ((segments.crack_xs(at) - centre_x) * np.cos(angle).take(border)
             + (segments.crack_ys(at) - centre_y) * np.sin(angle).take(border))
    # one sort: by border, then along it (|along| is under the work image's diagonal)
    order: np.ndarray = np.argsort(border * ALONG_SPAN + along, kind="stable")
    return order


def _first_lowest(values: np.ndarray, group: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The index of each run's first lowest value (``group``: each value's run, in order)."""
    at = np.flatnonzero(values == np.minimum.reduceat(values, starts).take(group))
    first = np.concatenate([[True], group.take(at)[1:] != group.take(at)[:-1]])
    found: np.ndarray = at[first]
    return found
