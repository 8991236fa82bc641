"""The overlay's caption says "not measured" for features outside the validated range."""

from __future__ import annotations

import dataclasses
import re
import tracemalloc
from functools import lru_cache

import cv2
import numpy as np
import pytest

from appliance.imagetext import text_font
from appliance.skin import overlay
from appliance.skin.analysis import SkinAnalysis, analyze
from appliance.skin.overlay import (
    CAPTION_LINE_PX,
    CAPTION_MARGIN_PX,
    CAPTION_TEXT_PX,
    MAX_ROWS_PER_LINE,
    NOT_MEASURED_LEGEND,
    caption_band,
    caption_lines,
    draw_markings,
    draw_overlay,
)
from tests.skin_frames import generated


@lru_cache(maxsize=1)
def _rgb() -> np.ndarray:
    rgb: np.ndarray = generated(4, 0, "normal").image_rgb
    return rgb


@lru_cache(maxsize=2)
def _analysis(um_per_px: float) -> SkinAnalysis:
    return analyze(_rgb(), um_per_px)


def test_a_frame_at_30_um_per_px_shows_no_texture_or_pore_number() -> None:
    analysis = _analysis(30.0)  # outside 7-13 µm/px: every texture and pore feature
    lines = caption_lines(analysis)
    assert lines[0] == "grade - (not classified)   kime score not measured"
    assert lines[1] == "hills n/m, mean n/m;  furrows n/m, width n/m"
    assert lines[2] == "pores n/m (n/m), mean n/m"
    # what n/m means, and why, is on the picture itself
    assert lines[3] == "n/m = not measured: scale 30.00 um/px outside 7-13"
    assert not any(re.search(r"\d", line) for line in lines[:3])


def test_a_frame_inside_the_range_shows_its_numbers_and_no_legend() -> None:
    analysis = _analysis(10.0)
    features = analysis.features
    lines = caption_lines(analysis, "fine")
    assert lines[0] == f"grade fine   kime score {features.kime_score:.0f}/100"
    assert f"hills {features.hill_density_per_mm2:.1f}/mm2" in lines[1]
    assert lines[2].startswith(f"pores {features.pore_count} (")
    assert len(lines) == 3


def test_only_the_flagged_features_read_n_m() -> None:
    inside = _analysis(10.0)
    pores_unsure = dataclasses.replace(inside, validity=dataclasses.replace(
        inside.validity, not_validated=("pore_mean_diameter_um", "pore_area_ratio"),
        reasons=("pore size 12 um outside 50-320",)))
    lines = caption_lines(pores_unsure)
    assert lines[2] == (f"pores {inside.features.pore_count} "
                        f"({inside.features.pore_density_per_cm2:.0f}/cm2), mean n/m")
    assert "n/m" not in lines[0] + lines[1]
    assert lines[-1] == "n/m = not measured: pore size 12 um outside 50-320"


def test_a_borderline_count_is_not_called_outside_the_validated_range() -> None:
    """The legend gives the result's own reason: a count on narrow margins is not a frame
    outside the range the kiosk is validated for."""
    inside = _analysis(10.0)
    reason = "pore count borderline: 40% of the pores pass by under 5% (at most 20%)"
    borderline = dataclasses.replace(inside, validity=dataclasses.replace(
        inside.validity, not_validated=("pore_count", "pore_density_per_cm2"),
        reasons=(reason,)))
    legend = caption_lines(borderline)[-1]
    assert legend == f"{NOT_MEASURED_LEGEND}: {reason}"
    assert "validated for" not in legend


def test_the_band_below_the_frame_has_room_for_the_legend() -> None:
    outside, inside = _analysis(30.0), _analysis(10.0)
    height = _rgb().shape[0]
    band_outside = draw_overlay(_rgb(), outside)[height:]
    band_inside = draw_overlay(_rgb(), inside)[height:]
    assert band_outside.shape[0] > band_inside.shape[0]  # one more line: the legend
    assert band_outside[-40:].any()  # and it is drawn, not left blank


def test_the_marked_frame_is_the_overlay_without_its_band() -> None:
    """The kiosk screen's picture: the same markings as the exported overlay, no text below."""
    analysis = _analysis(10.0)
    marked = draw_markings(_rgb(), analysis)
    assert marked.shape == _rgb().shape
    assert not np.array_equal(marked, _rgb())  # hills, furrows and pores are marked on it
    assert np.array_equal(draw_overlay(_rgb(), analysis, "fine")[: _rgb().shape[0]], marked)


TEXTURE = ("furrow_density_mm_per_mm2", "hill_density_per_mm2", "hill_mean_area_mm2",
           "furrow_mean_width_um", "furrow_anisotropy", "kime_score")


def _texture_unsure() -> SkinAnalysis:
    inside = _analysis(10.0)
    return dataclasses.replace(inside, validity=dataclasses.replace(
        inside.validity, not_validated=TEXTURE, reasons=("hill size 0.300 mm2 outside 0.03-0.25",)))


def test_a_withheld_grade_names_the_features_it_needed_in_plain_words() -> None:
    lines = caption_lines(_texture_unsure(), None, TEXTURE)
    assert lines[0] == "grade not given   kime score not measured"
    assert lines[3] == ("grade not given: furrows, hills, hill size, furrow width, "
                        "furrow direction, kime score not measured")
    assert lines[4] == "n/m = not measured: hill size 0.300 mm2 outside 0.03-0.25"
    assert not any("_" in line for line in lines)  # no feature keys, only words


def test_a_frame_outside_the_range_says_so_instead_of_listing_every_feature() -> None:
    lines = caption_lines(_analysis(30.0), None, ("pore_count", "kime_score"))
    assert lines[0] == "grade not given   kime score not measured"
    assert lines[3] == ("grade not given: this picture is outside the range this kiosk is "
                        "validated for (scale 30.00 um/px outside 7-13)")


def test_no_model_is_not_a_withheld_grade() -> None:
    lines = caption_lines(_texture_unsure())  # nothing withheld: the kiosk has no model
    assert lines[0] == "grade - (not classified)   kime score not measured"
    assert not any(line.startswith("grade not given") for line in lines)


def test_a_long_reason_wraps_inside_the_band() -> None:
    pores_too = (*TEXTURE, "pore_mean_diameter_um", "pore_area_ratio")
    analysis = dataclasses.replace(_texture_unsure(), validity=dataclasses.replace(
        _texture_unsure().validity, not_validated=pores_too))
    lines = caption_lines(analysis, None, pores_too)
    band = caption_band(analysis, 640, None, pores_too)  # a frame 640 px wide
    assert band.shape[0] > CAPTION_LINE_PX * len(lines) + 14  # the reason wraps
    assert not band[:, -8:].any()  # and no text runs off the right edge


def _label_box(grade: str) -> tuple[slice, slice]:
    """Where the grade's label lies on the caption's first row."""
    font = text_font(CAPTION_TEXT_PX)
    left = CAPTION_MARGIN_PX + round(font.width_px("grade "))
    right = CAPTION_MARGIN_PX + round(font.width_px(f"grade {grade}"))
    return slice(0, CAPTION_LINE_PX + 10), slice(left, right)


def _differ(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two pictures of text differ by more than a few edge pixels."""
    return int((np.abs(first.astype(int) - second).max(axis=2) > 128).sum()) > 30


@pytest.mark.parametrize(("label", "other"),
                         [("きめ細かい", "きめ粗いよ"), ("très fin", "trøs fin")])
def test_a_grade_named_in_japanese_or_with_accents_is_drawn_in_its_own_letters(
    label: str, other: str
) -> None:
    analysis = _analysis(10.0)
    box = _label_box(label)
    drawn = caption_band(analysis, 1280, label)[box]
    assert (drawn.max(axis=2) > 128).sum() > 30  # letters in the label's box
    assert _differ(drawn, caption_band(analysis, 1280, other)[box])  # each its own glyphs
    assert _differ(drawn, caption_band(analysis, 1280, "?" * len(label))[box])  # not '?'


@pytest.mark.parametrize("label", [
    "x" * 5000,  # one word wider than any picture
    "fine\n\r\t\x00\x1b[31m\u202eevil" + " coarse" * 3000,  # controls, then very long
    "細" * 3000,  # Japanese has no spaces to break at
])
def test_a_hostile_grade_label_stays_inside_the_picture(label: str) -> None:
    analysis = _analysis(10.0)
    lines = caption_lines(analysis, label)
    kime = caption_lines(analysis, "fine")[0].split("   ")[1]  # "kime score 61/100"
    assert lines[0].endswith(kime)  # the label never pushes the score out of its line
    overlay = draw_overlay(_rgb(), analysis, label)
    band = overlay[_rgb().shape[0]:]
    assert overlay.shape[1] == _rgb().shape[1]
    assert band.shape[0] <= CAPTION_LINE_PX * MAX_ROWS_PER_LINE * len(lines) + 14
    assert not band[:, -8:].any()  # no text runs off the right edge
    assert not band[-3:].any()  # nor off the bottom


def test_the_hills_are_tinted_as_the_blend_of_frame_and_palette() -> None:
    """Each pixel 72 % frame, 28 % its hill's colour, in float32, cut to uint8."""
    analysis = _analysis(10.0)
    rgb = _rgb()
    marked = draw_markings(rgb, analysis)
    cells = analysis.texture.hill_labels
    palette = overlay._hill_palette(int(cells.max()) + 1)  # noqa: SLF001 - the colours drawn
    tint = cv2.resize(palette[cells], (rgb.shape[1], rgb.shape[0]),
                      interpolation=cv2.INTER_NEAREST)
    alpha = overlay.HILL_TINT_ALPHA
    blend = rgb.astype(np.float32) * (1.0 - alpha) + tint * alpha
    expected = np.clip(blend, 0, 255).astype(np.uint8)
    untouched = (marked == expected).all(axis=2)  # furrow lines and pore circles drawn over it
    assert untouched.mean() > 0.8
    assert np.array_equal(marked[untouched], expected[untouched])


def test_the_markings_are_drawn_without_frame_sized_float_images() -> None:
    """The kiosk screen's thread draws them after each result, and its malloc arena keeps
    what the drawing peaked at: the blend stays under two float copies of the frame (it held
    four, 52 MB at 1280x960)."""
    analysis = _analysis(10.0)
    rgb = _rgb()
    draw_markings(rgb, analysis)  # first call: the font and palette made once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        draw_markings(rgb, analysis)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert rgb.shape == (960, 1280, 3)
    assert peak < 2 * rgb.size * np.dtype(np.float32).itemsize
