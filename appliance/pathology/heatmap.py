"""Pictures of what the model said and where it looked: tile heatmaps and class activation maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.imagefile import write_image
from appliance.imagetext import draw_rows, text_font
from appliance.pathology.tiles import Tile

HEATMAP_MAX_SIDE_PX = 1024
HEATMAP_OPACITY = 0.45
MIN_PICTURE_WIDTH_PX = 480  # room for the title and the legend's words
CAM_TILE_PX = 256  # a 64 px model tile drawn 4x, large enough to see its tissue
_FONT = cv2.FONT_HERSHEY_SIMPLEX  # the legend's and the maps' numbers (ASCII)
TITLE_TEXT_PX = (18, 16, 14, 12)  # the largest that fits the width; at the smallest, cut
# A tile unlike the model's training data gets no p(MSI) colour: grey stripes, 4 px wide
UNLIKE_STRIPE_PX = 4
UNLIKE_DARK, UNLIKE_LIGHT = (90, 90, 90), (215, 215, 215)
UNLIKE_NOTE = "grey stripes: tile unlike the model's training data (its p(MSI) not shown)"


def _colours(probability: np.ndarray) -> np.ndarray:
    """RGB colours of probabilities (blue = MSS, red = MSI), N x 3 uint8."""
    values = np.clip(np.asarray(probability) * 255, 0, 255).astype(np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(values, cv2.COLORMAP_JET).reshape(-1, 3)
    rgb: np.ndarray = bgr[:, ::-1]
    return rgb


def tile_heatmap(
    thumbnail_rgb: np.ndarray, scale: float, tiles: list[Tile], probability: np.ndarray,
    title: str = "", *, unlike: np.ndarray | None = None, note: str = "",
) -> np.ndarray:
    """The thumbnail with each scored tile tinted by its probability (scale: thumb px per px),
    a title line above (slide, score, label) and a colour legend with ticks below, and
    ``note`` under it where given.

    A tile marked in ``unlike`` (unlike the model's training data, docs/pathology-ood.md) is
    striped grey instead: the model has no say there, and a red or blue tint would show a
    confident answer the slide's label withholds; a note under the legend says so."""
    overlay = thumbnail_rgb.copy()
    colours = _colours(probability)
    marked = np.zeros(len(tiles), bool) if unlike is None else np.asarray(unlike, bool)
    stripes = _stripes(thumbnail_rgb.shape[:2])
    for tile, colour, striped in zip(tiles, colours, marked, strict=True):
        x0, y0 = round(tile.x_px * scale), round(tile.y_px * scale)
        x1 = round((tile.x_px + tile.size_px) * scale)
        y1 = round((tile.y_px + tile.size_px) * scale)
        overlay[y0:y1, x0:x1] = stripes[y0:y1, x0:x1] if striped else colour
    blended = cv2.addWeighted(thumbnail_rgb, 1 - HEATMAP_OPACITY, overlay, HEATMAP_OPACITY, 0)
    width = max(blended.shape[1], MIN_PICTURE_WIDTH_PX)
    notes = [UNLIKE_NOTE] * bool(marked.any()) + [note] * bool(note)
    return np.vstack([_text_band(title, width), _pad_width(blended, width), _legend(width),
                      *(_text_band(text, width, 28) for text in notes)])


def _stripes(shape: tuple[int, ...]) -> np.ndarray:
    """Diagonal grey stripes of the given height and width (RGB)."""
    rows, columns = np.indices(shape[:2])
    dark = ((rows + columns) // UNLIKE_STRIPE_PX) % 2 == 0
    return np.where(dark[..., None], np.array(UNLIKE_DARK, np.uint8),
                    np.array(UNLIKE_LIGHT, np.uint8))


def _text_band(text: str, width: int, height: int = 34) -> np.ndarray:
    """Black text on white, one line, in a real font (a slide's name in any language), in the
    largest size that fits the width; at the smallest, cut to it."""
    band = np.full((height, width, 3), 255, np.uint8)
    for size_px in TITLE_TEXT_PX:
        font = text_font(size_px)
        ink_top, ink_bottom = font.ink_px()
        row = font.wrap(text, width - 12, 1)[0]
        if ink_bottom - ink_top <= height - 2 and row == font.drawable(text):
            break
    top_px = (height - (ink_bottom - ink_top)) // 2 - ink_top
    draw_rows(band, [row], font, left_px=6, top_px=top_px, line_px=0, rgb=(0, 0, 0))
    return band


def _pad_width(rgb: np.ndarray, width: int) -> np.ndarray:
    extra = width - rgb.shape[1]
    return np.pad(rgb, ((0, 0), (0, extra), (0, 0)), constant_values=255) if extra else rgb


def _legend(width: int) -> np.ndarray:
    """A colour bar of tile p(MSI) from 0 (MSS) to 1 (MSI), with ticks and a caption."""
    margin = 40
    bar_width = width - 2 * margin
    band = np.full((64, width, 3), 255, np.uint8)
    band[6:24, margin : margin + bar_width] = _colours(np.linspace(0, 1, bar_width))[None]
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = margin + round(value * (bar_width - 1))
        cv2.line(band, (x, 24), (x, 30), (0, 0, 0), 1)
        label = f"{value:g}"
        cv2.putText(band, label, (x - 5 * len(label), 42), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(band, "tile p(MSI): 0 = MSS (blue) ... 1 = MSI (red)", (margin, 59), _FONT,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def cam_panel(
    tiles_rgb: np.ndarray, cams: np.ndarray, probability: np.ndarray, title: str = ""
) -> np.ndarray:
    """One row per decisive tile: the tile, beside it the tile under its class activation map.

    The network's 4x4 CAM has a strong centre bias common to every tile (padding), so each map
    shows its cells relative to the panel's mean pattern: red where this tile gives more MSI
    evidence than the model usually does there, blue where less; each cell also prints its raw
    value. Maps therefore differ where the tissue does."""
    relative = _relative_cams(cams)
    spread = float(np.abs(relative).max()) or 1.0
    rows = [_cam_row(tile, cam, rel / spread, value)
            for tile, cam, rel, value in zip(tiles_rgb, cams, relative, probability, strict=True)]
    width = rows[0].shape[1]
    note = "red: more MSI evidence than usual here, blue: less; numbers: raw CAM"
    return np.vstack([_text_band(title, width), *rows, _text_band(note, width, 28)])


def _relative_cams(cams: np.ndarray) -> np.ndarray:
    """Each CAM over its own mean, minus the panel's mean of that (the shared centre bias);
    a lone tile has no panel to compare with, so its map is its own deviation from its mean."""
    levels = np.abs(cams).mean(axis=(1, 2), keepdims=True)
    shaped = cams / np.maximum(levels, 1e-6)
    usual = shaped.mean(axis=0, keepdims=True) if len(cams) > 1 else shaped.mean(
        axis=(1, 2), keepdims=True)
    relative: np.ndarray = shaped - usual
    return relative


def _cam_row(tile: np.ndarray, cam: np.ndarray, relative: np.ndarray, value: float) -> np.ndarray:
    size = CAM_TILE_PX
    big = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize(((relative + 1) / 2).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_NEAREST)
    colour = np.ascontiguousarray(_colours(heat.ravel()).reshape(size, size, 3))
    mapped = cv2.addWeighted(big, 0.4, colour, 0.6, 0)
    cell = size // cam.shape[0]
    for (row, column), raw in np.ndenumerate(cam):
        cv2.putText(mapped, f"{raw:.1f}", (column * cell + 6, row * cell + cell // 2 + 5), _FONT,
                    0.45, (255, 255, 255), 1, cv2.LINE_AA)
    caption = _text_band(f"p(MSI) = {value:.2f}", size, 24)
    gap = np.full((size + 24, 8, 3), 255, np.uint8)
    return np.hstack([np.vstack([caption, big]), gap,
                      np.vstack([_text_band("its CAM", size, 24), mapped])])


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Save an RGB image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def heatmap_scale(size_px: tuple[int, int]) -> float:
    """Thumbnail px per working px so the longer side is at most HEATMAP_MAX_SIDE_PX."""
    return min(1.0, HEATMAP_MAX_SIDE_PX / max(size_px))
