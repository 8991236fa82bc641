"""Three-arm diagnosis scenes (appliance.synthetic.three_arm): what they claim to draw."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.synthetic.three_arm import SIZE, draw_scene


@pytest.mark.parametrize(("kind", "spacing_um"), [("poisson", 300.0), ("hexagonal", 230.0)])
def test_scene_hills_have_the_size_their_site_spacing_asks_for(kind: str,
                                                               spacing_um: float) -> None:
    scene = draw_scene(spacing_um, kind, seed=3)
    assert scene.rgb.shape == (*SIZE, 3)
    # a hexagonal cell of spacing s has area sqrt(3)/2 s^2 (both kinds are drawn at that density)
    expected_mm2 = np.sqrt(3.0) / 2.0 * (spacing_um / 1000.0) ** 2
    assert scene.hill_mm2 == pytest.approx(expected_mm2, rel=0.15)


def test_scene_furrows_are_darker_than_hills_and_lengths_are_in_the_frame() -> None:
    scene = draw_scene(300.0, "poisson", seed=4)
    grey = scene.rgb.mean(axis=2)
    middles = (scene.starts + scene.ends) / 2.0
    inside = ((middles[:, 0] > 2) & (middles[:, 0] < SIZE[1] - 3)
              & (middles[:, 1] > 2) & (middles[:, 1] < SIZE[0] - 3))
    on_furrow = grey[middles[inside, 1].astype(int), middles[inside, 0].astype(int)]
    assert np.median(on_furrow) < 0.93 * np.median(grey)
    drawn = np.hypot(*(scene.ends - scene.starts).T).sum()
    assert 0.0 < scene.true_px <= drawn  # the length inside the frame, never more than drawn


def test_rich_scenes_are_drawn_at_a_scale_of_8_to_12_um_per_px_and_repeat_per_seed() -> None:
    first, again = (draw_scene(260.0, "poisson", seed=5, rich=True) for _ in range(2))
    assert 8.0 <= first.um_per_px <= 12.0
    assert np.array_equal(first.rgb, again.rgb)
