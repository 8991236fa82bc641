"""A synthetic frame's parameters alone, without its geometry (tests that read only them)."""

from __future__ import annotations

import numpy as np

from appliance.synthetic.skin_params import PRESETS, SkinParams, sample_params


def frame_params(seed: int, index: int, preset: str) -> SkinParams:
    """The parameters ``synthetic_geometry(seed, index, preset)`` returns: its first draw from
    the frame's generator, about a thousandth of the geometry's time (the wide preset's
    geometry is 0.2-0.5 s a frame). tests/synthetic/test_synthetic_skin_wide.py checks both
    give the same."""
    generator = np.random.default_rng(np.random.SeedSequence([seed, index, PRESETS.index(preset)]))
    return sample_params(generator, preset)
