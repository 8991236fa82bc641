"""Text on pictures in a real font, so a label in Japanese or with accents is never ``???``.

OpenCV's ``putText`` knows only the ASCII of its Hershey fonts. Captions and titles are drawn
with Pillow's FreeType instead, in Noto Sans CJK (``fonts-noto-cjk``, which the README's set-up
installs): Japanese, Latin with accents and more. Where that file cannot be used the text is
drawn in the font Pillow ships, ASCII only, every other character as ``?``, and the log says so
once.

Text from outside (a model's label, a slide's name) is made safe to draw: control and format
characters (new lines, escapes, bidirectional controls) become ``?``, at most
``MAX_TEXT_CHARS`` are drawn, and ``TextFont.wrap`` breaks text into rows that fit the picture
(a word wider than a row is cut) and at most a given number of rows, the last one ending in an
ellipsis when text was left out.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
MAX_TEXT_CHARS = 400
# categories drawn as "?": controls, format (bidirectional controls too), surrogates, private
# use, unassigned, line and paragraph separators
NOT_DRAWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
RGB = tuple[int, int, int]


@functools.cache
def font_file() -> Path | None:
    """The Noto font file when it can be used; None (said once in the log) when not."""
    try:
        ImageFont.truetype(str(NOTO_CJK), 12)
    except (OSError, ImportError) as exc:  # missing, unreadable; Pillow without FreeType
        log.warning("picture text: font %s cannot be used (%s); drawing with Pillow's own "
                    "font, ASCII only, other characters as '?' (install fonts-noto-cjk)",
                    NOTO_CJK, exc)
        return None
    return NOTO_CJK


@dataclass(frozen=True)
class TextFont:
    """One font at one size, and whether it draws ASCII only (Pillow's own font)."""

    face: ImageFont.FreeTypeFont | ImageFont.ImageFont
    ascii_only: bool

    @property
    def ellipsis(self) -> str:
        """What ends a row when text was left out."""
        return "..." if self.ascii_only else "\u2026"

    def drawable(self, text: str) -> str:
        """``text`` as it will be drawn: cut to MAX_TEXT_CHARS, what cannot be drawn as ``?``
        (an ellipsis that cut a label, as ``...`` in ASCII)."""
        text = text[:MAX_TEXT_CHARS]
        if self.ascii_only:
            text = text.replace("\u2026", self.ellipsis)
        return "".join(
            "?" if unicodedata.category(char) in NOT_DRAWN or (self.ascii_only and char > "~")
            else char for char in text)

    def ink_px(self) -> tuple[int, int]:
        """Where a row's letters reach, above and below, measured from the top it is drawn
        at (capitals, descenders and Japanese)."""
        box = self.face.getbbox("Hg\u7d30" if not self.ascii_only else "Hg")
        return int(box[1]), int(box[3])

    def width_px(self, text: str) -> float:
        """How wide ``text`` (already drawable) is drawn."""
        return float(self.face.getlength(text))

    def cut(self, text: str, width_px: float) -> str:
        """The longest start of ``text`` that fits ``width_px`` (at least one character)."""
        low, high = 1, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self.width_px(text[:middle]) <= width_px:
                low = middle
            else:
                high = middle - 1
        return text[:low]

    def wrap(self, text: str, width_px: float, max_rows: int) -> list[str]:
        """``text`` broken at spaces (and inside a word too wide) into at most ``max_rows``
        rows that each fit ``width_px``; the last ends in an ellipsis when text was left out."""
        rows: list[str] = []
        for word in self.drawable(text).split(" "):
            joined = f"{rows[-1]} {word}" if rows else word
            if rows and self.width_px(joined) <= width_px:
                rows[-1] = joined
            else:
                rows.extend(self._pieces(word, width_px, max_rows))
            if len(rows) > max_rows:
                return self._ellipsized(rows[:max_rows], width_px)
        return rows

    def _pieces(self, word: str, width_px: float, most: int) -> list[str]:
        """``word`` cut into pieces that fit ``width_px``, at most ``most`` of them and then
        the rest (which may not fit)."""
        pieces: list[str] = []
        rest = word
        while len(pieces) < most and len(rest) > 1 and self.width_px(rest) > width_px:
            pieces.append(self.cut(rest, width_px))
            rest = rest[len(pieces[-1]):]
        return [*pieces, rest]

    def _ellipsized(self, rows: list[str], width_px: float) -> list[str]:
        room = width_px - self.width_px(self.ellipsis)
        return [*rows[:-1], self.cut(rows[-1], room) + self.ellipsis]


@functools.cache
def text_font(size_px: int) -> TextFont:
    """The picture font at ``size_px`` (Noto; Pillow's own, ASCII only, without it)."""
    path = font_file()
    if path is not None:
        return TextFont(ImageFont.truetype(str(path), size_px), ascii_only=False)
    try:
        face = ImageFont.load_default(size_px)
    except TypeError:  # Pillow 10.0 (pyproject allows it): its bitmap font, one size only
        face = ImageFont.load_default()
    return TextFont(face, ascii_only=True)


def draw_rows(canvas: np.ndarray, rows: Sequence[str], font: TextFont, *, left_px: int,
              top_px: int, line_px: int, rgb: RGB) -> None:
    """Draw rows (from ``wrap`` or ``drawable``) on an RGB picture in place, the first with its
    top at ``top_px``, each next one ``line_px`` lower."""
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for number, row in enumerate(rows):
        draw.text((left_px, top_px + number * line_px), row, fill=rgb, font=font.face)
    canvas[...] = np.asarray(picture)
