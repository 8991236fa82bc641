"""Dark junction pits where faint furrows meet, as the fifth renderer (blind3) draws them at its
junctions of shallow tertiary furrows and main counted them as pores "alone in a hill"
(docs/experiments/README.md "b3over", "b3arms"): the own generator's scene whose furrows near
the centre are 0.45 times as deep as the rest, with the wide preset's dark-junction draw (0.85
of the furrow floor's darkness and fold depth added on a disc 1.6 furrow widths across; furrows
42 µm, hills 0.05 mm², 12.7 µm/px). The junction pits of the faint furrows read one arm or none
at the frame's furrow level, as a pore in a hill does, but their arms leave them at a share of
their own floor (``pores.ALONE_ARM_SHARE``): they are then asked to be deeper than the
junctions around them, and are not."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.skin.analysis import analyze
from appliance.synthetic.skin_params import DEFAULT_FURROW_DARKNESS
from appliance.synthetic.skin_scenes import faint_junction_scene

SHARE, WIDTH_UM, UM_PER_PX, FAINT = 0.85, 42.0, 12.7, 0.45
DARKNESS = 1.0 - (1.0 - DEFAULT_FURROW_DARKNESS) ** SHARE
DARK_AND_LARGE = {"furrow_width_um": WIDTH_UM, "lattice_cell_area_mm2": 0.05,
                  "um_per_px": UM_PER_PX, "junction_darkness": DARKNESS, "junction_size": 0.8,
                  "junction_relief": SHARE * (0.35 * WIDTH_UM / UM_PER_PX + 1.0) / DARKNESS}


@pytest.mark.parametrize(("seed", "most"), [(1, 3), (2, 1), (7, 1)])
def test_dark_junction_pits_of_faint_furrows_are_not_pores(seed: int, most: int) -> None:
    """No pore drawn. Main counted 10, 5 and 8 pits, all at junctions of the faint furrows;
    the few left (3, 1, 1) are the darkest of them, whose faint arms stay under a share of
    their floor."""
    scene = faint_junction_scene(seed, faint=FAINT, **DARK_AND_LARGE)
    assert analyze(scene.rgb, scene.um_per_px).features.pore_count <= most


@pytest.mark.parametrize(("seed", "diameter_um"), [(2, 100.0), (7, 100.0)])
def test_a_faint_pore_in_a_hill_among_faint_junction_pits_is_still_counted(
        seed: int, diameter_um: float) -> None:
    """A pore alone in a hill has no furrow leaving it at any share of its floor: it is still
    counted, and at most one junction pit besides it (main: 6 and 9 pits, the pore among
    them)."""
    scene = faint_junction_scene(seed, (diameter_um,), faint=FAINT, **DARK_AND_LARGE)
    analysis = analyze(scene.rgb, scene.um_per_px)
    found = analysis.pore_centres_frame_px()
    assert np.min(np.hypot(*(found - scene.geometry.pore_centres_px[0]).T)) < 6.0  # px
    assert analysis.features.pore_count <= 2
