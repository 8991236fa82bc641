"""The hand-set skin scenes refuse pores they cannot draw with a ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from appliance.synthetic.skin_scenes import (
    beside_scene,
    faint_junction_scene,
    hill_scene,
    junction_scene,
    oval_scene,
)


def test_pores_too_large_for_any_furrow_segment_are_refused_naming_the_argument() -> None:
    # beside_scene(0, (150.0, 150.0)) raised ZeroDivisionError: no segment of seed 0's scene is
    # long enough for a 150 um pore beside it, and the pick cycled over none
    with pytest.raises(ValueError, match=r"^pore_diameters_um: .*long enough for a pore of 150 um"):
        beside_scene(0, (150.0, 150.0))


@pytest.mark.parametrize("scene", [beside_scene, oval_scene, junction_scene, hill_scene,
                                   faint_junction_scene])
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


def test_the_faint_junction_scene_fades_the_furrows_near_its_centre_alone() -> None:
    geometry = faint_junction_scene(1, (100.0,), faint=0.45).geometry
    starts, ends = (geometry.vertices_px[geometry.edges[:, k]] for k in (0, 1))
    middle = (starts + ends) / 2.0
    inside = (np.abs(middle[:, 0] - 320) < 200) & (np.abs(middle[:, 1] - 240) < 150)
    assert geometry.edge_depth is not None
    assert inside.any()
    assert (~inside).any()
    assert np.all(geometry.edge_depth[inside] == 0.45)
    assert np.all(geometry.edge_depth[~inside] == 1.0)
    assert len(geometry.pore_centres_px) == 1
