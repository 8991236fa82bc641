"""Text on pictures: a real font for every language, safe with hostile text, and without the
font a plain ASCII fallback that is said once, never a crash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance import imagetext
from appliance.imagetext import draw_rows, text_font
from appliance.skin.analysis import analyze
from appliance.skin.overlay import MAX_LABEL_CHARS, caption_lines


def _drawn(text: str, size_px: int = 22) -> np.ndarray:
    canvas = np.zeros((40, 400, 3), np.uint8)
    font = text_font(size_px)
    draw_rows(canvas, [font.drawable(text)], font, left_px=4, top_px=4, line_px=0,
              rgb=(255, 255, 255))
    return canvas


def test_control_and_format_characters_are_drawn_as_question_marks() -> None:
    font = text_font(22)
    assert font.drawable("a\nb\r\t\x00\x1b\u202ec\u2028d") == "a?b?????c?d"
    assert font.drawable("細かい, très fin") == "細かい, très fin"
    assert len(font.drawable("x" * 100_000)) == imagetext.MAX_TEXT_CHARS


def test_text_is_wrapped_to_the_width_cut_inside_a_word_and_ends_in_an_ellipsis() -> None:
    font = text_font(22)
    rows = font.wrap("grade " + "細" * 200 + " kime", 300, 3)
    assert len(rows) == 3
    assert all(font.width_px(row) <= 300 for row in rows)
    assert rows[0].startswith("grade")
    assert rows[-1].endswith("\u2026")
    assert font.wrap("fine   kime score 61/100", 1000, 2) == ["fine   kime score 61/100"]


@pytest.fixture
def without_noto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    missing = tmp_path / "no-such-font.ttc"  # a name Pillow finds in no font folder
    monkeypatch.setattr(imagetext, "NOTO_CJK", missing)
    imagetext.font_file.cache_clear()
    imagetext.text_font.cache_clear()
    try:
        yield missing
    finally:  # the next test draws with the real font again
        imagetext.font_file.cache_clear()
        imagetext.text_font.cache_clear()


def test_without_the_font_text_is_ascii_with_question_marks_and_said_once(
    without_noto: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.imagetext")
    japanese = _drawn("grade 細かい", 22)
    assert np.array_equal(japanese, _drawn("grade ???", 22))  # drawn, as '?'
    assert (japanese > 128).sum() > 50
    _drawn("très fin", 16)  # another size: nothing more said
    said = [r.getMessage() for r in caplog.records if str(without_noto) in r.getMessage()]
    assert len(said) == 1
    assert "fonts-noto-cjk" in said[0]
    assert text_font(22).wrap("x" * 500, 200, 2)[-1].endswith("...")


def test_without_the_font_a_label_cut_short_ends_in_three_dots_not_a_question_mark(
    without_noto: Path,
) -> None:
    # overlay._grade_words cuts a long grade label with "\u2026", which Pillow's own font
    # cannot draw: the kiosk's caption read "grade very fine and eve?"
    font = text_font(22)
    assert font.drawable("very fine and even\u2026") == "very fine and even..."
    label = "very fine and even texture " * 4
    analysis = analyze(np.full((96, 128, 3), 128, np.uint8), 10.0)
    grade_line = caption_lines(analysis, grade=label)[0]
    drawn = font.drawable(grade_line)
    assert f"grade {label[:MAX_LABEL_CHARS - 1]}..." in drawn
    assert "?" not in drawn
