"""The ridges of a frame's own furrows its centre lines left out name its texture features
when there are many (unread_furrows, validity.MAX_UNREAD_FURROWS)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.skin.analysis import analyze
from appliance.skin.unread_furrows import RIDGE_SHARE, unread_furrows
from appliance.skin.validity import MAX_UNREAD_FURROWS, TEXTURE_KEYS
from tests.faint_network import TRUE_HILLS_PER_MM2, UM_PER_PX, honeycomb_frame


@pytest.mark.parametrize(("darkness", "unread"), [(0.02, True), (0.035, False)],
                         ids=["too-faint", "faint-read"])
def test_a_network_too_faint_to_read_has_its_texture_named(darkness: float,
                                                           unread: bool) -> None:
    """At 2 % the hills read half of what lies there; the furrow contrast reads the furrows
    found and the ridges the centre lines left out name the texture features; at 3.5 % the
    network is read (within 3 %) and not named for it."""
    analysis = analyze(honeycomb_frame(darkness), UM_PER_PX)
    named = [r for r in analysis.validity.reasons if r.startswith("furrows unread")]
    assert bool(named) == unread
    hills = analysis.features.hill_density_per_mm2
    if unread:
        assert analysis.texture.unread_furrows > MAX_UNREAD_FURROWS
        assert set(TEXTURE_KEYS) <= set(analysis.validity.not_validated)
        assert hills < 0.8 * TRUE_HILLS_PER_MM2
    else:
        assert hills == pytest.approx(TRUE_HILLS_PER_MM2, rel=0.03)


def _response_with(ridge_depths: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """A 200 x 300 valley response with vertical ridges (1 px, a shallower pixel either side)
    at the given columns, and the centre lines: the ridge at column 50."""
    response = np.full((200, 300), 0.001, np.float32)
    for column, depth in ridge_depths.items():
        response[:, column] = depth
        response[:, column - 1] = response[:, column + 1] = 0.5 * depth
    lines = np.zeros(response.shape, dtype=bool)
    lines[:, 50] = True
    return response, lines


def test_unread_furrows_are_the_ridges_off_the_centre_lines_per_line_pixel() -> None:
    none = np.zeros((200, 300), dtype=bool)
    # a second ridge as deep, 150 px (3 mm at 20 µm/px) off the lines: as long as they are
    response, lines = _response_with({50: 0.2, 200: 0.2})
    assert unread_furrows(response, lines, none, 20.0) == pytest.approx(1.0)
    # under RIDGE_SHARE of the lines' depth: no furrow of theirs
    response, lines = _response_with({50: 0.2, 200: 0.9 * RIDGE_SHARE * 0.2})
    assert unread_furrows(response, lines, none, 20.0) == 0.0
    # within 60 µm (3 px) of a line: the line's own flank
    response, lines = _response_with({50: 0.2, 53: 0.2})
    assert unread_furrows(response, lines, none, 20.0) == 0.0
    # under a hair: not read
    response, lines = _response_with({50: 0.2, 200: 0.2})
    hair = none.copy()
    hair[:, 195:206] = True
    assert unread_furrows(response, lines, hair, 20.0) == 0.0
    assert unread_furrows(response, none, none, 20.0) == 0.0  # no centre line: nothing read
