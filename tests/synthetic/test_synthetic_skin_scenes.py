"""The hand-set skin scenes refuse pores they cannot draw with a ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from appliance.synthetic.skin_scenes import beside_scene, hill_scene, junction_scene, oval_scene


def test_pores_too_large_for_any_furrow_segment_are_refused_naming_the_argument() -> None:
    # beside_scene(0, (150.0, 150.0)) raised ZeroDivisionError: no segment of seed 0's scene is
    # long enough for a 150 um pore beside it, and the pick cycled over none
    with pytest.raises(ValueError, match=r"^pore_diameters_um: .*long enough for a pore of 150 um"):
        beside_scene(0, (150.0, 150.0))


@pytest.mark.parametrize("scene", [beside_scene, oval_scene, junction_scene, hill_scene])
@pytest.mark.parametrize("diameter_um", [0.0, -80.0, float("nan"), float("inf")])
def test_a_pore_of_no_size_is_refused_naming_the_argument(
    scene: Callable[..., Any], diameter_um: float
) -> None:
    with pytest.raises(ValueError, match=r"^pore_diameters_um: .* not a positive number"):
        scene(1, (80.0, diameter_um))


def test_pores_that_fit_are_still_drawn_beside_a_furrow() -> None:
    geometry = beside_scene(0, (80.0, 80.0)).geometry
    assert len(geometry.pore_centres_px) == 2
    assert np.allclose(geometry.pore_radii_px * 2 * beside_scene(0).um_per_px, 80.0)
