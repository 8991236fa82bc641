"""Junction pits darker and wider than their furrows, as the fifth renderer (blind3) draws them
and main counted them as pores (docs/experiments/README.md "darkjunc"): drawn with the own
generator's junction scene at the wide preset's dark-junction draw (0.85 of the furrow floor's
darkness and fold depth added on a disc 1.6 furrow widths across; furrows 42 µm, hills 0.05
mm², 12.7 µm/px: seed 12 wide frame 7's skin)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.skin.analysis import analyze
from appliance.synthetic.skin_params import DEFAULT_FURROW_DARKNESS
from appliance.synthetic.skin_scenes import junction_scene

SHARE, WIDTH_UM, UM_PER_PX = 0.85, 42.0, 12.7
DARKNESS = 1.0 - (1.0 - DEFAULT_FURROW_DARKNESS) ** SHARE
DARK_AND_LARGE = {"furrow_width_um": WIDTH_UM, "lattice_cell_area_mm2": 0.05,
                  "um_per_px": UM_PER_PX, "junction_darkness": DARKNESS, "junction_size": 0.8,
                  "junction_relief": SHARE * (0.35 * WIDTH_UM / UM_PER_PX + 1.0) / DARKNESS}


@pytest.mark.parametrize("seed", [0, 1])
def test_dark_large_junction_pits_without_a_pore_are_not_pores(seed: int) -> None:
    """Main counted 2 and 4: pits with at most 2 arms on their rays (their arms meet the disc
    below the rays' level), as deep as the other junctions of the frame, not deeper."""
    scene = junction_scene(seed, **DARK_AND_LARGE)
    assert analyze(scene.rgb, scene.um_per_px).features.pore_count == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_pore_at_a_dark_large_junction_is_one_pore(seed: int) -> None:
    scene = junction_scene(seed, (150.0,), **DARK_AND_LARGE)
    analysis = analyze(scene.rgb, scene.um_per_px)
    assert analysis.features.pore_count == 1
    found = analysis.pore_centres_frame_px()
    assert np.min(np.hypot(*(found - scene.geometry.pore_centres_px[0]).T)) < 6.0  # px


# The same skin with round Gaussian bowls for junction pits (the fifth renderer's profile, whose
# outline closes in light as a pore's does: docs/experiments/README.md "junc2"): 0.9 of the
# floor's darkness and fold depth added, half depth at 0.9 furrow widths from the junction,
# furrows 35 µm and darker (furrow darkness 0.45).
BOWL_SHARE, BOWL_WIDTH_UM, BOWL_FURROW_DARKNESS = 0.9, 35.0, 0.45
BOWL_DARKNESS = 1.0 - (1.0 - BOWL_FURROW_DARKNESS) ** BOWL_SHARE
DARK_BOWLS = {"furrow_width_um": BOWL_WIDTH_UM, "lattice_cell_area_mm2": 0.05,
              "um_per_px": UM_PER_PX, "furrow_darkness": BOWL_FURROW_DARKNESS,
              "junction_darkness": BOWL_DARKNESS, "junction_size": 0.9, "junction_bowl": True,
              "junction_relief": BOWL_SHARE * (0.35 * BOWL_WIDTH_UM / UM_PER_PX + 1.0)
              / BOWL_DARKNESS}


def test_a_bowl_junction_pit_without_a_pore_is_not_a_pore() -> None:
    """Main counted 1: a pit with 2 arms on its rays and a deep furrow on its far side, no
    deeper than the junctions around it, passed by its closed outline alone."""
    scene = junction_scene(1, **DARK_BOWLS)
    assert analyze(scene.rgb, scene.um_per_px).features.pore_count == 0


def test_a_pore_at_a_junction_among_bowl_junction_pits_is_one_pore() -> None:
    scene = junction_scene(1, (150.0,), **DARK_BOWLS)
    analysis = analyze(scene.rgb, scene.um_per_px)
    assert analysis.features.pore_count == 1  # main: 2
    found = analysis.pore_centres_frame_px()
    assert np.min(np.hypot(*(found - scene.geometry.pore_centres_px[0]).T)) < 6.0  # px
