"""Pores: round pits, told from furrow junctions, pigment spots, hairs and dust by their profile.

Method (docs/measurement.md "Pores"), on the work image at 20 µm/px with depth = 1 - level
relative to the hill background, lightly smoothed:
1. Candidates: maxima of how pit-like the depth is (the weaker of its two curvatures, at two
   fixed scales) deeper than the typical furrow floor. A furrow curves only across itself.
2. Rays: around each candidate the depth is sampled on 16 rays out to 320 µm. The rim is
   where each ray falls halfway from the pit's floor to the skin right outside it (the skin
   is re-estimated once the rim is known). Rays that run on down a furrow arm are cut back
   to the pit's own rim, so a pore at a junction is measured by its own edge, not the arms.
3. The frame's typical junction: most candidates are furrow meeting points (hundreds against
   at most tens of pores), so the median floor and gap of a sample of them describe this
   frame's junctions. A pore is deeper than the furrows and than a typical junction, at least
   as wide between its arms as one (or much deeper than one and than its arms: a small deep
   pore in a furrow), deeper than the arms around it (a junction is as deep as its arms),
   deeper than its deepest ray (a hair runs on as deep as its end), round, no longer than 2.2
   times its width above its arms (a short deep stretch of furrow is a dash), grey (a pigment
   spot or freckle takes more blue than red: melanin) and 50-400 µm across (dust is smaller).
   Overlapping candidates keep the deepest.
4. Diameter: the equivalent diameter of the rim, with the imaging halo of a pit's darkness
   taken off in quadrature (calibrated on the project's own generator).
Every threshold is a ratio, a fixed number of work pixels or µm, and every radius is
interpolated, so counts and diameters move smoothly with the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.preprocess import WORK_UM_PER_PX, Prepared

# Every value here was set on the project's own generator (synthetic.skin, presets mixed and
# wide); the second renderer (synthetic.skin_voronoi) only evaluates them.
SMOOTH_PX = 0.7  # light smoothing of the depth before sampling (work px)
BLOB_SCALES_PX = (1.5, 3.0)  # curvature scales of the candidate search (work px)
MIN_BLOBNESS = 0.03  # scale-normalised weaker curvature of a candidate
MIN_CANDIDATE_DEPTH = 0.12  # a pit at least this far below the hill level is looked at
RAY_COUNT = 16
RAY_STEP_PX = 0.75
RAY_REACH_UM = 320.0
SKIN_ITERATIONS = 2  # rim, then skin just outside it, then the rim again
SKIN_RING = 1.5  # the skin: the lower-quartile ray depth between the rim and 1.5 rims out
ARM_CUT = 1.15  # a ray longer than this times the median ray runs down a furrow arm
JUNCTION_SAMPLE = 100  # candidates profiled to learn the frame's typical junction
MIN_DEPTH_OVER_FURROW = 1.7  # pit floor / median furrow floor
MIN_DEPTH_OVER_JUNCTION = 1.3  # pit floor / typical junction floor
MIN_GAP_OVER_JUNCTION = 0.9  # shortest rim rays / typical junction's
DEEP_OVER_JUNCTION = 1.6  # ... or this much deeper than a typical junction
DEEP_OVER_ARMS = 1.6  # ... and than its arms (then half a junction's gap is enough)
MIN_DEPTH_OVER_ARMS = 1.25  # pit floor / second-deepest ray just outside the rim
MIN_DEPTH_OVER_STRAND = 1.1  # pit floor / deepest ray: the end of a hair is no deeper than it
MAX_BLUE_EXCESS = 0.35  # blue darkening beyond red, as a share of the red darkening
MIN_ROUNDNESS = 0.4  # shortest over median rim ray
MAX_ELONGATION = 2.2  # longest over shortest rim diameter, rim above the arms (pores: oval)
MIN_DIAMETER_UM = 50.0
MAX_DIAMETER_UM = 400.0
HALO_UM = 70.0  # imaging halo of a pit's darkness, taken off the rim diameter in quadrature


@dataclass(frozen=True)
class Pores:
    """Detected pores: centres (work px), equivalent diameters (µm) and the metrics."""

    centres_work_px: np.ndarray  # (P, 2) x, y
    diameters_um: np.ndarray  # (P,)
    metrics: dict[str, float]
    furrow_floor: float  # median depth of furrow pixels below the hill level (the contrast)


@dataclass(frozen=True)
class _Profiles:
    """Depth sampled around each candidate: (P, radii, rays), plus the radii in px."""

    depth: np.ndarray
    radii_px: np.ndarray


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Image values at float positions (clamped to the frame)."""
    height, width = image.shape
    xs = np.clip(xs, 0.0, width - 1.001)
    ys = np.clip(ys, 0.0, height - 1.001)
    x0, y0 = xs.astype(np.intp), ys.astype(np.intp)
    fx, fy = xs - x0, ys - y0
    flat = image.ravel()
    index = y0 * width + x0
    top = flat[index] * (1 - fx) + flat[index + 1] * fx
    bottom = flat[index + width] * (1 - fx) + flat[index + width + 1] * fx
    result: np.ndarray = top * (1 - fy) + bottom * fy
    return result


def profile(depth: np.ndarray, centres: np.ndarray) -> _Profiles:
    """Depth on ``RAY_COUNT`` rays around each centre, every ``RAY_STEP_PX`` out to the reach."""
    radii = np.arange(1, int(RAY_REACH_UM / WORK_UM_PER_PX / RAY_STEP_PX) + 1) * RAY_STEP_PX
    angles = np.arange(RAY_COUNT) * (2.0 * np.pi / RAY_COUNT)
    dx = radii[:, None] * np.cos(angles)[None, :]
    dy = radii[:, None] * np.sin(angles)[None, :]
    xs = centres[:, 0, None, None] + dx[None]
    ys = centres[:, 1, None, None] + dy[None]
    return _Profiles(_bilinear(depth, xs, ys), radii)


def _weaker_curvature(depth: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised weaker curvature (minus the larger Hessian eigenvalue) at ``sigma``."""
    smooth = cv2.GaussianBlur(depth, (0, 0), sigma)
    dxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=3, scale=0.25)
    dyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=3, scale=0.25)
    dxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3, scale=0.25)
    spread = cv2.magnitude(cv2.subtract(dxx, dyy), dxy + dxy)  # 2 * sqrt(((a-b)/2)^2 + c^2)
    weaker: np.ndarray = cv2.addWeighted(cv2.add(dxx, dyy), -0.5 * sigma**2, spread,
                                         -0.5 * sigma**2, 0.0)
    return weaker


def blobness(depth: np.ndarray) -> np.ndarray:
    """How pit-like each pixel is: the weaker of the two curvatures of the depth (scale-normalised,
    the better of two scales). A furrow curves across but not along, so it scores ~0; a pit
    curves both ways; a junction somewhere between."""
    fine, coarse = (_weaker_curvature(depth, sigma) for sigma in BLOB_SCALES_PX)
    result: np.ndarray = cv2.max(fine, coarse)
    return result


def candidates(depth: np.ndarray, furrow_floor: float) -> np.ndarray:
    """Pit-like local maxima deeper than the typical furrow floor: (N, 2) x, y."""
    pits = blobness(depth)
    peaks = pits >= cv2.dilate(pits, np.ones((5, 5), np.uint8))
    peaks &= (pits > MIN_BLOBNESS) & (depth > max(MIN_CANDIDATE_DEPTH, furrow_floor))
    ys, xs = np.nonzero(peaks)
    return np.stack([xs, ys], axis=1).astype(np.float64)


def _crossing(values: np.ndarray, level: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per row, the radius where ``values`` first falls below ``level`` (linear, px)."""
    below = values < level[:, None]
    first = np.where(below.any(axis=1), below.argmax(axis=1), values.shape[1] - 1)
    inner = np.maximum(first - 1, 0)
    rows = np.arange(len(values))
    v0, v1 = values[rows, inner], values[rows, first]
    r0 = np.where(first > 0, radii[inner], 0.0)
    span = np.where(np.abs(v0 - v1) > 1e-9, (v0 - level) / (v0 - v1 + 1e-12), 0.0)
    crossed: np.ndarray = r0 + np.clip(span, 0.0, 1.0) * (radii[first] - r0)
    return crossed


def own_radius_px(measured_px: np.ndarray, um_per_px: float) -> np.ndarray:
    """The pit's own radius from its half-depth rim: the imaging halo taken off in quadrature.

    Shading of the pit's walls, defocus and JPEG spread every pit's darkness by about the same
    width, so the rim of a small pit sits relatively further out than a large one's. The halo
    width is calibrated on the project's own generator (never on the evaluation renderer).
    """
    halo_px = HALO_UM / 2.0 / um_per_px
    squared = np.maximum(measured_px**2 - halo_px**2, (measured_px / 2.0) ** 2)
    result: np.ndarray = np.sqrt(squared)
    return result


@dataclass(frozen=True)
class _Shape:
    """What the rays say about each candidate."""

    floor: np.ndarray  # depth at the centre
    skin: np.ndarray  # depth of the skin around it
    radius_px: np.ndarray  # equivalent rim radius, arms cut back (blurred, work px)
    gap_px: np.ndarray  # shortest rays' rim radius: between the arms of a junction
    roundness: np.ndarray  # shortest over median rim radius
    arms: np.ndarray  # depth of the 2nd deepest ray just outside the rim (furrow arms)
    strand: np.ndarray  # depth of the deepest ray there (a hair runs on as deep as its end)
    elongation: np.ndarray  # longest over shortest diameter of the rim above the arms


def _elongation(with_floor: np.ndarray, floor: np.ndarray, top: np.ndarray,
                radii: np.ndarray) -> np.ndarray:
    """Longest over shortest diameter of the pit where it rises halfway to the higher of the
    skin and its arms: a pore is round or oval; a short deep stretch of furrow is a dash.

    With the level above the arms, rays do not run on down the furrows at a junction."""
    level = np.repeat((floor + top) / 2.0, RAY_COUNT)
    rim = _crossing(with_floor, level, radii).reshape(-1, RAY_COUNT)
    diameters = rim[:, : RAY_COUNT // 2] + rim[:, RAY_COUNT // 2:]
    result: np.ndarray = diameters.max(axis=1) / np.maximum(diameters.min(axis=1), 1e-6)
    return result


def _shape(depth: np.ndarray, centres: np.ndarray) -> _Shape:
    """Rim radii, floor, skin, roundness and arm depth of each candidate."""
    rays = profile(depth, centres)
    floor = _bilinear(depth, centres[:, 0], centres[:, 1])
    ordered = np.sort(rays.depth, axis=2)
    lower = ordered[:, :, RAY_COUNT // 4]  # the skin between the arms, at each radius
    skin = lower.min(axis=1)
    radii = np.r_[0.0, rays.radii_px]
    per_ray = np.moveaxis(rays.depth, 2, 1).reshape(-1, len(rays.radii_px))
    with_floor = np.concatenate([np.repeat(floor, RAY_COUNT)[:, None], per_ray], axis=1)
    for _ in range(SKIN_ITERATIONS):  # the skin right outside the rim, not a far hill top
        half = (floor + skin) / 2.0
        crossed = _crossing(with_floor, np.repeat(half, RAY_COUNT), radii)
        rim = np.sort(crossed.reshape(-1, RAY_COUNT))
        median = rim[:, RAY_COUNT // 2]
        beyond = (rays.radii_px[None, :] >= median[:, None]) & (
            rays.radii_px[None, :] <= SKIN_RING * median[:, None] + 1.5)
        skin = np.minimum(np.where(beyond, lower, np.inf).min(axis=1), floor)
    own = np.minimum(rim, ARM_CUT * median[:, None])  # rays down a furrow arm stop at the rim
    radius = np.sqrt(np.mean(own**2, axis=1))  # area of the star-shaped rim = pi * radius**2
    gap = rim[:, 1]
    ring = np.clip(np.searchsorted(rays.radii_px, median + 2.0), 0, len(rays.radii_px) - 2)
    rows = np.arange(len(centres))
    arms = (ordered[rows, ring, -2] + ordered[rows, ring + 1, -2]) / 2.0  # 2nd deepest ray
    strand = (ordered[rows, ring, -1] + ordered[rows, ring + 1, -1]) / 2.0  # the deepest one
    elongation = _elongation(with_floor, floor, np.maximum(skin, arms), radii)
    return _Shape(floor, skin, radius, gap, gap / np.maximum(median, 1e-6), arms, strand,
                  elongation)


def _blue_excess(rgb: np.ndarray, centres: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """How much more blue than red the pit takes from the skin around it (0: a grey shadow)."""
    red, blue = (np.ascontiguousarray(rgb[..., c]) for c in (0, 2))  # uint8, sampled below
    angles = np.arange(RAY_COUNT) * (2.0 * np.pi / RAY_COUNT)
    out = (radius_px + 3.0)[:, None]
    xs, ys = centres[:, :1] + out * np.cos(angles), centres[:, 1:] + out * np.sin(angles)
    red_drop = np.log(np.median(_bilinear(red, xs, ys), axis=1) + 1.0) - np.log(
        _bilinear(red, centres[:, 0], centres[:, 1]) + 1.0)
    blue_drop = np.log(np.median(_bilinear(blue, xs, ys), axis=1) + 1.0) - np.log(
        _bilinear(blue, centres[:, 0], centres[:, 1]) + 1.0)
    excess: np.ndarray = (blue_drop - red_drop) / np.maximum(red_drop, 0.02)
    return excess


@dataclass(frozen=True)
class _Junctions:
    """The typical pit of this frame: its furrow junctions (the great majority of candidates)."""

    floor: float
    gap_px: float  # as measured (blurred), to compare with candidates measured alike


def _junctions(depth: np.ndarray, centres: np.ndarray) -> _Junctions:
    """Median floor and gap of an evenly spread sample of the candidates."""
    sample = centres[:: max(1, len(centres) // JUNCTION_SAMPLE)]
    shape = _shape(depth, sample)
    return _Junctions(float(np.median(shape.floor)), float(np.median(shape.gap_px)))


def measure_pores(prepared: Prepared, furrows: np.ndarray) -> Pores:
    """Find pores and measure count, density, mean equivalent diameter and area ratio."""
    depth = cv2.GaussianBlur(prepared.depth_work, (0, 0), SMOOTH_PX)
    on_furrows = depth[::2, ::2][furrows[::2, ::2]]  # every 4th pixel: the same median
    contrast = float(np.median(on_furrows)) if on_furrows.size else 0.0
    furrow_floor = max(contrast, 0.05)
    um = prepared.um_per_work_px
    centres = candidates(depth, furrow_floor)
    if len(centres) == 0:
        return _pore_result(centres, np.zeros(0), prepared, contrast)
    junction = _junctions(depth, centres)
    floor = depth[centres[:, 1].astype(np.intp), centres[:, 0].astype(np.intp)]
    deep = (floor >= MIN_DEPTH_OVER_FURROW * furrow_floor) & (
        floor >= MIN_DEPTH_OVER_JUNCTION * junction.floor)
    centres = centres[deep]
    shape = _shape(depth, centres)
    radius_um = own_radius_px(shape.radius_px, um) * um
    keep = _is_pore(shape, radius_um, _wide_enough(shape, junction))
    keep[keep] &= _blue_excess(prepared.rgb_work, centres[keep], shape.radius_px[keep]) <= (
        MAX_BLUE_EXCESS)
    chosen = _deepest_apart(centres[keep], shape.floor[keep], radius_um[keep] / um)
    return _pore_result(
        centres[keep][chosen], 2.0 * radius_um[keep][chosen], prepared, contrast
    )


def _wide_enough(shape: _Shape, junction: _Junctions) -> np.ndarray:
    """Wider between its arms than a typical junction; or much deeper than one and than its
    arms, and at least half as wide (a small deep pore in a furrow)."""
    wide = shape.gap_px >= MIN_GAP_OVER_JUNCTION * junction.gap_px
    deep = (shape.floor >= DEEP_OVER_JUNCTION * junction.floor) & (
        shape.floor >= DEEP_OVER_ARMS * shape.arms) & (shape.gap_px >= 0.5 * junction.gap_px)
    result: np.ndarray = wide | deep
    return result


def _is_pore(shape: _Shape, radius_um: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """Wide (between its arms, against a typical junction), deeper than its arms, round and
    pore-sized."""
    keep: np.ndarray = (
        wide
        & (shape.floor >= MIN_DEPTH_OVER_ARMS * shape.arms)
        & (shape.floor >= MIN_DEPTH_OVER_STRAND * shape.strand)
        & (shape.roundness >= MIN_ROUNDNESS)
        & (shape.elongation <= MAX_ELONGATION)
        & (2.0 * radius_um >= MIN_DIAMETER_UM)
        & (2.0 * radius_um <= MAX_DIAMETER_UM)
    )
    return keep


def _deepest_apart(centres: np.ndarray, floor: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Indices of candidates kept deepest first, none inside the rim of one already kept."""
    kept: list[int] = []
    for index in np.argsort(-floor, kind="stable"):
        if kept:
            gaps = np.hypot(*(centres[kept] - centres[index]).T)
            if np.any(gaps < np.maximum(radius_px[kept], radius_px[index])):
                continue
        kept.append(int(index))
    return np.asarray(kept, dtype=np.intp)


def _pore_result(
    centres: np.ndarray, diameters_um: np.ndarray, prepared: Prepared, furrow_floor: float
) -> Pores:
    count = len(diameters_um)
    area_mm2 = float(np.sum(np.pi * (diameters_um / 2000.0) ** 2))
    metrics = {
        "pore_count": float(count),
        "pore_density_per_cm2": count / (prepared.frame_area_mm2 / 100.0),
        "pore_mean_diameter_um": float(diameters_um.mean()) if count else 0.0,
        "pore_area_ratio": min(area_mm2 / prepared.frame_area_mm2, 1.0),
    }
    return Pores(centres.reshape(-1, 2), diameters_um, metrics, furrow_floor)
