"""Skin for the synthetic camera (``capture.synthetic.SyntheticSource``): one frame per customer.

``generated_skin`` draws each customer with the skin generator (``synthetic.skin``, known truth);
``textured_skin`` is a cheap skin-coloured texture for fast tests and delivery benchmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.capture.sources import FRAME_HEIGHT_PX, FRAME_WIDTH_PX
from appliance.capture.synthetic import SkinFactory


def generated_skin(seed: int, preset: str = "mixed") -> SkinFactory:
    """Skin frames from the synthetic skin generator, one per customer index."""

    def make(index: int) -> np.ndarray:
        from appliance.synthetic.skin import synthetic_frame  # noqa: PLC0415 - heavy, lazy

        rgb: np.ndarray = synthetic_frame(seed, index, preset).image_rgb
        return rgb

    return make


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
