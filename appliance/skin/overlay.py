"""The overlay: furrow centre lines traced, hills tinted, pores circled, and the numbers.

``draw_markings`` is the frame with the markings alone: the kiosk screen's picture, whose page
says every number in the customer's language. ``draw_overlay`` adds the caption band below it
(the key numbers and the grade, in English): the picture ``appliance analyze --overlay`` writes
for whoever reads the file away from the page. The caption is drawn in a real font
(``appliance.imagetext``), so a grade a model names in Japanese or with accents reads as it is
named.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.imagetext import draw_rows, text_font
from appliance.skin.analysis import SkinAnalysis

FURROW_RGB = (40, 220, 255)
PORE_RGB = (255, 60, 200)
TEXT_RGB = (255, 255, 255)
HILL_TINT_ALPHA = 0.28
TINT_BAND_ROWS = 120  # rows blended at a time (1280x120: 1.8 MB a float image)
CAPTION_LINE_PX = 32
CAPTION_TEXT_PX = 24
CAPTION_MARGIN_PX = 12
MAX_ROWS_PER_LINE = 4  # a caption line longer than this many rows ends in an ellipsis
MAX_LABEL_CHARS = 48  # a model's grade label, cut so that the kime score stays in its line


def _hill_palette(count: int) -> np.ndarray:
    """A fixed, varied colour per hill label (label 0 gets black, never drawn)."""
    rng = np.random.default_rng(7)
    palette = rng.integers(60, 256, size=(max(count, 1), 3)).astype(np.float32)
    palette[0] = 0
    return palette


def _tint_hills(rgb: np.ndarray, analysis: SkinAnalysis) -> np.ndarray:
    """The frame blended with its hills' colours, a band of rows at a time: the blend's
    float images then stay a band's size, not four of the frame's (60 MB at 1280x960, which
    the drawing thread's malloc arena would keep for good)."""
    cells = analysis.texture.hill_labels
    tint = _hill_palette(int(cells.max()) + 1).astype(np.uint8)[cells]  # whole numbers
    tint_full = cv2.resize(tint, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    tinted = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], TINT_BAND_ROWS):
        rows = slice(top, top + TINT_BAND_ROWS)
        mixed = (rgb[rows].astype(np.float32) * (1.0 - HILL_TINT_ALPHA)
                 + tint_full[rows].astype(np.float32) * HILL_TINT_ALPHA)
        tinted[rows] = np.clip(mixed, 0, 255)  # cut to uint8 as astype does
    return tinted


def _trace_furrows(canvas: np.ndarray, analysis: SkinAnalysis) -> None:
    lines = analysis.texture.centre_lines.astype(np.uint8)
    full = cv2.resize(lines, (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_NEAREST)
    thin = cv2.erode(full, np.ones((2, 2), np.uint8)) > 0
    canvas[thin] = FURROW_RGB


def _circle_pores(canvas: np.ndarray, analysis: SkinAnalysis) -> None:
    for (x, y), diameter_um in zip(
        analysis.pore_centres_frame_px(), analysis.pores.diameters_um, strict=True
    ):
        centre = (round(x), round(y))
        radius = max(3, round(diameter_um / analysis.um_per_px / 2.0) + 2)
        cv2.circle(canvas, centre, radius, PORE_RGB, 2, cv2.LINE_AA)


NOT_MEASURED = "n/m"
NOT_MEASURED_LEGEND = "n/m = not measured"  # then why (``not_measured_legend``)
# what the caption calls each feature when it says which ones a withheld grade needed
PLAIN_NAMES = {
    "kime_score": "kime score", "hill_density_per_mm2": "hills",
    "hill_mean_area_mm2": "hill size", "furrow_density_mm_per_mm2": "furrows",
    "furrow_mean_width_um": "furrow width", "furrow_anisotropy": "furrow direction",
    "pore_count": "pores", "pore_density_per_cm2": "pore density",
    "pore_mean_diameter_um": "pore size", "pore_area_ratio": "pore area",
}


def _shown(analysis: SkinAnalysis, key: str, spec: str, unit: str = "") -> str:
    """One number with its unit, or ``n/m`` when the feature is outside the validated range."""
    if key in analysis.validity.not_validated:
        return NOT_MEASURED
    return format(getattr(analysis.features, key), spec) + unit


def not_measured_legend(analysis: SkinAnalysis) -> str:
    """What ``n/m`` means on this picture: not measured, and why (the validity's reasons: the
    range this kiosk is validated for, or a pore count that hangs on narrow margins)."""
    validity = analysis.validity  # a frame outside the range: that alone (the rest follows)
    reasons = validity.frame_reasons if validity.frame_outside else validity.reasons
    return f"{NOT_MEASURED_LEGEND}: {'; '.join(reasons)}" if reasons else NOT_MEASURED_LEGEND


def _grade_words(grade: str | None, withheld_for: tuple[str, ...] | None) -> str:
    if grade is not None:
        return grade if len(grade) <= MAX_LABEL_CHARS else grade[:MAX_LABEL_CHARS - 1] + "\u2026"
    return "not given" if withheld_for is not None else "- (not classified)"


def why_not_graded(analysis: SkinAnalysis, withheld_for: tuple[str, ...]) -> str:
    """Why the grade was withheld, in plain words: the frame as a whole is outside the
    validated range (and how), or the features the grade needs were not measured."""
    if analysis.validity.frame_outside:
        return ("grade not given: this picture is outside the range this kiosk is validated "
                "for (" + "; ".join(analysis.validity.frame_reasons) + ")")
    names = [PLAIN_NAMES.get(key, key.replace("_", " ")) for key in withheld_for]
    return "grade not given: " + ", ".join(names) + " not measured"


def caption_lines(
    analysis: SkinAnalysis, grade: str | None = None, withheld_for: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """The caption's text: key numbers and grade; a feature outside the validated range reads
    "not measured" (``n/m`` where a line is short of room, explained on a last line), and a
    withheld grade (``withheld_for``: the model's inputs that were not measured) says why."""
    kime = ("not measured" if "kime_score" in analysis.validity.not_validated
            else _shown(analysis, "kime_score", ".0f", "/100"))
    lines: tuple[str, ...] = (
        f"grade {_grade_words(grade, withheld_for)}   kime score {kime}",
        f"hills {_shown(analysis, 'hill_density_per_mm2', '.1f', '/mm2')}, "
        f"mean {_shown(analysis, 'hill_mean_area_mm2', '.3f', ' mm2')};  "
        f"furrows {_shown(analysis, 'furrow_density_mm_per_mm2', '.1f', ' mm/mm2')}, "
        f"width {_shown(analysis, 'furrow_mean_width_um', '.0f', ' um')}",
        f"pores {_shown(analysis, 'pore_count', 'd')} "
        f"({_shown(analysis, 'pore_density_per_cm2', '.0f', '/cm2')}), "
        f"mean {_shown(analysis, 'pore_mean_diameter_um', '.0f', ' um')}",
    )
    if grade is None and withheld_for is not None:
        lines = (*lines, why_not_graded(analysis, withheld_for))
    shortened = any(NOT_MEASURED in line for line in lines[1:3])
    return (*lines, not_measured_legend(analysis)) if shortened else lines


def caption_band(
    analysis: SkinAnalysis, width_px: int, grade: str | None = None,
    withheld_for: tuple[str, ...] | None = None,
) -> np.ndarray:
    """The key numbers and the texture grade on a dark band drawn below the frame (never on it),
    each line wrapped to the frame's width."""
    font = text_font(CAPTION_TEXT_PX)
    rows = [row for line in caption_lines(analysis, grade, withheld_for)
            for row in font.wrap(line, width_px - 2 * CAPTION_MARGIN_PX, MAX_ROWS_PER_LINE)]
    band = np.zeros((CAPTION_LINE_PX * len(rows) + 14, width_px, 3), np.uint8)
    ink_top, ink_bottom = font.ink_px()  # each row's letters centred in its line
    top_px = 7 + (CAPTION_LINE_PX - (ink_bottom - ink_top)) // 2 - ink_top
    draw_rows(band, rows, font, left_px=CAPTION_MARGIN_PX, top_px=top_px,
              line_px=CAPTION_LINE_PX, rgb=TEXT_RGB)
    return band


def draw_overlay(
    rgb: np.ndarray, analysis: SkinAnalysis, grade: str | None = None,
    withheld_for: tuple[str, ...] | None = None,
) -> np.ndarray:
    """The marked frame with the key numbers and the grade (or why it was withheld) on a band
    below it (the whole frame stays visible)."""
    canvas = draw_markings(rgb, analysis)
    return np.vstack([canvas, caption_band(analysis, canvas.shape[1], grade, withheld_for)])


def draw_markings(rgb: np.ndarray, analysis: SkinAnalysis) -> np.ndarray:
    """The frame, its own size, with hills tinted, furrow centre lines traced and pores circled."""
    canvas = _tint_hills(rgb, analysis)
    _trace_furrows(canvas, analysis)
    _circle_pores(canvas, analysis)
    return canvas
