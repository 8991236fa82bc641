"""Frames of the "wide" preset as drawn before its oblique light (docs/experiments/README.md
"oblique"): the tests that chose a wide frame for what the ring-lit frame shows read that frame.
The light is the frame's last draw, so nothing else of the frame moves."""

from __future__ import annotations

import pytest

from appliance.synthetic import skin_params
from appliance.synthetic.skin import SyntheticSkin, synthetic_frame


def ring_lit_frame(seed: int, index: int, preset: str = "wide") -> SyntheticSkin:
    """Frame ``index`` of series ``seed`` lit by the LED ring alone (no oblique share)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skin_params, "OBLIQUE_LIGHT_SHARE", (0.0, 0.0))
        return synthetic_frame(seed, index, preset)
