"""Where the synthetic skin's pores go: a share on furrow junctions, the rest on hills.

Pores never overlap one another and lie wholly inside the frame. Elliptical pores (the "wide"
preset) are placed by their major semi-axis; their radius is the equivalent sqrt(a * b).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

from appliance.synthetic.skin_params import NO_PORE_DIAMETER_LIMIT_UM, SkinParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
PORE_GAP_PX = 2.0


def _pore_radii_px(rng: np.random.Generator, params: SkinParams, count: int) -> FloatArray:
    """Pore radii in px: log-normal about the mean equivalent diameter, within 2 px and 3x the
    mean; where the preset limits the diameter ("wide"), truncated to that range and the limits.

    Truncated, not clipped: a clip puts every pore drawn outside the range on its end (with the
    "wide" preset's mean 70 µm and cv 0.35 about 17 % of a frame's pores at exactly 50 µm), one
    size that no skin has, and which steps a count as one when a calibration moves that size
    across the pore decision's size test. The presets without limits keep the clip, which
    moves about one of their pores in 40,000, so that their frames stay as they were.
    """
    mean_radius_px = params.pore_diameter_um / 2.0 / params.um_per_px
    log_scatter = rng.normal(0.0, params.pore_diameter_cv, size=count)
    if (params.pore_diameter_min_um <= 0.0
            and params.pore_diameter_max_um >= NO_PORE_DIAMETER_LIMIT_UM):
        return np.clip(mean_radius_px * np.exp(log_scatter), 2.0, 3.0 * mean_radius_px)
    low = max(params.pore_diameter_min_um / 2.0 / params.um_per_px, 2.0)
    high = min(params.pore_diameter_max_um / 2.0 / params.um_per_px, 3.0 * mean_radius_px)
    log_scatter = _truncated_normal(log_scatter, params.pore_diameter_cv,
                                    math.log(low / mean_radius_px), math.log(high / mean_radius_px))
    return np.clip(mean_radius_px * np.exp(log_scatter), low, high)  # rounding at the ends


def _truncated_normal(draws: FloatArray, sigma: float, low: float, high: float) -> FloatArray:
    """Draws of N(0, sigma) mapped through the quantile of N(0, sigma) truncated to [low, high].

    Each draw keeps its rank (u = Phi(z / sigma), z' = sigma Phi^-1(Phi(a) + u (Phi(b) - Phi(a)))
    with a, b the ends over sigma), so the stream gives one normal draw a pore as before and
    nothing else a frame draws moves.
    """
    below, above = ndtr(low / sigma), ndtr(high / sigma)
    return np.asarray(ndtri(below + ndtr(draws / sigma) * (above - below)) * sigma,
                      dtype=np.float64)


class _PoreLayout:
    """Accepts pore discs one by one, refusing any that overlap one already placed."""

    def __init__(self, width_px: int, height_px: int) -> None:
        self.width_px, self.height_px = width_px, height_px
        self.centres: list[tuple[float, float]] = []
        self.radii: list[float] = []
        self.at_junction: list[bool] = []

    def try_add(self, x: float, y: float, radius: float, at_junction: bool) -> bool:
        """Place the disc if it lies in the frame and clears every other pore."""
        inside = (
            radius + 1 <= x <= self.width_px - radius - 1
            and radius + 1 <= y <= self.height_px - radius - 1
        )
        if not inside:
            return False
        if self.centres:
            gaps = np.hypot(*(np.asarray(self.centres) - (x, y)).T) - np.asarray(self.radii)
            if float(gaps.min()) < radius + PORE_GAP_PX:
                return False
        self.centres.append((x, y))
        self.radii.append(radius)
        self.at_junction.append(at_junction)
        return True

    def add_anywhere(self, rng: np.random.Generator, radius: float, attempts: int = 20) -> bool:
        """Place the disc at the first of a few random positions where it fits."""
        for _attempt in range(attempts):
            x, y = rng.uniform(0, self.width_px), rng.uniform(0, self.height_px)
            if self.try_add(float(x), float(y), radius, False):
                return True
        return False


def place_pores(
    rng: np.random.Generator,
    params: SkinParams,
    junctions_px: FloatArray,  # furrow junctions inside the frame
    width_px: int,
    height_px: int,
) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray]:
    """Pore centres, radii, junction flags and axis ratios: a share on junctions, the rest on
    hills."""
    area_cm2 = width_px * height_px * params.um_per_px**2 / 1e8
    count = int(rng.poisson(params.pore_density_per_cm2 * area_cm2))
    radii = _pore_radii_px(rng, params, count).tolist()
    # elliptical pores ("wide" preset): placed by their major semi-axis, sqrt(a*b) = radius
    ratios = rng.uniform(1.0 / params.pore_aspect_max, 1.0, size=count) if (
        params.pore_aspect_max > 1.0) else np.ones(count)
    reach = (np.asarray(radii) / np.sqrt(ratios)).tolist()
    junction_count = round(params.pore_junction_share * count)
    layout = _PoreLayout(width_px, height_px)
    in_frame = junctions_px
    placed: list[float] = []
    for i, (x, y) in zip(range(junction_count), rng.permutation(in_frame).tolist(), strict=False):
        if layout.try_add(x, y, reach[i], True):
            placed.append(float(ratios[i]))
    for i in range(junction_count, count):
        if layout.add_anywhere(rng, reach[i]):
            placed.append(float(ratios[i]))
    placed_ratio = np.asarray(placed, dtype=np.float64)
    return (
        np.asarray(layout.centres, dtype=np.float64).reshape(-1, 2),
        np.asarray(layout.radii, dtype=np.float64) * np.sqrt(placed_ratio),
        np.asarray(layout.at_junction, dtype=np.bool_),
        placed_ratio,
    )
