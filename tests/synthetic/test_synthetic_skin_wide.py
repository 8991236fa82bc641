"""The "wide" preset draws the skin the age model never draws: fine hills with wide furrows and
junctions deepened but no wider than their furrows (the held-out renderers' skin whose junctions
the measurement counted as pores), and pores of more than one hue."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from appliance.synthetic.skin import synthetic_geometry, synthetic_scene
from appliance.synthetic.skin_params import SkinParams
from appliance.synthetic.skin_render import render_linear
from appliance.synthetic.skin_truth import ground_truth

SEED, FRAMES = 7, 60
FINE_HILL_MM2 = 0.06  # mean hill area of fine skin (the age model's 20-year-olds: 0.03-0.06)
WIDE_FURROW_UM = 55.0  # mean furrow width the age model draws only with coarse hills


def _deepened(params: SkinParams) -> bool:
    """Junctions markedly darker than their furrows, their disc no wider than 1.2 furrow widths."""
    return params.junction_darkness >= 0.25 and 2.0 * params.junction_size <= 1.2


def test_wide_frames_hold_fine_hills_with_wide_furrows_and_deepened_junctions() -> None:
    fine_and_wide, with_deep_junctions = [], []
    for index in range(FRAMES):
        params, geometry = synthetic_geometry(SEED, index, "wide")
        truth = ground_truth(geometry, params.um_per_px)
        if (truth["hill_mean_area_mm2"] <= FINE_HILL_MM2
                and truth["furrow_mean_width_um"] >= WIDE_FURROW_UM):
            fine_and_wide.append(index)
            if _deepened(params):
                with_deep_junctions.append(index)
    assert len(fine_and_wide) >= 5, fine_and_wide  # 9 of 60 here; the age model alone: 1
    assert len(with_deep_junctions) >= 3, fine_and_wide


def test_wide_frames_draw_neutral_reddish_and_brownish_pores() -> None:
    hues = set()
    for index in range(30):
        params, _ = synthetic_geometry(SEED, index, "wide")
        hues.add(("reddish" if params.pore_erythema > 0 else "")
                 + ("brownish" if params.pore_melanin > 0 else "") or "neutral")
    assert hues == {"neutral", "reddish", "brownish"}


def test_a_reddish_pore_is_redder_than_the_skin_around_it_and_no_darker_in_grey() -> None:
    rng, params, geometry = synthetic_scene(SEED, 0, "wide")
    assert len(geometry.pore_radii_px) > 0
    state = rng.bit_generator.state
    x, y = np.round(geometry.pore_centres_px[0]).astype(int)

    def pore_reading(drawn: SkinParams) -> tuple[float, float]:
        """Red over green at the pore over that of the skin around it; grey at the pore."""
        rng.bit_generator.state = state  # the same draws: only the pore hue differs
        rgb, _ = render_linear(rng, geometry, drawn)
        pore = rgb[y, x, 0] / rgb[y, x, 1]
        ring = rgb[max(y - 40, 0) : y + 41, max(x - 40, 0) : x + 41]
        grey = float(rgb[y, x] @ np.array([0.299, 0.587, 0.114]))
        return float(pore / np.median(ring[..., 0] / ring[..., 1])), grey

    neutral, neutral_grey = pore_reading(replace(params, pore_erythema=0.0, pore_melanin=0.0))
    reddish, reddish_grey = pore_reading(replace(params, pore_erythema=0.6, pore_melanin=0.0))
    assert reddish > 1.1 * neutral
    assert abs(reddish_grey / neutral_grey - 1.0) < 0.02
