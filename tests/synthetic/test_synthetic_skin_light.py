"""The "wide" preset lights its frames with an oblique source beside the LED ring (blind3, the
renderer drawn apart to evaluate, does: its hills read more the stronger that light,
docs/experiments/README.md "b3hill", "oblique"): drawn per frame, last, so the rest of a wide
frame, every other preset's frame and every frame's truth stay as they were."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from appliance.synthetic import skin_light, skin_params
from appliance.synthetic.skin import synthetic_frame, synthetic_params, synthetic_scene
from appliance.synthetic.skin_render import furrow_fields, render_linear
from appliance.synthetic.skin_truth import ground_truth

SEED, FRAMES = 7, 60
LIGHT = ("oblique_light_share", "oblique_elevation_deg", "oblique_azimuth_deg", "hill_dome_um",
         "micro_relief_um", "relief_seed")


def test_wide_frames_draw_an_oblique_light_from_none_to_strong() -> None:
    drawn = [synthetic_params(SEED, index, "wide") for index in range(FRAMES)]
    shares = [params.oblique_light_share for params in drawn]
    assert all(0.0 <= share <= 0.8 for share in shares)
    assert sum(share >= 0.6 for share in shares) >= 6  # strongly oblique on some frames
    assert sum(share <= 0.2 for share in shares) >= 6  # nearly the ring alone on others
    assert all(20.0 <= params.oblique_elevation_deg <= 50.0 for params in drawn)
    assert all(2.0 <= params.hill_dome_um <= 15.0 for params in drawn)
    assert all(0.0 <= params.micro_relief_um <= 3.0 for params in drawn)
    assert np.ptp([params.oblique_azimuth_deg for params in drawn]) > 270.0
    assert len({params.relief_seed for params in drawn}) == FRAMES
    for preset in ("mixed", "fine", "coarse"):
        assert synthetic_params(1, 0, preset).oblique_light_share == 0.0


def test_the_light_is_drawn_last_and_changes_no_other_parameter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with_light = [synthetic_params(SEED, index, "wide") for index in range(12)]
    monkeypatch.setattr(skin_params, "_oblique_light_params", lambda rng: {})
    without = [synthetic_params(SEED, index, "wide") for index in range(12)]
    for lit, plain in zip(with_light, without, strict=True):
        assert replace(lit, **{name: getattr(plain, name) for name in LIGHT}) == plain
        assert plain.oblique_light_share == 0.0


def test_the_truth_is_the_geometrys_whatever_the_light(monkeypatch: pytest.MonkeyPatch) -> None:
    _, lit, geometry = synthetic_scene(SEED, 1, "wide")
    assert lit.oblique_light_share > 0.0
    # the frame's sidecar says what lit it
    assert synthetic_frame(SEED, 1, "wide").params.oblique_light_share == lit.oblique_light_share
    monkeypatch.setattr(skin_params, "_oblique_light_params", lambda rng: {})
    _, plain, ring_geometry = synthetic_scene(SEED, 1, "wide")
    assert plain.oblique_light_share == 0.0
    assert (ground_truth(geometry, lit.um_per_px)
            == ground_truth(ring_geometry, plain.um_per_px))


def test_a_frame_without_the_oblique_share_is_lit_by_the_ring_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of the other presets (share 0) never reach the oblique light: rendered as before."""
    def refuse(*args: Any) -> None:
        raise AssertionError("the oblique light was computed for a frame with none")

    monkeypatch.setattr(skin_light, "with_oblique_light", refuse)
    synthetic_frame(1, 0, "mixed")
    rng, params, geometry = synthetic_scene(SEED, 1, "wide")
    render_linear(rng, geometry, replace(params, oblique_light_share=0.0))


def _luminance(light: dict[str, float]) -> np.ndarray:
    rng, params, geometry = synthetic_scene(SEED, 1, "wide")
    params = replace(params, micro_relief_um=0.0, **light)
    return render_linear(rng, geometry, params)[1]


def test_the_flanks_turned_to_the_oblique_source_are_the_lit_ones() -> None:
    """The same frame lit from +x and from -x: on the hills' flanks that fall towards +x (the
    distance to the nearest furrow shrinks that way) it is brighter under the light from +x,
    on those that rise towards +x darker."""
    strong = {"oblique_light_share": 0.8, "oblique_elevation_deg": 25.0, "hill_dome_um": 12.0}
    from_plus_x = _luminance({**strong, "oblique_azimuth_deg": 0.0})
    from_minus_x = _luminance({**strong, "oblique_azimuth_deg": 180.0})
    _, _, geometry = synthetic_scene(SEED, 1, "wide")
    distance, width = furrow_fields(geometry)
    on_hill = distance > 0.5 * width + 3.0  # off the furrows' walls and their blur
    towards_plus_x = np.gradient(distance, axis=1)
    difference = from_plus_x - from_minus_x
    assert np.median(difference[on_hill & (towards_plus_x < -0.5)]) > 0.05
    assert np.median(difference[on_hill & (towards_plus_x > 0.5)]) < -0.05
