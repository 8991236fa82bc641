"""A count whose pores hide among junction discs as dark and wide as they are says so: the
pits it left out read as many pores (docs/measurement.md "Validated range")."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from appliance.skin.analysis import SkinAnalysis, analyze
from appliance.skin.pores import lookalikes
from appliance.skin.validity import (
    MAX_BORDERLINE_SHARE,
    MAX_COUNT_DOUBT,
    MAX_LOOKALIKES,
    PORE_KEYS,
    TEXTURE_KEYS,
)
from appliance.synthetic.skin import SyntheticSkin
from appliance.synthetic.skin_params import DEFAULT_JUNCTION_RELIEF
from tests.ring_light import ring_lit_frame


@lru_cache(maxsize=2)
def _measured(seed: int, index: int, preset: str) -> tuple[SyntheticSkin, SkinAnalysis]:
    # lit by the ring alone, as the frames were chosen (before the wide preset drew an
    # oblique light, docs/experiments/README.md "oblique")
    frame = ring_lit_frame(seed, index, preset)
    return frame, analyze(frame.image_rgb, frame.um_per_px)


def test_pores_hidden_among_dark_junction_discs_are_not_measured() -> None:
    # a wide-preset frame (development seed 11) with dark junction bowls as deep as its pores
    frame, analysis = _measured(11, 13, "wide")
    assert frame.params.junction_bowl
    assert frame.params.junction_relief > DEFAULT_JUNCTION_RELIEF
    validity = analysis.validity
    assert set(PORE_KEYS) <= set(validity.not_validated)  # on main: given as measured
    assert not set(TEXTURE_KEYS) & set(validity.not_validated)  # the texture still stands
    assert not validity.frame_outside
    truth = frame.truth["pore_count"]
    assert (truth - analysis.features.pore_count) / truth > 0.25  # most pores are missed
    # neither borderline nor doubted by the counted pits' scores: the left-out pits say it
    assert analysis.pores.borderline <= MAX_BORDERLINE_SHARE
    assert analysis.pores.doubt <= MAX_COUNT_DOUBT
    assert analysis.pores.lookalikes > MAX_LOOKALIKES
    assert validity.reasons == (
        f"pore count among look-alikes: its left-out pits read as "
        f"{analysis.pores.lookalikes:.0%} more pores beyond 1 (at most {MAX_LOOKALIKES:.0%})",)


def test_a_plain_mixed_frame_leaves_out_no_look_alikes() -> None:
    frame, analysis = _measured(11, 0, "mixed")
    assert analysis.pores.lookalikes <= MAX_LOOKALIKES
    assert analysis.validity.not_validated == ()
    truth = frame.truth["pore_count"]
    assert abs(analysis.features.pore_count - truth) / truth < 0.1


def test_look_alikes_are_the_left_out_pits_posteriors_beyond_one_pore_per_pore() -> None:
    assert lookalikes(np.zeros(20), 10) == pytest.approx((10.0 - 1.0) / 10)  # 20 coin flips
    assert lookalikes(np.full(500, -12.0), 10) == pytest.approx(0.0)  # sure junctions
    assert lookalikes(np.array([]), 5) == 0.0
    assert lookalikes(np.zeros(2), 0) == 0.0  # one pore's worth left out of none: the slack
    assert lookalikes(np.zeros(6), 0) == pytest.approx(2.0)  # per pore, at least 1
