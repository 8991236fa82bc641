"""Profiles of pits: how deep, how wide, how round each candidate pore is, read on rays.

The measuring half of the pore search (docs/measurement.md "Pores"); appliance/skin/pores.py
decides from these numbers which pits are pores. Candidates are found on the work depth
(20 µm/px); their profiles are read on the fine depth (10 µm/px), where a 50 µm pore is five
pixels across. Sizes here are in fine pixels unless named otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

from appliance.skin import borders
from appliance.skin.pore_strand import strand_rays
from appliance.skin.preprocess import FINE_UM_PER_PX, WORK_UM_PER_PX, Prepared, on_grid

SMOOTH_PX = 0.7  # light smoothing of the work depth before the candidate search (work px)
FINE_SMOOTH_PX = 1.0  # light smoothing of the fine depth the profiles are read on
FINE = WORK_UM_PER_PX / FINE_UM_PER_PX  # fine pixels per work pixel (2)
BLOB_SCALES_PX = (1.5, 3.0)  # curvature scales of the candidate search (work px)
MIN_BLOBNESS = 0.03  # scale-normalised weaker curvature of a candidate
MIN_CANDIDATE_DEPTH = 0.12  # a pit at least this far below the hill level is looked at
RAY_COUNT = 16
RAY_STEP_PX = 1.0
RAY_REACH_UM = 320.0
SKIN_ITERATIONS = 2  # rim, then skin just outside it, then the rim again
SKIN_RING = 1.5  # the skin: the lower-quartile ray depth between the rim and 1.5 rims out
ARM_CUT = 1.15  # a ray longer than this times the median ray runs down a furrow arm
# A pit's own edge on each ray (``steepest_fall``): where its depth falls fastest, the fall read
# over EDGE_WINDOW of the ray's half-depth rim (at least EDGE_MIN_WINDOW_PX), searched from the
# centre out to EDGE_REACH half-depth rims at EDGE_POSITIONS points. At a junction the
# half-depth level of a pit drawn on the junction's core lies near the core's depth and the rim
# follows the core out between the arms; the wall's steepest fall stays on the pit
# (docs/experiments/README.md "pitrim": window 0.4 and reach 2 of 0.2-0.6 and 1.2-2, read on
# the own generator's junction and hill scenes and the blind renderer).
EDGE_WINDOW = 0.4
EDGE_MIN_WINDOW_PX = 1.0
EDGE_REACH = 2.0
EDGE_POSITIONS = 17
# A furrow arm: a ray that stays at least ARM_LEVEL of the frame's furrow floor deep all the way
# from the pit's rim to ARM_REACH_UM beyond it (a furrow that only passes by is crossed: the ray
# climbs onto the hill between). Fitted with the pore rule on the own generator only.
ARM_REACH_UM = 80.0
ARM_LEVEL = 0.5
# The pit's outer rim, beyond which its arms' floor is read (pore_profile.arm_count): the
# 75th-percentile rim ray (rays sorted by rim radius). Read from the median rim, a pore cut by
# furrows has its arms' floor read on its own walls. Chosen on seeds 11/12 of the own generator
# only (the median, median + 20 µm, each ray's own rim and the 75th percentile + 20 / 40 µm
# were tried; docs/experiments/README.md "pore-outer-rim").
OUTER_RIM = 3 * RAY_COUNT // 4
# A second reading of the arms, on rings beyond the pit's outer rim (``ring_arm_count``): an arm
# stays deep across every ring from RING_ARM_FROM_UM to RING_ARM_TO_UM beyond that rim at one
# angle (a furrow passing by crosses the outer rings, not the inner ones there), read at
# RING_ARM_SAMPLES angles. The rays read an arm from the median rim on, along one of 16
# directions: at a junction of wide furrows drawn deeper than its furrows (a disc no wider than
# they are) the arms dip under the level right beyond that rim, where the disc's shoulder meets
# the furrow, or leave between two rays, and the junction reads 1 or 2 arms on its rays.
RING_ARM_FROM_UM, RING_ARM_TO_UM, RING_ARM_STEP_UM = 20.0, 60.0, 10.0
RING_ARM_SAMPLES = 64
OUTLINE_INSIDE, OUTLINE_OUTSIDE = 0.6, 1.5  # where a pit's outline is read, in rim radii
END_REACH_PX = 2.0 * FINE  # how far beyond the rim the ends of a drawn-out pit are read
# Where the deepest straight path from a pit's centre is read (``along_of``), in equivalent
# rim radii: a pore closes within about its rim on every side, a stretch of a deeper furrow
# segment runs on nearly as deep along the segment. The reach (1.5) chosen on seeds 11/12 of
# the own generator only (1.5 / 2 / 2.5 / 3 times the equivalent, median, shortest and
# second-shortest rim ray; docs/experiments/README.md "conf").
ALONG_RIMS = (0.5, 1.0, 1.5)
# Candidates profiled at a time (speed only): each chunk costs ~150 numpy calls, and a chunk's
# arrays stay in the cache. 512 against 128: a mixed frame's 140-310 pits -0.4 ms, a wide
# frame's 190-1,230 -1.4 ms (12 frames each, speed7). The chunk is part of the readings in their
# last bits (cv2.remap's blocks; diameters move by <= 3e-8 relative, no count moved).
SHAPE_CHUNK = 512
# Which candidates a profile need not finish (``shape_and_gaps``): from each one's floor,
# strand, arm count and arm floor (``Shape``), those already known never to be counted.
Settled = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
JUNCTION_SAMPLE = 64  # candidates profiled to learn the frame's typical junction gap
SPREAD_UM = 60.0  # how far out a wide pit is still deep all round
LOCAL_TILE_UM = 1000.0  # a pit is compared with the junctions of about 1 mm around it
LOCAL_MIN_CANDIDATES = 12  # a tile with fewer uses the frame's median
# Melanin's extra blue darkening, as a share of the red (green) darkening: its absorption
# falls steeply from blue to red (the generator's MELANIN_ABSORPTION_RGB, 0.45 / 0.75 / 1.05).
MELANIN_BLUE_BEYOND_RED = 1.33
MELANIN_BLUE_BEYOND_GREEN = 0.4
MELANIN_GREEN_BEYOND_RED = 0.67
RED_CLIP_BAND = 8.0  # red within 8 levels of 255 is taken as clipped; within 16, blended
# A pit's blue this close to black is not read: sensor noise and the JPEG's rounding are then a
# large share of it, and a dark brown spot's blue bottoms out, its drop no more than a lower
# bound (the green beyond red decides there too; blended over the next BLUE_DARK_BAND levels).
# Set on the project's own pigment scenes (synthetic.skin_scenes, seeds 0-5, three casts):
# 8 / 8 lets a spot of seeds 0 and 1 through, 12 / 12 and 16 / 16 none.
BLUE_DARK_LEVEL = 12.0
BLUE_DARK_BAND = 12.0
# The skin a pit's colour is compared with: just outside its rim, and 240 µm further out (a
# pigment spot is 150-600 µm across: the near ring can lie on the spot itself).
PIGMENT_RINGS_PX = (3.0, 15.0)
# The straightest dark line through a pit (``line_rest``): windows of this many samples (320
# µm at RAY_STEP_PX fine px) along the 8 lines that two opposite rays make through the pit.
LINE_SPAN_UM = 320.0
LINE_SAMPLES = round(LINE_SPAN_UM / FINE_UM_PER_PX / RAY_STEP_PX) + 1
LIGHT_FLOOR = 0.02  # light (1 - depth) is read at least this: a log of it stays finite


@dataclass(frozen=True)
class Profiles:
    """Depth sampled around each candidate: (P, radii, rays), plus the radii in px."""

    depth: np.ndarray
    radii_px: np.ndarray


REMAP_COLUMNS = 1024  # cv2.remap maps are 2-D with under 32,768 rows: samples go in rows of this


def bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Image values at float positions (clamped to the frame).

    A float32 image is sampled by cv2.remap (SIMD; 10x faster than gathering with numpy), whose
    bilinear weights are in steps of 1/32 px: a value moves by at most 1/64 px times the
    image's slope, smoothly enough for every threshold that reads it.
    """
    height, width = image.shape
    xs = xs.clip(0.0, width - 1.001)
    ys = ys.clip(0.0, height - 1.001)
    if image.dtype == np.float32 and xs.size:
        return _remapped(image, xs, ys)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx, fy = xs - x0, ys - y0
    flat = image.ravel()
    index = y0 * width + x0
    top = flat[index] * (1 - fx) + flat[index + 1] * fx
    bottom = flat[index + width] * (1 - fx) + flat[index + width + 1] * fx
    result: np.ndarray = top * (1 - fy) + bottom * fy
    return result


def _remapped(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    count = xs.size
    rows = -(-count // REMAP_COLUMNS)
    map_x = np.zeros(rows * REMAP_COLUMNS, dtype=np.float32)
    map_y = np.zeros(rows * REMAP_COLUMNS, dtype=np.float32)
    map_x[:count] = xs.ravel()
    map_y[:count] = ys.ravel()
    sampled = cv2.remap(image, map_x.reshape(rows, REMAP_COLUMNS),
                        map_y.reshape(rows, REMAP_COLUMNS), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    result: np.ndarray = sampled.ravel()[:count].reshape(xs.shape).astype(np.float64)
    return result


_RADII = np.arange(1, int(RAY_REACH_UM / FINE_UM_PER_PX / RAY_STEP_PX) + 1) * RAY_STEP_PX
_ANGLES = np.arange(RAY_COUNT) * (2.0 * np.pi / RAY_COUNT)
_RAY_DX = _RADII[:, None] * np.cos(_ANGLES)[None, :]  # (radii, rays) offsets from a centre
_RAY_DY = _RADII[:, None] * np.sin(_ANGLES)[None, :]
_RADII_FROM_CENTRE = np.concatenate([[0.0], _RADII])  # the centre (the floor), then the radii


def profile(depth: np.ndarray, centres: np.ndarray) -> Profiles:
    """Depth on ``RAY_COUNT`` rays around each centre, every ``RAY_STEP_PX`` out to the reach."""
    if depth.dtype != np.float32 or not len(centres):
        xs = centres[:, 0, None, None] + _RAY_DX[None]
        ys = centres[:, 1, None, None] + _RAY_DY[None]
        return Profiles(bilinear(depth, xs, ys), _RADII)
    return Profiles(_remapped_around(depth, centres), _RADII)


def _remapped_around(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``bilinear`` of a float32 image on the rays around each centre, the same values: the
    sample positions are written straight into the float32 remap maps and clipped there (no
    float64 position arrays; clipping after the cast gives the same float32 positions, as the
    cast keeps order)."""
    height, width = image.shape
    shape = (len(centres), *_RAY_DX.shape)
    count = math.prod(shape)
    rows = -(-count // REMAP_COLUMNS)
    maps = np.empty((2, rows * REMAP_COLUMNS), dtype=np.float32)
    maps[:, count:] = 0.0
    for axis, offsets, bound in ((0, _RAY_DX, width - 1.001), (1, _RAY_DY, height - 1.001)):
        np.add(centres[:, axis, None, None], offsets[None], out=maps[axis, :count].reshape(shape),
               casting="same_kind")
        maps[axis].clip(0.0, bound, out=maps[axis])
    sampled = cv2.remap(image, maps[0].reshape(rows, REMAP_COLUMNS),
                        maps[1].reshape(rows, REMAP_COLUMNS), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    result: np.ndarray = sampled.ravel()[:count].reshape(shape).astype(np.float64)
    return result


# dxx - dyy of the 3x3 Sobel second derivatives (each at scale 1/4), as one 3x3 kernel
_SOBEL_XX_MINUS_YY = np.array([[0, -1, 0], [1, 0, 1], [0, -1, 0]], dtype=np.float32)


def _weaker_curvature(smooth: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised weaker curvature (minus the larger Hessian eigenvalue) of the depth
    smoothed at ``sigma`` (``smooth``, written over)."""
    # a = dxx and b = dyy are the 3x3 Sobel second derivatives (scale 1/4); their sum and
    # difference are read straight off the image, 3 passes fewer: a + b by the 3x3 Laplacian,
    # a - b = left + right - above - below
    # (each result written over an image read last: three image buffers, not six)
    trace = cv2.Laplacian(smooth, cv2.CV_32F, ksize=3, scale=0.25)
    difference = cv2.filter2D(smooth, cv2.CV_32F, _SOBEL_XX_MINUS_YY)
    dxy2 = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3, scale=0.5, dst=smooth)  # 2x cross term
    spread = cv2.magnitude(difference, dxy2, difference)  # 2 * sqrt(((a-b)/2)^2 + c^2)
    weaker: np.ndarray = cv2.addWeighted(trace, -0.5 * sigma**2, spread, -0.5 * sigma**2, 0.0,
                                         dst=trace)
    return weaker


def blobness(depth: np.ndarray) -> np.ndarray:
    """How pit-like each pixel is: the weaker of the two curvatures of the depth (scale-normalised,
    the better of two scales). A furrow curves across but not along, so it scores ~0; a pit
    curves both ways; a junction somewhere between."""
    fine_sigma, coarse_sigma = BLOB_SCALES_PX
    smooth = cv2.GaussianBlur(depth, (0, 0), fine_sigma)
    # the coarse smoothing from the fine one: Gaussians compose, their variances adding
    coarse = _weaker_curvature(
        cv2.GaussianBlur(smooth, (0, 0), math.sqrt(coarse_sigma**2 - fine_sigma**2)), coarse_sigma)
    fine = _weaker_curvature(smooth, fine_sigma)
    result: np.ndarray = cv2.max(fine, coarse, dst=fine)
    return result


def candidates(depth: np.ndarray, furrow_floor: float) -> np.ndarray:
    """Pit-like local maxima deeper than the typical furrow floor: (N, 2) x, y."""
    pits = blobness(depth)
    peaks = pits >= cv2.dilate(pits, np.ones((5, 5), np.uint8))
    peaks &= (pits > MIN_BLOBNESS) & (depth > max(MIN_CANDIDATE_DEPTH, furrow_floor))
    # x, y in raster order (np.flatnonzero of a bool mask: cv2.findNonZero's points, faster)
    ys, xs = borders.rows_and_columns(np.flatnonzero(peaks), peaks.shape[1])
    return np.stack([xs, ys], axis=1).astype(np.float64)


def crossing(values: np.ndarray, level: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per row, the radius where ``values`` first falls below ``level`` (linear, px)."""
    below = values < level[:, None]
    first = below.argmax(axis=1)  # 0 where none is below, as where the first one is
    starts = np.arange(0, values.size, values.shape[1])  # each row's flat index
    first[~below.take(starts + first)] = values.shape[1] - 1  # none below: the last
    inner = np.maximum(first - 1, 0)
    v0, v1 = values.take(starts + inner), values.take(starts + first)
    r0 = np.where(first > 0, radii[inner], 0.0)
    span = np.where(np.abs(v0 - v1) > 1e-9, (v0 - level) / (v0 - v1 + 1e-12), 0.0)
    crossed: np.ndarray = r0 + span.clip(0.0, 1.0) * (radii[first] - r0)
    return crossed


@dataclass(frozen=True)
class Shape:
    """What the rays say about each candidate."""

    floor: np.ndarray  # depth at the centre
    skin: np.ndarray  # depth of the skin around it
    radius_px: np.ndarray  # equivalent rim radius, arms cut back (blurred, fine px)
    gap_px: np.ndarray  # shortest rays' rim radius: between the arms of a junction
    roundness: np.ndarray  # shortest over median rim radius
    arms: np.ndarray  # depth of the 2nd deepest ray just outside the rim (furrow arms)
    strand: np.ndarray  # depth of the deepest ray there (a hair runs on as deep as its end)
    elongation: np.ndarray  # longest over shortest diameter of the rim above the arms
    arm_count: np.ndarray  # furrow arms leaving the pit (``arm_count``): a junction has >= 3
    ends: np.ndarray  # depth just beyond the rim at the ends of the longest diameter
    arm_floor: np.ndarray  # depth of the deepest arm's shallowest point within ARM_REACH_UM
    outline: np.ndarray  # light just inside the rim over just outside it (``outline_of``)
    far_side: np.ndarray  # deepest arm window more than a right angle from the deepest one
    line_rest: np.ndarray  # the floor in log light below the straightest dark line through it
    along: np.ndarray  # depth the deepest straight path out keeps to 1.5 rims (``along_of``)
    rim_px: np.ndarray  # (P, RAY_COUNT) each ray's rim radius, rays in angle order (fine px)
    edge_px: np.ndarray  # (P, RAY_COUNT) each ray's own edge: its steepest fall (fine px)
    edge_radius_px: np.ndarray  # equivalent radius of the own edge, arms cut back (fine px)
    # (P, RAY_COUNT) bool: the rays down a strand narrower than the pit leaving it (a hair out
    # of a pore, ``pore_strand``), left out of its arms, strand, arm count and the readings above
    strand_rays: np.ndarray
    # (P,) that strand's width across over the pit's own width on the same line (inf: none)
    strand_share: np.ndarray


def elongation_of(with_floor: np.ndarray, floor: np.ndarray, top: np.ndarray,
                  radii: np.ndarray, away: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Longest over shortest diameter of the pit where it rises halfway to the higher of the
    skin and its arms: a pore is round or oval; a short deep stretch of furrow is a dash.
    With it, the depth ``END_REACH_PX`` beyond that rim at both ends of the longest diameter
    (the deeper end): an oval pit's rim closes there; a dash runs on as a furrow.

    With the level above the arms, rays do not run on down the furrows at a junction. The
    diameters through a ray ``away`` (a strand leaving the pit, ``pore_strand``) are left out.
    """
    level = np.repeat((floor + top) / 2.0, RAY_COUNT)
    rim = crossing(with_floor, level, radii).reshape(-1, RAY_COUNT)
    diameters = rim[:, : RAY_COUNT // 2] + rim[:, RAY_COUNT // 2:]
    longest_of, shortest_of = diameters, diameters
    if away is not None and away.any():
        out = away[:, : RAY_COUNT // 2] | away[:, RAY_COUNT // 2:]
        longest_of, shortest_of = np.where(out, -np.inf, diameters), np.where(out, np.inf,
                                                                               diameters)
    elongation: np.ndarray = longest_of.max(axis=1) / np.maximum(shortest_of.min(axis=1), 1e-6)
    rows = np.arange(len(floor))
    longest = longest_of.argmax(axis=1)
    per_ray = with_floor.reshape(len(floor), RAY_COUNT, with_floor.shape[1])
    ends = np.zeros(len(floor))
    for ray in (longest, longest + RAY_COUNT // 2):
        out = (rim[rows, ray] + END_REACH_PX) / RAY_STEP_PX  # index into ``radii``
        inner = np.minimum(out.astype(np.intp), len(radii) - 2)  # rims >= 0
        share = (out - inner).clip(0.0, 1.0)
        depth = (per_ray[rows, ray, inner] * (1.0 - share)
                 + per_ray[rows, ray, inner + 1] * share)
        ends = np.maximum(ends, depth)
    return elongation, ends


_TURN = (np.arange(RAY_COUNT)[None, :] - np.arange(RAY_COUNT)[:, None]) % RAY_COUNT
# per ray, the rays more than a right angle from it (``arm_count``'s far side)
_FAR = np.minimum(_TURN, RAY_COUNT - _TURN) > RAY_COUNT // 4


def arm_count(rays: Profiles, median: np.ndarray, level: float, outer: np.ndarray,
              away: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How many furrow arms leave each pit: runs of neighbouring rays that stay at least
    ``level`` deep from the median rim out to ``ARM_REACH_UM`` beyond it. A junction has 3 or
    more, a pit along one furrow 2, a pit in a hill none (one, where it touches a furrow). A pit
    deep all round (in a dark patch) is given ``RAY_COUNT``: it cannot be told from a junction.

    With it, the floor of the deepest arm: the depth every ray keeps from the pit's ``outer``
    rim (``OUTER_RIM`` of the rays' rim crossings, so that the pit's own walls, where a furrow
    cuts into them, do not count as an arm) out to ``ARM_REACH_UM`` beyond it, the deepest of
    the rays. A pore is a closed pit, deeper than all its arms; where a deeper furrow segment
    ends at a pit, the pit's floor runs on down that segment nearly as deep.

    And the far side: the deepest of those windows among the rays more than a right angle
    from the deepest one. A pit beside one furrow has its arm rays (one to three runs, where
    the blurred furrow covers some rays and is crossed by others) all on the furrow's side,
    and skin on the far side; a pit along a furrow, at a bend or at a junction has an arm
    there.

    The rays ``away`` (a strand leaving the pit, ``pore_strand``) are no arm: a hair out of a
    pore is not a furrow."""
    reach = ARM_REACH_UM / FINE_UM_PER_PX
    shallowest = _window_min(rays, median, reach)  # (P, rays)
    if away is not None:
        shallowest[away] = -np.inf
    deep = shallowest >= level
    before = np.concatenate([deep[:, -1:], deep[:, :-1]], axis=1)  # np.roll's, 1 ray on
    runs = np.count_nonzero(deep & ~before, axis=1)
    count: np.ndarray = np.where(deep.all(axis=1), RAY_COUNT, runs)
    start = np.minimum(outer, rays.radii_px[-1] - reach)  # the rays end at RAY_REACH_UM
    windows = _window_min(rays, start, reach)
    if away is not None:
        windows[away] = -np.inf
    floor: np.ndarray = windows.max(axis=1)
    far = _FAR[shallowest.argmax(axis=1)]
    far_side: np.ndarray = np.max(shallowest, axis=1, where=far, initial=-np.inf)
    return count, floor, far_side


def ring_arm_count(depth: np.ndarray, centres: np.ndarray, outer_px: np.ndarray,
                   level: float | np.ndarray) -> np.ndarray:
    """How many furrow arms leave each pit across the rings ``RING_ARM_FROM_UM`` to
    ``RING_ARM_TO_UM`` beyond its outer rim (``outer_px``, fine px): runs of the
    ``RING_ARM_SAMPLES`` angles at which every ring is at least ``level`` deep (one level for
    every pit, or one per pit). Deep all round (a pit in a dark patch): ``RAY_COUNT``, as
    ``arm_count`` reads it."""
    angles = np.arange(RING_ARM_SAMPLES) * (2.0 * np.pi / RING_ARM_SAMPLES)
    beyond = np.arange(RING_ARM_FROM_UM, RING_ARM_TO_UM + 0.5 * RING_ARM_STEP_UM,
                       RING_ARM_STEP_UM) / FINE_UM_PER_PX
    # every ring of every pit in one reading: (pits, rings, angles)
    radius = outer_px[:, None, None] + beyond[None, :, None]
    xs = centres[:, :1, None] + radius * np.cos(angles)
    ys = centres[:, 1:, None] + radius * np.sin(angles)
    deep = np.all(bilinear(depth, xs, ys) >= np.reshape(level, (-1, 1, 1)), axis=1)
    before = np.concatenate([deep[:, -1:], deep[:, :-1]], axis=1)  # np.roll's, 1 point on
    runs = np.count_nonzero(deep & ~before, axis=1)
    result: np.ndarray = np.where(deep.all(axis=1), RAY_COUNT, runs)
    return result


def log_light(depth: np.ndarray) -> np.ndarray:
    """-log of the light (1 - depth), the light read at least ``LIGHT_FLOOR``: a pit multiplies
    the light of what lies under it, so in log light its darkness adds to a furrow's."""
    result: np.ndarray = -np.log(np.maximum(1.0 - depth, LIGHT_FLOOR))
    return result


def line_rest(rays: np.ndarray, floor: np.ndarray, away: np.ndarray | None = None) -> np.ndarray:
    """How much darker each pit is, in log light, than the straightest dark line through it.

    Two opposite rays of the 16 make a line through the pit. Its linear opening at the pit is
    the largest, over windows of ``LINE_SAMPLES`` samples that contain the pit's centre, of the
    window's shallowest depth: how dark a straight structure through the pit stays over 320
    µm. A furrow or a junction's arm keeps it near the pit's floor; a pore beside or on a furrow
    does not (no straight window through its centre stays as dark as its floor). The reading
    is log light at the floor minus log light at the largest opening of the 8 lines.

    ``rays``: (P, radii, RAY_COUNT) depth every RAY_STEP_PX out from the centre (the first
    radius one step out), at least LINE_SAMPLES - 1 radii. A window reaching j samples out on
    one ray reaches LINE_SAMPLES - 1 - j on the opposite one, and its minimum is the smaller
    of the two rays' running minima out from the floor there: one running minimum per ray
    (van Herk's opening, at the one place it is read), not a minimum per window. The lines
    through a ray ``away`` (a strand leaving the pit) are left out."""
    half, span = RAY_COUNT // 2, LINE_SAMPLES - 1
    running = np.empty((span + 1, len(floor), RAY_COUNT))  # radius first: each step contiguous
    running[0] = floor[:, None]
    for step in range(span):
        np.minimum(running[step], rays[:, step], out=running[step + 1])
    lines = np.minimum(running[:, :, :half], running[::-1, :, half:]).max(axis=0)
    if away is not None:
        lines[away[:, :half] | away[:, half:]] = -np.inf
    opening = lines.max(axis=1)
    result: np.ndarray = log_light(floor) - log_light(opening)
    return result


def outline_of(rays: Profiles, radius: np.ndarray, away: np.ndarray | None = None) -> np.ndarray:
    """How closed each pit's dark outline is, in light (1 - depth): per ray the light at
    ``OUTLINE_INSIDE`` of the rim radius over the light at ``OUTLINE_OUTSIDE`` rims, the
    second-highest of the rays (one ray may meet something darker: a hair, another pit).

    A pore multiplies the light of whatever it lies on, so the light rises beyond its rim in
    every direction, towards a furrow it touches too; along a junction's arms or a furrow it
    stays (about 1). The rays ``away`` (a strand leaving the pit) are left out."""
    radii, rows = rays.radii_px, np.arange(len(radius))

    def light_at(scale: float) -> np.ndarray:
        at = (scale * radius).clip(radii[0], radii[-1])
        inner = np.minimum(np.maximum(radii.searchsorted(at) - 1, 0), len(radii) - 2)
        share = ((at - radii[inner]) / (radii[inner + 1] - radii[inner]))[:, None]
        depth = rays.depth[rows, inner] * (1.0 - share) + rays.depth[rows, inner + 1] * share
        result: np.ndarray = 1.0 - depth
        return result

    ratios = light_at(OUTLINE_INSIDE) / np.maximum(light_at(OUTLINE_OUTSIDE), 1e-3)
    if away is not None:
        ratios[away] = -np.inf
    ratios.sort(axis=1)
    result: np.ndarray = ratios[:, -2]
    return result


def along_of(rays: np.ndarray, floor: np.ndarray, radius: np.ndarray,
             away: np.ndarray | None = None) -> np.ndarray:
    """How deep the deepest straight path out of each pit stays: per ray, the shallowest of
    the depths at ``ALONG_RIMS`` equivalent rim radii (``radius``, fine px; interpolated
    between the samples) and the floor, the deepest of the rays.

    A pore closes on every side, along the furrow it lies on too: 1.5 rims out each ray has
    climbed out of it, at most onto that furrow's floor. A short dark stretch of a deeper, wider
    furrow segment (often where it ends at a junction) runs on nearly as deep along the
    segment for more than its own width. ``rays``: (P, radii, RAY_COUNT) depth every
    ``RAY_STEP_PX`` out from the centre (the first radius one step out). Three points along
    each ray, not its every sample (speed: a wide frame's 1,000 pits read each ray's running
    minimum over 8-15 samples in about 5 ms, the points in under 1). The rays ``away`` (a
    strand leaving the pit) are left out."""
    count, length, _ = rays.shape
    rows = np.arange(count)[:, None]
    result = floor[:, None].repeat(rays.shape[2], axis=1)
    for rims in ALONG_RIMS:
        at = np.minimum(rims * radius, RAY_REACH_UM / FINE_UM_PER_PX) / RAY_STEP_PX
        inner = np.minimum(at.astype(np.intp), length - 1)[:, None]  # 0: the floor
        share = (at[:, None] - inner)
        before = np.where(inner > 0, rays[rows, np.maximum(inner - 1, 0)][:, 0], floor[:, None])
        np.minimum(result, before + (rays[rows, inner][:, 0] - before) * share, out=result)
    if away is not None:
        result[away] = -np.inf
    along: np.ndarray = result.max(axis=1, initial=-np.inf)
    return along


def _window_min(rays: Profiles, start: np.ndarray, reach: float) -> np.ndarray:
    """Per candidate and ray, the shallowest depth at the radii from ``start`` to ``start +
    reach`` (inf where none): only the few samples of each window are gathered, not every
    radius masked."""
    radii, (count, length, rays_per_pit) = rays.radii_px, rays.depth.shape
    first = radii.searchsorted(start, side="left")  # radii >= start
    stop = radii.searchsorted(start + reach, side="right")  # radii <= start + reach
    index = first[:, None] + np.arange(int(reach / RAY_STEP_PX) + 2)[None, :]
    inside = index < stop[:, None]
    # the window's radii, each a row of all the rays: rows of (candidates * radii, rays)
    row = np.arange(count)[:, None] * length + np.minimum(index, length - 1)
    taken = rays.depth.reshape(count * length, rays_per_pit).take(row, axis=0)
    taken[~inside] = np.inf
    result: np.ndarray = taken.min(axis=1)
    return result


def shape_of(depth: np.ndarray, centres: np.ndarray, arm_level: float) -> Shape:
    """Rim radii, floor, skin, roundness and arms of each candidate (``arm_level``: how deep a
    ray must stay to run down a furrow arm, ``ARM_LEVEL`` of the frame's furrow floor)."""
    shape, _, _ = shape_and_gaps(depth, centres, arm_level, np.ones(len(centres), dtype=bool))
    return shape


def shape_and_gaps(depth: np.ndarray, centres: np.ndarray, arm_level: float,
                   whole: np.ndarray, settled: Settled | None = None,
                   ) -> tuple[Shape, np.ndarray, np.ndarray]:
    """``shape_of`` the candidates ``whole`` (bool per candidate), and the floor and gap of
    every candidate: what ``typical_junction`` reads of the others, whose rims alone are read
    (the rest of a profile costs about as much again). ``settled``: which of them are decided
    by their floor, strand, arm count and arm floor alone (``Settled``); their edge,
    elongation, ends, outline, line rest and along are left NaN.

    Read ``SHAPE_CHUNK`` candidates at a time: every row is its own, and the arrays of a chunk
    stay in the cache."""
    if len(centres) <= SHAPE_CHUNK:
        return _shape_rows(depth, centres, arm_level, whole, settled)
    parts = [_shape_rows(depth, centres[start:start + SHAPE_CHUNK], arm_level,
                         whole[start:start + SHAPE_CHUNK], settled)
             for start in range(0, len(centres), SHAPE_CHUNK)]
    shape = Shape(*(np.concatenate([getattr(part[0], field.name) for part in parts])
                    for field in fields(Shape)))
    return shape, np.concatenate([part[1] for part in parts]), np.concatenate(
        [part[2] for part in parts])


def _shape_rows(depth: np.ndarray, centres: np.ndarray, arm_level: float,
                whole: np.ndarray, settled: Settled | None = None,
                ) -> tuple[Shape, np.ndarray, np.ndarray]:
    """``shape_and_gaps`` for a few candidates at once."""
    rays = profile(depth, centres)
    floor = bilinear(depth, centres[:, 0], centres[:, 1])
    ordered = np.sort(rays.depth, axis=2)
    lower = ordered[:, :, RAY_COUNT // 4]  # the skin between the arms, at each radius
    skin = lower.min(axis=1)
    radii = _RADII_FROM_CENTRE if rays.radii_px is _RADII else np.r_[0.0, rays.radii_px]
    # each ray's samples in a row, after the floor: (P * RAY_COUNT, 1 + radii), written in place
    with_floor = np.empty((len(centres) * RAY_COUNT, 1 + len(rays.radii_px)))
    with_floor[:, 0] = floor.repeat(RAY_COUNT)
    by_ray = with_floor[:, 1:].reshape(len(centres), RAY_COUNT, len(rays.radii_px))
    by_ray[...] = rays.depth.transpose(0, 2, 1)  # (P, radii, rays) -> (P, rays, radii)
    for _ in range(SKIN_ITERATIONS):  # the skin right outside the rim, not a far hill top
        half = (floor + skin) / 2.0
        crossed = crossing(with_floor, half.repeat(RAY_COUNT), radii).reshape(-1, RAY_COUNT)
        rim = np.sort(crossed)
        median = rim[:, RAY_COUNT // 2]
        beyond = (rays.radii_px[None, :] >= median[:, None]) & (
            rays.radii_px[None, :] <= SKIN_RING * median[:, None] + 1.5 * FINE)
        skin = np.minimum(np.where(beyond, lower, np.inf).min(axis=1), floor)
    every_floor, every_gap = floor, rim[:, 1]
    rows = np.flatnonzero(whole)
    if len(rows) < len(centres):  # the rest of the profile for the whole candidates alone
        rays = Profiles(rays.depth[rows], rays.radii_px)
        with_floor = with_floor.reshape(len(centres), -1)[rows].reshape(-1, with_floor.shape[1])
        floor, skin, crossed, rim, median = (a[rows] for a in (floor, skin, crossed, rim, median))
    own = np.minimum(rim, ARM_CUT * median[:, None])  # rays down a furrow arm stop at the rim
    radius = np.sqrt(np.mean(own**2, axis=1))  # area of the star-shaped rim = pi * radius**2
    gap = rim[:, 1]
    # np.minimum, not np.clip: the index is never negative (np.clip of integers checks its
    # bounds' type each call, longer than the clipping itself)
    ring = np.minimum(rays.radii_px.searchsorted(median + 2.0 * FINE), len(rays.radii_px) - 2)
    arms = (ordered[rows, ring, -2] + ordered[rows, ring + 1, -2]) / 2.0  # 2nd deepest ray
    strand = (ordered[rows, ring, -1] + ordered[rows, ring + 1, -1]) / 2.0  # the deepest one
    away, strand_share = _strand_left_out(
        depth, centres[rows], rays, ring, crossed, median=median, skin=skin, floor=floor,
        arms=arms, strand=strand, furrow_floor=arm_level / ARM_LEVEL)
    count, arm_floor, far_side = arm_count(rays, median, arm_level, rim[:, OUTER_RIM], away)
    read = (np.arange(len(floor)) if settled is None
            else np.flatnonzero(~settled(floor, strand, count, arm_floor)))
    late = _late_readings(rays, with_floor, crossed, floor, np.maximum(skin, arms),
                          radius=radius, radii=radii, read=read, away=away)
    elongation, ends, outline, rest, along, edge = late
    shape = Shape(floor, skin, radius, gap, gap / np.maximum(median, 1e-6), arms, strand,
                  elongation, count, ends, arm_floor, outline, far_side, rest, along, crossed,
                  edge, equivalent_radius(edge), away, strand_share)
    return shape, every_floor, every_gap


def _strand_left_out(depth: np.ndarray, centres: np.ndarray, rays: Profiles, ring: np.ndarray,
                     crossed: np.ndarray, *, median: np.ndarray, skin: np.ndarray,
                     floor: np.ndarray, arms: np.ndarray, strand: np.ndarray,
                     furrow_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The rays of each pit that run down a strand leaving it and the strand's share of the
    pit's width (``pore_strand``; (P, rays) bool, (P,)), and the pit's ``arms`` and
    ``strand`` read again without them (in place)."""
    here = np.arange(len(floor))
    at_ring = (rays.depth[here, ring] + rays.depth[here, ring + 1]) / 2.0  # (P, rays)
    away, share = strand_rays(depth, centres, at_ring, crossed, crossed > ARM_CUT * median[:, None],
                       skin=skin, floor=floor, furrow_floor=furrow_floor)
    left = np.flatnonzero(away.any(axis=1))
    if len(left):
        kept = np.sort(np.where(away[left], -np.inf, at_ring[left]), axis=1)
        arms[left], strand[left] = kept[:, -2], kept[:, -1]
    return away, share


def _late_readings(rays: Profiles, with_floor: np.ndarray, crossed: np.ndarray,
                   floor: np.ndarray, top: np.ndarray, *, radius: np.ndarray,
                   radii: np.ndarray, read: np.ndarray,
                   away: np.ndarray) -> tuple[np.ndarray, ...]:
    """The elongation, ends, outline, line rest, along and edge (``Shape``) of the candidates
    ``read`` (indices), NaN for the others; the rays ``away`` (a strand) left out of the
    first five."""
    count = len(floor)
    if len(read) < count:
        rays = Profiles(rays.depth[read], rays.radii_px)
        with_floor = with_floor.reshape(count, -1)[read].reshape(-1, with_floor.shape[1])
        crossed, floor, top, radius, away = (a[read] for a in (crossed, floor, top, radius,
                                                               away))
    edge = steepest_fall(with_floor, crossed.ravel(), radii).reshape(crossed.shape)
    readings = (*elongation_of(with_floor, floor, top, radii, away),
                outline_of(rays, radius, away), line_rest(rays.depth, floor, away),
                along_of(rays.depth, floor, radius, away), edge)
    if len(read) == count:
        return readings
    filled = []
    for reading in readings:
        whole = np.full((count, *reading.shape[1:]), np.nan)
        whole[read] = reading
        filled.append(whole)
    return tuple(filled)


def equivalent_radius(rim: np.ndarray) -> np.ndarray:
    """The equivalent radius of rims (P, RAY_COUNT): rays longer than ``ARM_CUT`` times the
    median ray (down a furrow arm) cut back to that, then the rms ray (the star-shaped rim's
    area is pi * radius**2)."""
    median = np.sort(rim, axis=1)[:, RAY_COUNT // 2]
    radius: np.ndarray = np.sqrt(np.mean(np.minimum(rim, ARM_CUT * median[:, None])**2, axis=1))
    return radius


_EDGE_SHARES = np.linspace(0.0, EDGE_REACH, EDGE_POSITIONS)  # of a ray's half_rim


def steepest_fall(with_floor: np.ndarray, half_rim: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per ray (rows of ``with_floor``: the depth at ``radii``, evenly spaced from 0), the
    radius where its depth falls fastest: the fall over a window of ``EDGE_WINDOW`` of the
    ray's ``half_rim`` (where it falls halfway from the floor to the skin), searched out to
    ``EDGE_REACH`` of it, its peak placed by a parabola through the three best points.

    The window and the search scale with the ray's rim, so the edge moves smoothly with the
    calibration; a constant added under the pit (a junction's core) moves no fall."""
    step = float(radii[1] - radii[0])
    positions = half_rim[:, None] * _EDGE_SHARES[None, :]
    window = np.maximum(EDGE_WINDOW * half_rim, EDGE_MIN_WINDOW_PX)[:, None] / 2.0
    fall = _along_rows(with_floor, (positions - window) / step) - _along_rows(
        with_floor, (positions + window) / step)
    best = np.minimum(np.maximum(fall.argmax(axis=1), 1), EDGE_POSITIONS - 2)
    rows = np.arange(len(fall))
    before, peak, after = fall[rows, best - 1], fall[rows, best], fall[rows, best + 1]
    curve = before - 2.0 * peak + after
    shift = np.where(curve < 0.0, 0.5 * (before - after) / np.minimum(curve, -1e-12), 0.0)
    place = (best + shift).clip(0.0, EDGE_POSITIONS - 1.0)
    result: np.ndarray = half_rim * place * (EDGE_REACH / (EDGE_POSITIONS - 1))
    return result


def _along_rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each row of ``values`` read at float ``index`` (same rows), linear, clipped to the row."""
    columns = values.shape[1]
    index = index.clip(0.0, columns - 1.0)
    lower = np.minimum(index.astype(np.intp), columns - 2)
    share = index - lower
    lower += (np.arange(len(values)) * columns)[:, None]  # flat: np.take, not a 2-D index
    flat = values.ravel()
    below = flat.take(lower)
    result: np.ndarray = below + share * (flat.take(lower + 1) - below)
    return result


@dataclass(frozen=True)
class Junctions:
    """The typical pit of this frame: its furrow junctions (the great majority of candidates)."""

    floor: float
    gap_px: float  # as measured (blurred), to compare with candidates measured alike


def median_of(values: np.ndarray) -> float:
    """``np.median`` of a non-empty 1-D array, the same value: it is partitioned about its upper
    middle element alone, and the lower middle (even counts) is the largest element below it
    (numpy partitions about both middles at once, which takes several times longer); the two
    are summed and halved as np.median's mean of them does (floats in their own type). From
    ``SELECT_FROM`` values on, where numpy partitions slowly (``borders.NUMPY_SORTS_SLOWLY``),
    only the values near the middle are partitioned (``_middles_selected``)."""
    middle = len(values) // 2
    found = _middles_selected(values, middle) if (
        len(values) >= SELECT_FROM and borders.NUMPY_SORTS_SLOWLY) else None
    if found is not None:
        low, high = found
    else:
        part = np.partition(values, middle)
        if np.isnan(part[-1]):  # a partition places NaN last; np.median then reads NaN
            return float("nan")
        high = part[middle]
        low = part[:middle].max() if middle and len(values) % 2 == 0 else high
    if len(values) % 2:
        return float(high)
    if values.dtype.kind != "f":  # whole numbers: np.median sums them as float64
        return (float(low) + float(high)) / 2.0
    return float((low + high) / 2)


SELECT_FROM = 4096  # values from which ``median_of`` selects (speed only)
SELECT_SAMPLE = 1024  # about as many values sorted to find the window
SELECT_MARGIN = 64  # places of the sorted sample either side of the middle's place


def _middles_selected(values: np.ndarray, middle: int) -> tuple[Any, Any] | None:
    """The values of order ``middle`` - 1 and ``middle`` (0-based; the first also for odd
    counts, unused) read by selection (Floyd and Rivest): the values between two of a sorted
    sample's (its places ``SELECT_MARGIN`` either side of the middle's) are partitioned alone,
    placed by the count of the values below the window. None where the window misses either
    middle (the whole array is partitioned then), where a float is NaN (np.median reads NaN),
    or a middle is 0.0 (which of 0.0 and -0.0 a partition places there depends on the
    partition). Speed only: the same values as a partition of the whole array; a mixed frame's
    45,000 furrow depths 0.29 -> 0.17 ms where numpy's partition is its AVX-512 one on AMD Zen
    4, but 0.05 -> 0.15 where it is its AVX2 one (docs/experiments/README.md "speed5")."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        return None
    sample = np.sort(values[::len(values) // SELECT_SAMPLE])
    place = middle * len(sample) // len(values)
    low_bound = sample[max(place - SELECT_MARGIN, 0)]
    high_bound = sample[min(place + SELECT_MARGIN, len(sample) - 1)]
    below = int(np.count_nonzero(values < low_bound))
    window = values[(values >= low_bound) & (values <= high_bound)]
    if below > middle - 1 or below + len(window) <= middle:
        return None
    part = np.partition(window, middle - below)
    high = part[middle - below]
    low = part[:middle - below].max()
    if values.dtype.kind == "f" and (high == 0 or low == 0):
        return None
    return low, high


def junction_sample(count: int) -> np.ndarray:
    """Indices of an evenly spread sample of ``count`` candidates (about ``JUNCTION_SAMPLE``)."""
    return np.arange(0, count, max(1, count // JUNCTION_SAMPLE))


def typical_junction(floor: np.ndarray, gap_px: np.ndarray) -> Junctions:
    """Median floor and gap of the profiles of a sample of the candidates (``junction_sample``:
    the great majority of candidates are junctions)."""
    if len(floor) == 0:
        return Junctions(1.0, 1.0)
    return Junctions(median_of(floor), median_of(gap_px))


_NEIGHBOURS = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # 3 x 3, raster


def to_fine(prepared: Prepared, centres_work: np.ndarray, depth_fine: np.ndarray) -> np.ndarray:
    """Work-pixel centres on the fine depth, each moved to the deepest of its 3 x 3 pixels."""
    ratio = prepared.um_per_work_px / prepared.um_per_fine_px
    rounded = np.rint(on_grid(centres_work, ratio)).astype(np.intp)
    height, width = depth_fine.shape
    around = rounded[:, None, :] + _NEIGHBOURS[None]
    # np.minimum / np.maximum, not np.clip (integers: see _shape_rows); a flat np.take
    xs = np.minimum(np.maximum(around[..., 0], 0), width - 1)
    ys = np.minimum(np.maximum(around[..., 1], 0), height - 1)
    deepest = np.argmax(depth_fine.take(ys * width + xs), axis=1)
    rows = np.arange(len(rounded))
    return np.stack([xs[rows, deepest], ys[rows, deepest]], axis=1).astype(np.float64)


def local_junction_floor(shape: tuple[int, int], centres: np.ndarray,
                         floor: np.ndarray) -> np.ndarray:
    """The typical junction floor around each candidate (``centres`` in work px): the median
    floor of the candidates in each ~``LOCAL_TILE_UM`` tile (the frame's median where a tile
    holds fewer than ``LOCAL_MIN_CANDIDATES``), interpolated bilinearly between tile centres.

    Furrows are deeper in one part of a frame than in another, and vignetting darkens the
    corners, so a pit is compared with the junctions around it, not the frame's median. Most
    candidates are junctions, so a tile's median is a junction's floor. Most tiles hold fewer
    than ``LOCAL_MIN_CANDIDATES``, so most pits are in fact compared with the frame's median
    (docs/measurement.md "Pores" gives the shares and the alternative that was tried).
    """
    if len(floor) == 0:
        return np.zeros(0)
    tile = LOCAL_TILE_UM / WORK_UM_PER_PX
    grid = (max(1, round(shape[0] / tile)), max(1, round(shape[1] / tile)))
    step_y, step_x = shape[0] / grid[0], shape[1] / grid[1]
    # np.minimum / np.maximum, not np.clip (integers: see _shape_rows)
    rows = np.minimum(np.maximum((centres[:, 1] / step_y).astype(np.intp), 0), grid[0] - 1)
    cols = np.minimum(np.maximum((centres[:, 0] / step_x).astype(np.intp), 0), grid[1] - 1)
    medians = np.full(grid, median_of(floor))
    cell = rows * grid[1] + cols
    order = cell.argsort(kind="stable")
    bounds = cell[order].searchsorted(np.arange(grid[0] * grid[1] + 1))
    for index in np.flatnonzero(np.diff(bounds) >= LOCAL_MIN_CANDIDATES):
        medians.flat[index] = median_of(floor[order[bounds[index]:bounds[index + 1]]])
    # tile i's centre is padded index i + 1 (the edge tiles repeated, as np.pad's "edge")
    padded = cv2.copyMakeBorder(medians, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    local: np.ndarray = bilinear(padded, centres[:, 0] / step_x + 0.5,
                                 centres[:, 1] / step_y + 0.5)
    return local


def blue_excess(rgb: np.ndarray, centres: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """How melanin-like the darkening of a pit is: 0 for a shadow (a pore, a furrow), grey or a
    little redder than the skin, about 1 for a pigment spot or freckle.

    ``rgb`` is the work image, ``centres`` and ``radius_px`` in work px. Each channel's
    darkening is read as a log ratio against the skin around the pit, so a colour cast (a gain
    per channel, of lamp or sensor) cancels; ``melanin_share`` says what the three drops mean.
    """
    # the rings one after the other in one pass (each pit once per ring), then per pit the
    # more melanin-like of its rings
    rings = len(PIGMENT_RINGS_PX)
    pit = _planes(np.tile(colour_at(rgb, centres[:, 0], centres[:, 1]), (rings, 1)))
    ring_px = np.concatenate([radius_px + reach for reach in PIGMENT_RINGS_PX])
    shares = _melanin_share(rgb, pit, np.tile(centres, (rings, 1)), ring_px)
    share: np.ndarray = np.maximum(*shares.reshape(rings, -1))
    return share


def colour_at(rgb: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``bilinear`` of each plane of an RGB uint8 image, the three at once: (*xs.shape, 3)."""
    height, width = rgb.shape[:2]
    xs = xs.clip(0.0, width - 1.001)
    ys = ys.clip(0.0, height - 1.001)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    pixels = rgb.reshape(-1, 3)
    index = y0 * width + x0
    # whole pixels by ndarray.take: the values indexing reads, faster
    top = pixels.take(index, axis=0) * (1 - fx) + pixels.take(index + 1, axis=0) * fx
    bottom = (pixels.take(index + width, axis=0) * (1 - fx)
              + pixels.take(index + width + 1, axis=0) * fx)
    result: np.ndarray = top * (1 - fy) + bottom * fy
    return result


def _planes(colours: np.ndarray) -> list[np.ndarray]:
    """The R, G and B columns of (N, 3) colours, each a contiguous (N,) array."""
    return list(np.ascontiguousarray(colours.T))


def _melanin_share(rgb: np.ndarray, pit: list[np.ndarray], centres: np.ndarray,
                   ring_px: np.ndarray) -> np.ndarray:
    """``blue_excess`` of pits whose R, G, B values are ``pit``, against the skin on one ring of
    radius ``ring_px`` (work px) in the colour image ``rgb``."""
    angles = np.arange(RAY_COUNT) * (2.0 * np.pi / RAY_COUNT)
    out = ring_px[:, None]
    xs, ys = centres[:, :1] + out * np.cos(angles), centres[:, 1:] + out * np.sin(angles)
    return melanin_share(_planes(_ray_median(colour_at(rgb, xs, ys))), pit)


def melanin_share(skin: list[np.ndarray], pit: list[np.ndarray]) -> np.ndarray:
    """How melanin-like the darkening from ``skin`` to ``pit`` (R, G, B planes, 0-255) is.

    Melanin's absorption falls steeply from blue to red, so a pigment spot darkens blue beyond
    green by ``MELANIN_BLUE_BEYOND_GREEN`` of the green drop and beyond red by
    ``MELANIN_BLUE_BEYOND_RED`` of the red one. A pit is a shadow: it darkens every channel
    alike, and where red light scattered through the skin, or the blood in the pit's wall,
    tints it, red darkens less (haemoglobin absorbs green and blue, hardly red). Neither darkens
    blue beyond green, so melanin must show against both: the share is the smaller of the two
    blue readings. The green one tells melanin from a red tint; the red one, three times finer
    (melanin's blue-red step is three times its blue-green one), keeps the noise of a dark blue
    from reading as melanin. Red clips at 255 on bright skin: within ``RED_CLIP_BAND`` of it
    green alone is read, blended. A pit's blue near black (``BLUE_DARK_LEVEL``) gives its drop
    only as a lower bound: there green darkening beyond red counts as melanin too, blended.
    """
    red_drop, green_drop, blue_drop = (np.log(s + 1.0) - np.log(p + 1.0)
                                       for s, p in zip(skin, pit, strict=True))
    beyond_green = (blue_drop - green_drop) / np.maximum(green_drop, 0.02) / (
        MELANIN_BLUE_BEYOND_GREEN)
    beyond_red = (blue_drop - red_drop) / np.maximum(red_drop, 0.02) / MELANIN_BLUE_BEYOND_RED
    green_over_red = (green_drop - red_drop) / np.maximum(red_drop, 0.02) / (
        MELANIN_GREEN_BEYOND_RED)
    red_ok = np.clip((255.0 - skin[0]) / RED_CLIP_BAND - 1.0, 0.0, 1.0)
    by_blue = red_ok * np.minimum(beyond_red, beyond_green) + (1.0 - red_ok) * beyond_green
    dark_blue = red_ok * np.maximum(beyond_red, green_over_red) + (1.0 - red_ok) * beyond_green
    blue_read = np.clip((pit[2] - BLUE_DARK_LEVEL) / BLUE_DARK_BAND, 0.0, 1.0)
    share: np.ndarray = blue_read * by_blue + (1.0 - blue_read) * np.maximum(by_blue, dark_blue)
    return share


def _ray_median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=1)`` of finite values: the middle of the sorted rays, or the
    mean of the two middle ones (as np.median takes it: their sum halved)."""
    ordered = np.sort(values, axis=1)
    middle = values.shape[1] // 2
    if values.shape[1] % 2:
        return ordered[:, middle]
    result: np.ndarray = (ordered[:, middle - 1] + ordered[:, middle]) / 2.0
    return result


def ring_of(depth: np.ndarray, centres: np.ndarray, radius_px: float) -> np.ndarray:
    """The depth on 8 rays at ``radius_px`` around each centre, in angle order: (N, 8) (cheap:
    read before the full profile)."""
    angles = np.arange(8) * (np.pi / 4.0)
    xs = centres[:, :1] + radius_px * np.cos(angles)
    ys = centres[:, 1:] + radius_px * np.sin(angles)
    result: np.ndarray = bilinear(depth, xs, ys)
    return result


def spread_of(depth: np.ndarray, centres: np.ndarray, radius_px: float) -> np.ndarray:
    """The shallowest of 8 rays at ``radius_px`` around each centre: a wide pit stays deep all
    round, a junction falls off between its arms."""
    result: np.ndarray = ring_of(depth, centres, radius_px).min(axis=1)
    return result


def second_furrow(ring: np.ndarray) -> np.ndarray:
    """Per row of ``ring_of``, the deepest ray outside the deepest one and its two neighbours:
    the depth of a second furrow near the centre (a wide furrow passing by covers neighbouring
    rays, so the second-deepest ray would be the same furrow again)."""
    deepest = ring.argmax(axis=1)
    near = (np.arange(8)[None, :] - deepest[:, None]) % 8
    result: np.ndarray = np.where((near <= 1) | (near == 7), -np.inf, ring).max(axis=1)
    return result


# The junctions along a pit's own furrows (``junctions_along``): the candidates within
# ALONG_REACH_UM of it, and ALONG_FROM_UM beyond its outer rim (not its own maxima), that a
# straight path from the pit reaches without leaving a furrow: at ALONG_POINTS along it,
# the deepest of ALONG_OFFSETS_UM across it stays at least a share of the pit's arms' depth.
# A furrow runs from junction to junction, so those are the junctions its arms lead to (a
# shallower furrow meeting it is left out by the share), drawn as deep as that furrow's.
ALONG_REACH_UM = 600.0
ALONG_FROM_UM = 20.0
ALONG_POINTS = 16  # points read evenly along a path (at most 35 µm apart at the reach)
ALONG_OFFSETS_UM = (-20.0, 0.0, 20.0)
_ALONG_SHARES = np.arange(1, ALONG_POINTS + 1) / (ALONG_POINTS + 1)


def junctions_along(depth: np.ndarray, pits: np.ndarray, outer_px: np.ndarray,
                    level: np.ndarray, *, centres: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """The median floor of the candidates (``centres`` fine px, ``floor``) that each pit
    (``pits`` fine px, its outer rim ``outer_px``) reaches along a furrow at least ``level``
    (one per pit) deep; NaN where it reaches none. Continuous in the calibration: µm on the
    fine depth, a share of a depth."""
    result = np.full(len(pits), np.nan)
    if not len(pits) or not len(centres):
        return result
    # a candidate shallower than the level ends no such path
    deep = np.flatnonzero(floor >= level.min())
    dx = centres[None, deep, 0] - pits[:, None, 0]
    dy = centres[None, deep, 1] - pits[:, None, 1]
    squared = dx * dx + dy * dy
    start = outer_px + ALONG_FROM_UM / FINE_UM_PER_PX
    pit, near = np.nonzero((squared > (start * start)[:, None])
                           & (squared <= (ALONG_REACH_UM / FINE_UM_PER_PX) ** 2)
                           & (floor[deep][None, :] >= level[:, None]))
    if not len(pit):
        return result
    along_x, along_y = dx[pit, near], dy[pit, near]
    # across: ALONG_OFFSETS_UM at right angles to each path
    across = np.asarray(ALONG_OFFSETS_UM) / FINE_UM_PER_PX / np.sqrt(squared[pit, near])[:, None]
    xs = (pits[pit, 0, None, None] + along_x[:, None, None] * _ALONG_SHARES[None, :, None]
          - (along_y[:, None] * across)[:, None, :])
    ys = (pits[pit, 1, None, None] + along_y[:, None, None] * _ALONG_SHARES[None, :, None]
          + (along_x[:, None] * across)[:, None, :])
    reached = bilinear(depth, xs, ys).max(axis=2).min(axis=1) >= level[pit]
    pit, other = pit[reached], deep[near[reached]]
    # each pit's median: its reached floors sorted, the mean of the two middle ones
    reached_floor = floor[other]
    order = np.lexsort((reached_floor, pit))
    first = np.searchsorted(pit[order], np.arange(len(pits) + 1))
    count = np.diff(first)
    read = np.flatnonzero(count)
    sorted_floor = reached_floor[order]
    result[read] = (sorted_floor[first[read] + (count[read] - 1) // 2]
                    + sorted_floor[first[read] + count[read] // 2]) / 2.0
    return result
