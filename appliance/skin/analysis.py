"""One call that measures a skin frame: texture, pores, colour and the kime score.

``analyze`` is deterministic (same pixels, same numbers) and keeps the geometry it found so
the overlay can show where every number came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.skin.colour import WhiteReference, colour_features
from appliance.skin.features import SkinFeatures
from appliance.skin.pore_profile import FINE_SMOOTH_PX
from appliance.skin.pores import Pores, measure_pores
from appliance.skin.preprocess import on_grid, prepare
from appliance.skin.texture import Texture, measure_texture
from appliance.skin.validity import Validity, assess

# kime score anchors (see kime_score): hill densities and furrow widths that span young
# fine skin to old coarse skin under a 25x videomicroscope (Arakawa et al. 2007 report
# texture fineness as hills per area, and furrow width, both graded against experts).
FINE_HILLS_PER_MM2 = 30.0
COARSE_HILLS_PER_MM2 = 3.0
NARROW_FURROW_UM = 20.0
WIDE_FURROW_UM = 90.0
HILL_WEIGHT = 0.7


@dataclass(frozen=True)
class SkinAnalysis:
    """The features of one frame and the geometry behind them (for the overlay)."""

    features: SkinFeatures
    texture: Texture
    pores: Pores
    um_per_px: float
    frame_px_per_work_px: float  # to draw work-scale geometry on the frame
    validity: Validity  # what lies outside the validated range (docs/measurement.md)

    def pore_centres_frame_px(self) -> np.ndarray:
        """The counted pores' centres in frame pixels (x, y; pixel centres at integers), from
        their work-scale centres."""
        return on_grid(self.pores.centres_work_px, self.frame_px_per_work_px)


def kime_score(hill_density_per_mm2: float, furrow_mean_width_um: float) -> float:
    """Texture fineness 0-100 (higher = finer) from hill density and furrow width.

    Arakawa et al. (Shiseido, J. Soc. Cosmet. Chem. Jpn. 41(3), 2007) define texture
    fineness from videomicroscope images as the number of hills (cristae cutis) per area,
    with the mean furrow (sulcus) width as the second measure; fine skin has many small
    hills and narrow furrows. We place each on a 0-1 scale between coarse and fine anchors
    (hill density on a log scale, since it spans an order of magnitude; width linearly) and
    combine them 70/30, hill density leading as in the paper's definition:
    score = 100 * (0.7 * clip(ln(D/3) / ln(30/3)) + 0.3 * clip((90 - W) / (90 - 20))),
    D in hills/mm², W in µm.
    """
    if hill_density_per_mm2 <= 0:
        hill_part = 0.0
    else:
        hill_part = math.log(hill_density_per_mm2 / COARSE_HILLS_PER_MM2) / math.log(
            FINE_HILLS_PER_MM2 / COARSE_HILLS_PER_MM2
        )
    width_part = (WIDE_FURROW_UM - furrow_mean_width_um) / (WIDE_FURROW_UM - NARROW_FURROW_UM)
    score = HILL_WEIGHT * _unit(hill_part) + (1.0 - HILL_WEIGHT) * _unit(width_part)
    return 100.0 * score


def _unit(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def analyze(
    rgb: np.ndarray, um_per_px: float, white_reference: WhiteReference | None = None
) -> SkinAnalysis:
    """Measure every feature (docs/measurement.md) of an RGB uint8 frame at ``um_per_px``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"analyze needs an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    # the pores read the fine depth smoothed only: smoothed in place (speed only)
    prepared = prepare(rgb, um_per_px, fine_smooth_px=FINE_SMOOTH_PX)
    texture = measure_texture(prepared)
    pores = measure_pores(prepared, texture.furrow_sample, hair=texture.hair)
    colour = colour_features(prepared.rgb_work, white_reference)
    values: dict[str, float] = {**texture.metrics, **pores.metrics, **colour}
    values["kime_score"] = kime_score(
        values["hill_density_per_mm2"], values["furrow_mean_width_um"]
    )
    features = SkinFeatures.from_values(values)
    validity = assess(features, um_per_px, pores.furrow_floor, pore_borderline=pores.borderline,
                      pore_doubt=pores.doubt, pore_lookalikes=pores.lookalikes)
    return SkinAnalysis(
        features, texture, pores, um_per_px, prepared.frame_px_per_work_px, validity
    )
