"""The "wide" preset draws hairs growing out of pores (a follicle opens as a pore; the fifth
renderer, blind3, starts a near-black hair at the centre of 18 % of its pores,
docs/experiments/README.md "b3inv", "hairpore"): rooted at the pore's centre, thinner than the
pore, in any direction; the rest of a wide frame and every "mixed" frame stay as they were."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from appliance.synthetic import skin_extras
from appliance.synthetic.skin import synthetic_frame, synthetic_params, synthetic_scene
from appliance.synthetic.skin_geometry import SkinGeometry
from appliance.synthetic.skin_render import render_linear

SEED = 7


def test_wide_frames_draw_a_share_of_pores_with_hairs_and_mixed_frames_none() -> None:
    wide = [synthetic_params(SEED, index, "wide") for index in range(20)]
    shares = [params.pore_hair_share for params in wide]
    assert all(0.0 <= share <= 0.35 for share in shares)
    assert max(shares) > 0.2
    assert len({params.pore_hair_seed for params in wide}) == len(wide)
    for index in (0, 3):
        assert synthetic_params(1, index, "mixed").pore_hair_share == 0.0


def _one_pore(geometry: SkinGeometry, pore: int) -> SkinGeometry:
    keep = slice(pore, pore + 1)
    return replace(geometry, pore_centres_px=geometry.pore_centres_px[keep],
                   pore_radii_px=geometry.pore_radii_px[keep],
                   pore_at_junction=geometry.pore_at_junction[keep])


def test_every_hair_leaves_its_pores_centre_thinner_than_the_pore() -> None:
    _, params, geometry = synthetic_scene(SEED, 0, "wide")
    params = replace(params, pore_hair_share=1.0)
    height, width = geometry.height_px, geometry.width_px
    inside = [pore for pore, (x, y) in enumerate(geometry.pore_centres_px)
              if 30 <= x < width - 30 and 30 <= y < height - 30]
    assert len(inside) >= 5
    colours = set()
    for pore in inside[:12]:
        drawn = skin_extras.pore_hairs(_one_pore(geometry, pore), params)
        assert drawn is not None
        colours.add(int(drawn[1].max() > 0.5))  # 1: a grey hair, 0: a near-black one
        hair = np.maximum(*drawn)
        (x, y), radius = geometry.pore_centres_px[pore], geometry.pore_radii_px[pore]
        col, row = round(float(x)), round(float(y))
        assert hair[row - 1:row + 2, col - 1:col + 2].max() > 0.5  # rooted at the centre
        # the strand crosses a circle of 1.5 radii around the centre once, narrower than the
        # pore's diameter
        angles = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
        ring = 1.5 * radius
        xs = np.round(x + ring * np.cos(angles)).astype(int)
        ys = np.round(y + ring * np.sin(angles)).astype(int)
        covered_px = (hair[ys, xs] > 0.5).mean() * 2 * np.pi * ring
        assert 0.0 < covered_px < 2 * radius * 0.6 + 3.0
    assert colours == {0, 1}


def test_no_share_draws_nothing_and_the_rest_of_the_frame_is_unchanged() -> None:
    rng, params, geometry = synthetic_scene(SEED, 0, "wide")
    assert skin_extras.pore_hairs(geometry, replace(params, pore_hair_share=0.0)) is None
    state = rng.bit_generator.state
    with_hairs, _ = render_linear(rng, geometry, replace(params, pore_hair_share=1.0))
    rng.bit_generator.state = state
    without, _ = render_linear(rng, geometry, replace(params, pore_hair_share=0.0))
    changed = np.abs(with_hairs - without).sum(axis=2) > 1e-6
    assert 0.0 < changed.mean() < 0.2  # only the strands (and their blur) differ


def test_a_pore_left_out_takes_its_hair_and_leaves_the_others() -> None:
    _, params, geometry = synthetic_scene(SEED, 0, "wide")
    params = replace(params, pore_hair_share=0.5)
    full = skin_extras.pore_hairs(geometry, params)
    fewer = replace(geometry, pore_centres_px=geometry.pore_centres_px[1:],
                    pore_radii_px=geometry.pore_radii_px[1:],
                    pore_at_junction=geometry.pore_at_junction[1:])
    part = skin_extras.pore_hairs(fewer, params)
    assert full is not None
    assert part is not None
    # what is left is covered in the full frame too: no other hair moved
    for whole, some in zip(full, part, strict=True):
        assert np.all(some <= whole + 1e-6)


@pytest.mark.parametrize("index", [0, 1])
def test_mixed_frames_draw_no_pore_hairs(index: int) -> None:
    frame = synthetic_frame(1, index, "mixed")
    assert frame.params.pore_hair_share == 0.0
