"""tests/he_slides.py: the cached painting is the slide ``render_slide`` paints."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.synthetic import he
from appliance.synthetic.he import SlideSpec, render_slide
from tests.he_slides import _painted, painted


def test_a_slide_s_names_change_no_pixel_and_the_cache_hands_out_the_painting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slides are small here (the painting reads the size at each call): the names of a slide
    (slide, patient, label) paint the same pixels, which the cache relies on to share one
    painting; what it hands out equals ``render_slide``'s and cannot be written into."""
    monkeypatch.setattr(he, "BIOPSY_SIZE_PX", (96, 160))
    monkeypatch.setattr(he, "SURGICAL_SIZE_PX", (128, 128))
    _painted.cache_clear()
    try:
        for material, batch, propensity, seed in (("biopsy", 2, 0.8, 5), ("surgical", 1, 0.5, 3)):
            spec = SlideSpec("s", "P1", "MSI", material, batch, propensity, seed=seed)
            named = SlideSpec("b11", "P11", "MSS", material, batch, propensity, seed=seed)
            rgb = render_slide(spec)
            assert np.array_equal(render_slide(named), rgb)
            assert not np.array_equal(render_slide(SlideSpec(
                "s", "P1", "MSI", material, batch, propensity, seed=seed + 1)), rgb)
            cached = painted(named)
            assert cached.dtype == rgb.dtype
            assert np.array_equal(cached, rgb)
            assert painted(spec) is cached  # painted once
            with pytest.raises(ValueError, match="read-only"):
                cached[0, 0, 0] = 0
    finally:
        _painted.cache_clear()  # no small slide for the tests after this one
