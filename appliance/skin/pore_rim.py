"""A pore's own edge: its rim read on the rays that do not run into a furrow.

Method (docs/measurement.md "Pores", the diameter):
1. Each ray's rim is read as pore_profile reads it: where the depth falls halfway from the
   pit's floor to the skin around it.
2. A ray longer than ``ARM_CUT`` times the median ray may run into a furrow (the pore touches
   one, or sits at a junction and a furrow arm leaves it): it reaches the halfway level only
   beyond that furrow. It does when, before its rim, the pit's depth beyond what the straight
   furrows alone give (``furrows_alone_at``: the depth's opening by a line ``BAND_LENGTH``
   rims long, the best of 8 directions, read at the ray's samples only) falls to
   ``INTO_FURROW_SHARE`` of its value at the centre. A long ray along which it does not is the
   long axis of an oval pore, and stays. A fall up to ``INTO_FURROW_RAMP_PX`` later counts in
   part, so that the verdict moves smoothly with the image and the calibration.
3. A circle is fitted to the rim points (least squares in x² + y², which for all rays around a
   centred pit is the rms ray: the pit's equivalent radius), each ray counted by the share in
   which it does not run into a furrow, wherever the circle's centre lies: the deepest point
   of a large pore can lie well off its middle.
Sizes are in fine pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.pore_profile import (
    ARM_CUT,
    FINE,
    RAY_COUNT,
    RAY_STEP_PX,
    crossing,
)

# The straight furrows alone: the depth opened by a line this many rim radii long (longer than
# the pore and a touching furrow's width; docs/experiments/README.md "pore-band-excess").
BAND_LENGTH = 3.0
LINE_DIRECTIONS = RAY_COUNT // 2  # the directions of the straight furrows (every 22.5°)
# A long ray runs into a furrow when the pit's depth beyond the furrows alone falls to this
# share of its value at the centre more than INTO_FURROW_MARGIN_PX before its rim. Chosen on
# seeds 11/12 of the own generator only (docs/experiments/README.md "pore-band-rim").
INTO_FURROW_SHARE = 0.25
INTO_FURROW_MARGIN_PX = FINE
# A ray whose fall comes later counts as running into a furrow by a share that falls from 1 to
# 0 over this many px beyond that point: a moved crop, the noise or the calibration move the
# fall a little, and the diameter moves a little with it, not in a step (seeds 11/12:
# docs/experiments/README.md "pore-rim-sizing-cheap").
INTO_FURROW_RAMP_PX = 1.0
LINE_SAMPLES = 2  # samples of the depth along each half of a line (furrows_alone_at; 3 read
# no better on seeds 11/12, docs/experiments/README.md "pore-rim-sizing-cheap")
MAP_COLUMNS = 16384  # points sampled per cv2.remap call
READ_STEP_PX = RAY_STEP_PX  # the long rays' samples the furrow test reads
FIRST_READ = 3  # samples read first along a long ray, then as many again, then the rest, each
# only where no fall is found yet (the first fall is the same: speed only)
MIN_KEPT_RAYS = RAY_COUNT // 4  # with fewer rays left, every ray is used
_LINE_ANGLES = np.arange(2 * LINE_DIRECTIONS) * (np.pi / LINE_DIRECTIONS)  # both ways
_LINE_COS = np.cos(_LINE_ANGLES).astype(np.float32)[None, :, None]
_LINE_SIN = np.sin(_LINE_ANGLES).astype(np.float32)[None, :, None]
_STEP_NUMBERS = np.arange(1, 2 * LINE_SAMPLES + 1, dtype=np.float32)[:, None]


@dataclass(frozen=True)
class OwnEdge:
    """Each pit's rim from its own edge: radius and centre (fine px), and how far its rays
    run into a furrow (0: none does, and the radius is the rms ray of every ray; 1: at least
    one ray clearly does)."""

    radius_px: np.ndarray
    centres: np.ndarray
    into_furrow: np.ndarray


def own_edge(depth: np.ndarray, centres: np.ndarray, floor: np.ndarray, rim: np.ndarray,
             radius_px: np.ndarray) -> OwnEdge:
    """The rim of each pit (``centres`` on the fine ``depth``, with the ``floor`` depth, each
    ray's ``rim`` in angle order and the rim ``radius_px`` pore_profile read) from its own
    edge."""
    middle = np.sort(rim, axis=1)[:, RAY_COUNT // 2 - 1:RAY_COUNT // 2 + 1]
    median = (middle[:, 0] + middle[:, 1]) / 2.0  # np.median's, at a quarter of its cost
    pits, which = np.nonzero(rim > ARM_CUT * median[:, None])
    into = np.zeros(rim.shape)
    if len(pits):
        half = np.maximum(BAND_LENGTH * radius_px / 2.0, 1.0)
        before = _falls_before_rim(depth, centres, floor, half, (pits, which),
                                   rim=rim, median=median)
        into[pits, which] = np.clip(1.0 + before / INTO_FURROW_RAMP_PX, 0.0, 1.0)
    into[np.sum(1.0 - into, axis=1) < MIN_KEPT_RAYS] = 0.0  # too few left: every ray
    fitted, radius = _circle(rim, 1.0 - into)
    return OwnEdge(radius, centres + fitted, into.max(axis=1))


def _falls_before_rim(depth: np.ndarray, centres: np.ndarray, floor: np.ndarray,
                      half: np.ndarray, long_rays: tuple[np.ndarray, np.ndarray], *,
                      rim: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Per long ray (``long_rays``: pits and rays), how far (px) before ``INTO_FURROW_MARGIN_PX``
    inside its rim the pit's depth beyond the furrows alone (``furrows_alone_at``, lines
    ``2 half`` px long) falls to ``INTO_FURROW_SHARE`` of the centre's (negative: after).
    Read on the ray's samples between the median rim (inside it, the pit's own body) and
    there."""
    pits, which = long_rays  # pits in ascending order
    new_pit = np.concatenate([[True], pits[1:] != pits[:-1]])
    own_pits = pits[new_pit]
    back = new_pit.cumsum() - 1  # each long ray's pit among own_pits
    reach = rim[pits, which] - INTO_FURROW_MARGIN_PX
    radii = np.arange(1, int(np.ceil(reach.max() / READ_STEP_PX)) + 2) * READ_STEP_PX
    # each ray reads the radii first <= column < stop (from the median rim to its own)
    first = radii.searchsorted(median[pits] - RAY_STEP_PX)
    stop = radii.searchsorted(reach + RAY_STEP_PX, side="right")
    angles = which * (2.0 * np.pi / RAY_COUNT)
    cos, sin = np.cos(angles), np.sin(angles)
    half_of = half[pits]
    excess = np.full((len(pits), len(radii) + 1), 1e9)  # the centre, then each radius; not
    # read: never under the share
    fallen = np.zeros(len(pits), dtype=bool)
    start = 0
    for end in (FIRST_READ, 2 * FIRST_READ, len(radii)):  # a furrow is usually met early
        low = first + start
        counts = np.where(fallen, 0, np.maximum(np.minimum(first + end, stop) - low, 0))
        rays = np.repeat(np.arange(len(pits)), counts)
        columns = low[rays] + np.arange(len(rays)) - np.repeat(counts.cumsum() - counts, counts)
        on_ray = radii[columns]
        points = np.stack([centres[pits[rays], 0] + cos[rays] * on_ray,
                           centres[pits[rays], 1] + sin[rays] * on_ray], axis=1)
        halves = half_of[rays]
        if not start:  # the centres too
            points = np.concatenate([centres[own_pits], points])
            halves = np.concatenate([half[own_pits], halves])
        alone, at_point = furrows_alone_at(depth, points, halves)
        if not start:
            excess[:, 0] = floor[pits] - alone[back]
            level = INTO_FURROW_SHARE * excess[:, 0]
            alone, at_point = alone[len(own_pits):], at_point[len(own_pits):]
        read = at_point - alone
        excess[rays, columns + 1] = read
        fallen[rays[read < level[rays]]] = True
        start = end
    result = np.full(len(pits), -np.inf)  # never falls: -inf
    result[fallen] = reach[fallen] - crossing(excess[fallen], level[fallen],
                                              np.concatenate([[0.0], radii]))
    return result


def furrows_alone_at(depth: np.ndarray, points: np.ndarray,
                     half_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The depth the straight furrows alone give each point: the opening of ``depth`` by a line
    ``2 half_px`` long, the best of ``LINE_DIRECTIONS`` directions. A furrow longer than the
    line keeps its depth; a pit shorter than it every way opens to the skin around it.

    Read on ``LINE_SAMPLES`` samples of each half line around each point only: a line placed
    ``a`` samples back and the rest forward keeps the shallower of the two sides' shallowest
    depths, and the best placing counts (the samples scale with ``half_px``, so the reading
    moves smoothly with the calibration). With it, the depth at each point."""
    count = len(points)
    if not count:
        return np.zeros(0), np.zeros(0)
    line = 2 * LINE_SAMPLES  # samples on each side of the point
    steps = _STEP_NUMBERS * (half_px / LINE_SAMPLES).astype(np.float32)[None, :]  # (2n, N)
    maps = np.empty((2, 1 + line * 2 * LINE_DIRECTIONS, count), np.float32)  # x, y
    for axis, unit in enumerate((_LINE_COS, _LINE_SIN)):  # the point, then the lines' samples
        maps[axis, 0] = points[:, axis]
        around = maps[axis, 1:].reshape(line, 2 * LINE_DIRECTIONS, count)
        np.multiply(unit, steps[:, None, :], out=around)
        around += maps[axis, 0]
    at_point = _sampled(depth, maps[0, :1], maps[1, :1])[0]  # (cv2's result may differ in
    # the last bit with the place in the map: the point alone, the lines together)
    shallowest = _sampled(depth, maps[0, 1:], maps[1, 1:]).reshape(
        line, 2 * LINE_DIRECTIONS, count)  # from the point outwards, the shallowest so far
    np.minimum(shallowest[0], at_point, out=shallowest[0])
    for step in range(1, line):  # (numpy's accumulate is slow along axis 0)
        np.minimum(shallowest[step - 1], shallowest[step], out=shallowest[step])
    forward, back = shallowest[:, :LINE_DIRECTIONS], shallowest[:, LINE_DIRECTIONS:]
    best = np.maximum(forward[-1], back[-1])  # the line all forward, all back
    for behind in range(1, line):  # ``behind`` samples back, the rest forward
        np.maximum(best, np.minimum(back[behind - 1], forward[line - behind - 1]), out=best)
    return best.max(axis=0).astype(np.float64), at_point.astype(np.float64)


def _sampled(depth: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``depth`` (float32) at float positions (float32 maps, rows of points), bilinear
    (cv2.remap; beyond the frame, its edge): cv2 takes fewer than 32,768 columns at a time."""
    parts = [cv2.remap(depth, xs[:, first:first + MAP_COLUMNS], ys[:, first:first + MAP_COLUMNS],
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for first in range(0, xs.shape[1], MAP_COLUMNS)]
    sampled: np.ndarray = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return sampled


def _circle(rim: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The circle through the rim points of each pit (rays in angle order), each counted by
    its ``kept`` share, least squares in x² + y² (Kasa, in closed form about the points'
    weighted mean): its centre relative to the pit's and its radius."""
    angles = np.arange(RAY_COUNT) * (2.0 * np.pi / RAY_COUNT)
    total = np.maximum(kept.sum(axis=1), 1e-9)
    xs, ys = rim * np.cos(angles), rim * np.sin(angles)
    mean_x, mean_y = (kept * xs).sum(axis=1) / total, (kept * ys).sum(axis=1) / total
    us, vs = xs - mean_x[:, None], ys - mean_y[:, None]
    suu, svv, suv = ((kept * p * q).sum(axis=1) for p, q in ((us, us), (vs, vs), (us, vs)))
    squared = us**2 + vs**2
    bu, bv = (kept * us * squared).sum(axis=1) / 2.0, (kept * vs * squared).sum(axis=1) / 2.0
    det = suu * svv - suv**2 + 1e-9  # points on a line (or a rim of 0 px): no curvature
    cu, cv = (bu * svv - bv * suv) / det, (bv * suu - bu * suv) / det
    centre = np.stack([mean_x + cu, mean_y + cv], axis=1)
    radius: np.ndarray = np.sqrt(cu**2 + cv**2 + (suu + svv) / total)
    return centre, radius
