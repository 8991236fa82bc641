"""Skin for the synthetic camera (``capture.synthetic.SyntheticSource``): one frame per customer.

``generated_skin`` draws each customer with the skin generator (``synthetic.skin``, known truth);
``textured_skin`` is a cheap skin-coloured texture for fast tests and delivery benchmarks.
``stated_age_band`` is what each generated customer says when asked for their age band.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from appliance.capture.sources import FRAME_HEIGHT_PX, FRAME_WIDTH_PX
from appliance.capture.synthetic import AgeBandOf, SkinFactory


def generated_skin(seed: int, preset: str = "mixed") -> SkinFactory:
    """Skin frames from the synthetic skin generator, one per customer index."""

    def make(index: int) -> np.ndarray:
        rgb: np.ndarray = _generated(seed, index, preset).image_rgb
        return rgb

    return make


def stated_age_band(seed: int, preset: str = "mixed") -> AgeBandOf:
    """The age band each generated customer of ``generated_skin(seed, preset)`` states."""

    def band(index: int) -> str | None:
        return age_band_of(_generated(seed, index, preset).params.age_years)

    return band


def age_band_of(age_years: float) -> str:
    """The decade band of an age, as the payload writes it: ``40-49``, or ``80+``."""
    decade = int(age_years // 10) * 10
    return "80+" if decade >= 80 else f"{decade}-{decade + 9}"


@lru_cache(maxsize=2)
def _generated(seed: int, index: int, preset: str) -> Any:
    """One generated customer (cached: the frame and the stated age come from one render)."""
    from appliance.synthetic.skin import synthetic_frame  # noqa: PLC0415 - heavy, lazy

    return synthetic_frame(seed, index, preset)


def textured_skin(
    seed: int, size_px: tuple[int, int] = (FRAME_WIDTH_PX, FRAME_HEIGHT_PX)
) -> SkinFactory:
    """A cheap skin-coloured random texture (for fast tests and delivery benchmarks)."""

    def make(index: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        small = rng.normal(0.0, 1.0, (size_px[1] // 4, size_px[0] // 4)).astype(np.float32)
        texture = cv2.resize(small, size_px, interpolation=cv2.INTER_CUBIC)
        base = np.array([196.0, 150.0, 128.0], dtype=np.float32)  # light skin tone, RGB
        rgb = base[None, None, :] * (1.0 + 0.12 * texture[:, :, None])
        return np.clip(rgb, 0, 255).astype(np.uint8)

    return make
