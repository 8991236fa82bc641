"""A faint fine furrow network is read as a clear one is (texture.level_gain)."""

from __future__ import annotations

from functools import lru_cache

import pytest

from appliance.skin.preprocess import prepare
from appliance.skin.texture import Texture, measure_texture
from tests.faint_network import (
    TRUE_FURROW_MM_PER_MM2,
    TRUE_HILLS_PER_MM2,
    UM_PER_PX,
    honeycomb_frame,
)


@lru_cache(maxsize=4)
def _texture(darkness: float) -> Texture:
    return measure_texture(prepare(honeycomb_frame(darkness), UM_PER_PX))


@pytest.mark.parametrize("darkness", [0.35, 0.04], ids=["clear", "faint"])
def test_a_fine_network_is_read_within_a_few_percent_clear_or_faint(darkness: float) -> None:
    """Furrows 4 % darker than the hills (a response of about 0.03 on them): main found no
    hill of 25 a mm² (0.01); the hills and centre lines read the response as deep as a clear
    frame's (texture.level_gain)."""
    metrics = _texture(darkness).metrics
    assert metrics["hill_density_per_mm2"] == pytest.approx(TRUE_HILLS_PER_MM2, rel=0.03)
    assert metrics["furrow_density_mm_per_mm2"] == pytest.approx(TRUE_FURROW_MM_PER_MM2,
                                                                 rel=0.03)
    assert metrics["hill_mean_area_mm2"] == pytest.approx(1.0 / TRUE_HILLS_PER_MM2, rel=0.03)


def test_only_a_faint_frame_has_its_levels_read_deeper() -> None:
    assert _texture(0.35).level_gain == 1.0
    assert _texture(0.04).level_gain > 2.0
