"""Synthetic pore sizes: the "wide" preset's diameter limits truncate the log-normal, they do not
pile pores up on the limit; presets without limits draw the radii they always drew."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from appliance.synthetic.skin_params import SkinParams, sample_params
from appliance.synthetic.skin_pore_layout import _pore_radii_px

PORES = 1000


def _wide(mean_diameter_um: float, cv: float, um_per_px: float = 10.0) -> SkinParams:
    """Wide-preset parameters (diameter limits 50-320 µm) with the given pore sizes and scale."""
    drawn = sample_params(np.random.default_rng(0), "wide")
    return replace(drawn, pore_diameter_um=mean_diameter_um, pore_diameter_cv=cv,
                   um_per_px=um_per_px)


def _limits_px(params: SkinParams) -> tuple[float, float]:
    return (params.pore_diameter_min_um / 2.0 / params.um_per_px,
            params.pore_diameter_max_um / 2.0 / params.um_per_px)


@pytest.mark.parametrize("preset", ["fine", "normal", "coarse", "mixed"])
def test_presets_without_diameter_limits_draw_the_radii_as_before(preset: str) -> None:
    """Pinned against the formula before the truncation: the same radii, bit for bit."""
    for draw in range(5):
        params = sample_params(np.random.default_rng(draw), preset)
        radii = _pore_radii_px(np.random.default_rng(99), params, PORES)
        mean_px = params.pore_diameter_um / 2.0 / params.um_per_px
        scatter = np.exp(np.random.default_rng(99).normal(0.0, params.pore_diameter_cv, PORES))
        expected = np.clip(np.clip(mean_px * scatter, 2.0, 3.0 * mean_px), *_limits_px(params))
        assert np.array_equal(radii, expected)


@pytest.mark.parametrize(
    ("mean_diameter_um", "um_per_px", "end_px"),
    [
        (60.0, 10.0, 2.5),  # a clip put ~30 % on the 50 µm limit
        (240.0, 10.0, 16.0),  # ~21 % on the 320 µm limit
        (70.0, 13.0, 2.0),  # the 2 px floor (52 µm here): ~3 % on it
        (70.0, 7.0, 15.0),  # 3x the mean (210 µm here): ~0.15 % on it
    ],
)
def test_wide_pores_share_no_size(mean_diameter_um: float, um_per_px: float,
                                  end_px: float) -> None:
    """No two pores of 20,000 have the same radius, and few lie within 1 % of an end."""
    params = _wide(mean_diameter_um, 0.35, um_per_px)
    low, high = _limits_px(params)
    radii = _pore_radii_px(np.random.default_rng(5), params, 20 * PORES)
    assert np.all((radii >= low) & (radii <= high))
    values, counts = np.unique(radii, return_counts=True)
    assert counts.max() == 1, f"{counts.max()} pores of radius {values[counts.argmax()]} px"
    near_end = np.abs(radii / end_px - 1.0) <= 0.01
    assert near_end.mean() <= 0.05, f"{near_end.sum()} pores within 1 % of {end_px} px"


def test_wide_radii_follow_the_truncated_log_normal() -> None:
    params = _wide(70.0, 0.35)
    low, high = _limits_px(params)
    mean_px = params.pore_diameter_um / 2.0 / params.um_per_px
    log_scatter = np.log(_pore_radii_px(np.random.default_rng(11), params, PORES) / mean_px)
    a, b = (np.log(limit / mean_px) / params.pore_diameter_cv for limit in (low, high))
    expected = stats.truncnorm(a, b, scale=params.pore_diameter_cv)
    assert stats.kstest(log_scatter, expected.cdf).pvalue > 0.01


def test_truncation_takes_the_same_draws_and_keeps_their_order() -> None:
    """One normal draw a pore, as before: the rest of the frame draws what it drew."""
    params = _wide(60.0, 0.35)
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    radii = _pore_radii_px(rng, params, PORES)
    draws = twin.normal(0.0, params.pore_diameter_cv, PORES)
    assert rng.random() == twin.random()
    assert np.array_equal(np.argsort(radii), np.argsort(draws))
