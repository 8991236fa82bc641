"""A strand leaving a pit: a hair growing out of a pore, told from the pit's own edge.

A hair grows out of a follicle, which opens as a pore, so a hair often leaves a pore from its
centre: a strand narrower than the pit, as dark as it or darker, running on for millimetres.
Read as part of the pit, it draws the pit out into a dash, reads as one more furrow arm as deep
as the pit, and is the pit's deepest ray (docs/experiments/README.md "hairpore"). Its rays are
left out of those readings (``pore_profile.Shape``), so the pit's own edge is read on the rest.

1. Near-black: the deepest ray just outside the rim is ``STRAND_OVER_FURROWS`` times the
   frame's furrow floor deep (the deepest furrow segments drawn, 2.2 x the furrows, read up
   to 2.7 x where they meet a junction) and ``STRAND_OVER_REST`` times as deep as every ray
   outside its run; one-sided: the rays opposite it less than half as deep (a furrow, a dash
   or a hair lying across the pit runs on on both sides).
2. The run: the neighbouring rays around that ray whose rim lies beyond
   ``pore_profile.ARM_CUT`` times the median rim (they run on down something), at most
   ``STRAND_MAX_RAYS`` of the 16.
3. Its width across: the depth on a line at right angles to the run's middle direction,
   ``STRAND_AT_RIMS`` rims out (beyond the pit's wall), where it stays deeper than halfway
   from the skin to the strand's depth there; the pit's own width on the same line through
   its centre, at the same level. A strand is at most ``STRAND_MAX_SHARE`` of the pit's
   width (a hair's end is as wide as its strand: no pit wider than it), the pit closes on
   that line (a line along a furrow does not), and the strand is at least half the pit's
   depth over the skin there and no deeper than the pit's floor (a pit at the end of a
   deeper stretch of furrow is shallower than the stretch).
4. The strand's share of the pit's width is kept (``Shape.strand_share``): a pit on the hair
   mask in a furrow or at a junction is a pore with its hair only where the strand is at most
   ``STRAND_MAX_SHARE_IN_FURROW`` of it (a hair's tip there reads wider than its strand).
"""

from __future__ import annotations

import numpy as np

STRAND_MAX_RAYS = 5
# in "rims": the pit's half-width across the strand (its rims at right angles to it)
STRAND_AT_RIMS = 2.0  # where the strand's width across is read, in rims from the centre
STRAND_ACROSS_RIMS = 1.5  # how far either side of the strand's axis it is read, in rims
STRAND_SAMPLES = 25  # samples across (odd: one on the axis)
STRAND_AXIS_RIMS = 0.5  # the strand's own depth: the deepest sample this near the axis
STRAND_MAX_SHARE = 0.9  # a strand is at most this share of the pit's own width wide
STRAND_OVER_REST = 2.0  # a strand is this much deeper than every other ray just outside the rim
STRAND_OVER_FURROWS = 3.0  # ... and this much deeper than the frame's furrow floor
# a pit on a hair in a furrow or at a junction is a pore with a hair only where its strand is
# at most this share of its width: a hair's tip there reads 0.75-0.88 of its "pit" (the tip
# itself, widened by the furrow or junction under it; pores.py ``_on_hair``)
STRAND_MAX_SHARE_IN_FURROW = 0.7

_ACROSS = np.linspace(-1.0, 1.0, STRAND_SAMPLES)  # of STRAND_ACROSS_RIMS rims


def strand_rays(depth: np.ndarray, centres: np.ndarray, ring: np.ndarray, rim: np.ndarray,
                long: np.ndarray, *, skin: np.ndarray, floor: np.ndarray,
                furrow_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, rays) bool: the rays of each pit that run down a strand leaving it (none where no
    strand leaves it); and (P,) the strand's width over the pit's own width (inf where no
    strand leaves it). ``ring``: each ray's depth just outside the rim; ``rim``: each ray's
    rim radius (fine px); ``long``: the rays whose rim runs on (rays in angle order);
    ``skin``, ``floor``: the pit's; ``furrow_floor``: the frame's."""
    away = np.zeros(long.shape, dtype=bool)
    share = np.full(len(long), np.inf)
    # near-black: few pits have a ray that deep, and only those are read further (speed only)
    dark = np.flatnonzero(ring.max(axis=1) >= STRAND_OVER_FURROWS * furrow_floor)
    if len(dark):
        away[dark], share[dark] = _strand_rays_of(
            depth, centres[dark], ring[dark], rim[dark], long[dark], skin=skin[dark],
            floor=floor[dark])
    return away, share


def _strand_rays_of(depth: np.ndarray, centres: np.ndarray, ring: np.ndarray, rim: np.ndarray,
                    long: np.ndarray, *, skin: np.ndarray, floor: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``strand_rays`` of pits whose deepest ray just outside the rim is near-black."""
    count, rays = long.shape
    rows = np.arange(count)
    deepest = ring.argmax(axis=1)
    left, right = _run_sides(long, deepest)
    run = np.where(long[rows, deepest], 1 + left + right, 0)
    # one-sided: a strand through the pit (a furrow, a dash, a hair lying across) runs on on
    # the far side too
    far = (deepest + rays // 2 + np.arange(-1, 2)[:, None]) % rays
    one_sided = ring[rows, far].max(axis=0) < ring[rows, deepest] / STRAND_OVER_REST
    rest = np.sort(ring, axis=1)[rows, -1 - np.minimum(run, STRAND_MAX_RAYS)]
    darker = ring[rows, deepest] >= STRAND_OVER_REST * rest
    maybe = np.flatnonzero((run >= 1) & (run <= STRAND_MAX_RAYS) & one_sided & darker)
    away = np.zeros(long.shape, dtype=bool)
    share = np.full(count, np.inf)
    if not len(maybe):
        return away, share
    middle = (deepest[maybe] + (right[maybe] - left[maybe]) / 2.0) * (2.0 * np.pi / rays)
    # the pit's own width across the strand, read as the strand's is, through its centre
    across = (rim[maybe, (deepest[maybe] + rays // 4) % rays]
              + rim[maybe, (deepest[maybe] - rays // 4) % rays])
    width, strand_depth = _width_across(depth, centres[maybe], middle, across / 2.0,
                                        skin[maybe], rims_out=STRAND_AT_RIMS)
    own_width, _ = _width_across(depth, centres[maybe], middle, across / 2.0, skin[maybe],
                                 rims_out=0.0, top=strand_depth)
    narrow = np.isfinite(own_width) & (width <= STRAND_MAX_SHARE * own_width) & (
        strand_depth >= (floor[maybe] + skin[maybe]) / 2.0) & (strand_depth <= floor[maybe])
    chosen = maybe[narrow]
    share[chosen] = width[narrow] / own_width[narrow]
    offsets = np.arange(-STRAND_MAX_RAYS, STRAND_MAX_RAYS + 1)
    within = (offsets[None, :] >= -left[chosen, None]) & (offsets[None, :] <= right[chosen, None])
    ray_of = (deepest[chosen, None] + offsets[None, :]) % rays
    away[np.repeat(chosen, within.sum(axis=1)), ray_of[within]] = True
    return away, share


def _run_sides(long: np.ndarray, deepest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many neighbouring rays on either side of ``deepest`` are ``long`` without a break
    (counted up to ``STRAND_MAX_RAYS``, a wider run counting more than that)."""
    count, rays = long.shape
    rows = np.arange(count)
    sides = []
    for step in (-1, 1):
        going = np.ones(count, dtype=bool)
        side = np.zeros(count, dtype=np.intp)
        for k in range(1, STRAND_MAX_RAYS + 1):
            going &= long[rows, (deepest + step * k) % rays]
            side += going
        sides.append(side)
    return sides[0], sides[1]


def _width_across(depth: np.ndarray, centres: np.ndarray, angle: np.ndarray,
                  median: np.ndarray, skin: np.ndarray, *, rims_out: float,
                  top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The width (fine px) of what lies across ``angle``, ``rims_out`` rims (``median``: the
    pit's half-width across, fine px) out from each pit's centre (0: the pit itself), where
    it stays deeper than halfway from the skin to its depth there (or to ``top``), and that
    depth (inf wide where it does not fall to that level on both sides within
    ``STRAND_ACROSS_RIMS`` rims)."""
    along, across = np.cos(angle), np.sin(angle)
    offset = (STRAND_ACROSS_RIMS * median)[:, None] * _ACROSS[None, :]
    reach = (rims_out * median)[:, None]
    xs = centres[:, :1] + reach * along[:, None] - offset * across[:, None]
    ys = centres[:, 1:] + reach * across[:, None] + offset * along[:, None]
    profile = _bilinear(depth, xs, ys)
    near_axis = np.abs(_ACROSS * STRAND_ACROSS_RIMS) <= STRAND_AXIS_RIMS
    peak = np.flatnonzero(near_axis)[0] + np.argmax(profile[:, near_axis], axis=1)
    rows = np.arange(len(profile))
    strand_depth = profile[rows, peak]
    below = profile < ((skin + (strand_depth if top is None else top)) / 2.0)[:, None]
    index = np.arange(STRAND_SAMPLES)[None, :]
    first_left = np.where(below & (index < peak[:, None]), index, -1).max(axis=1)
    first_right = np.where(below & (index > peak[:, None]), index, STRAND_SAMPLES).min(axis=1)
    closed = (first_left >= 0) & (first_right < STRAND_SAMPLES)
    step = STRAND_ACROSS_RIMS * median * (_ACROSS[1] - _ACROSS[0])
    width = np.where(closed, (first_right - first_left - 1) * step, np.inf)
    return width, strand_depth


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Image values at float positions (clamped to the frame)."""
    height, width = image.shape
    xs = xs.clip(0.0, width - 1.001)
    ys = ys.clip(0.0, height - 1.001)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx, fy = xs - x0, ys - y0
    top = image[y0, x0] * (1.0 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1.0 - fx) + image[y0 + 1, x0 + 1] * fx
    result: np.ndarray = top * (1.0 - fy) + bottom * fy
    return result

