"""Grey hairs on the wide preset's skin: found, and their crossings with furrows not counted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.skin import neutral_hairs
from appliance.skin.analysis import SkinAnalysis, analyze
from appliance.synthetic import skin_extras, skin_params
from appliance.synthetic.skin import synthetic_frame

# development frames (seed 12, never seed 1) with one grey hair (0.71 x the skin's grey)
# across pits and furrows: main read 6 pores on frame 21 where the same skin without the hair
# reads 2, 4 of them on the hair's crossings with furrows
GREY_HAIR_FRAME = (12, 21)


def _measured(hairs: bool) -> SkinAnalysis:
    """The frame measured as drawn, or the same skin, pores and lighting without its hair
    (the hair's draws still taken, so all else is drawn alike)."""
    drawn = skin_extras.hairs
    with pytest.MonkeyPatch.context() as patch:
        # the frame as drawn before the wide preset's dark junction pits (drawn last, so
        # nothing else moves): on this frame they add pits of their own, read apart elsewhere
        patch.setattr(skin_params, "DARK_JUNCTION_SHARE", 0.0)
        # and without hairs growing out of pores (drawn last too; docs/experiments/README.md
        # "hairpore"): the hair here is the one grey strand across the frame
        patch.setattr(skin_params, "PORE_HAIR_SHARE", (0.0, 0.0))
        # and lit by the ring alone (the oblique light is drawn last too: "oblique")
        patch.setattr(skin_params, "OBLIQUE_LIGHT_SHARE", (0.0, 0.0))
        if not hairs:
            patch.setattr(skin_extras, "hairs", lambda rng, params, shape: (
                drawn(rng, params, shape), None)[1])
        frame = synthetic_frame(*GREY_HAIR_FRAME, preset="wide")
    assert frame.params.hairs == 1  # one hair, grey
    assert frame.params.hair_grey_level > 0.0
    return analyze(frame.image_rgb, frame.um_per_px)


def test_a_grey_hair_is_found_and_adds_no_pores_nor_hills() -> None:
    hair, bare = _measured(hairs=True), _measured(hairs=False)
    assert hair.features.pore_count == bare.features.pore_count
    assert hair.features.hill_density_per_mm2 == pytest.approx(
        bare.features.hill_density_per_mm2, rel=0.01)
    # found as a long strand across the frame: over 1,000 work px (0.4 mm²) are hair
    assert np.count_nonzero(hair.texture.hair) > 1000
    assert not np.any(bare.texture.hair)


def test_long_greyer_pieces_read_at_once_are_those_read_one_by_one() -> None:
    """Step 4 reads every long piece's mean ratio in one pass (a frame of close grey stripes
    held hundreds, each compared over its whole box: 42 -> 171 ms a frame); the pieces kept
    are those cv2.mean keeps one piece at a time."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        strand = np.zeros((120, 160), np.uint8)
        for _ in range(int(rng.integers(1, 12))):
            start = tuple(int(v) for v in rng.integers(0, (160, 120)))
            end = tuple(int(v) for v in rng.integers(0, (160, 120)))
            cv2.line(strand, start, end, 1, int(rng.integers(1, 3)))
        ratio = rng.integers(100, 160, strand.shape, dtype=np.uint8)
        above = float(rng.uniform(120, 140))
        count, labels = cv2.connectedComponents(strand, connectivity=8)
        expected = np.zeros_like(strand)
        for label in range(1, count):
            piece = (labels == label).view(np.uint8)
            rows, columns = np.nonzero(piece)
            span = max(np.ptp(rows), np.ptp(columns)) + 1
            if span >= neutral_hairs.STRAND_MIN_EXTENT_PX and cv2.mean(
                    ratio, mask=piece)[0] > above:
                expected |= piece
        assert np.array_equal(neutral_hairs.greyer_long_pieces(strand, ratio, above), expected)
