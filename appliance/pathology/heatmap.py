"""Pictures of what the model said and where it looked: tile heatmaps and class activation maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.pathology.tiles import Tile

HEATMAP_MAX_SIDE_PX = 1024
HEATMAP_OPACITY = 0.45


def _colours(probability: np.ndarray) -> np.ndarray:
    """RGB colours of probabilities (blue = MSS, red = MSI), N x 3 uint8."""
    values = np.clip(np.asarray(probability) * 255, 0, 255).astype(np.uint8).reshape(-1, 1)
    bgr = cv2.applyColorMap(values, cv2.COLORMAP_JET).reshape(-1, 3)
    rgb: np.ndarray = bgr[:, ::-1]
    return rgb


def tile_heatmap(
    thumbnail_rgb: np.ndarray, scale: float, tiles: list[Tile], probability: np.ndarray
) -> np.ndarray:
    """The thumbnail with each scored tile tinted by its probability (scale: thumb px per px)."""
    overlay = thumbnail_rgb.copy()
    colours = _colours(probability)
    for tile, colour in zip(tiles, colours, strict=True):
        x0, y0 = round(tile.x_px * scale), round(tile.y_px * scale)
        x1 = round((tile.x_px + tile.size_px) * scale)
        y1 = round((tile.y_px + tile.size_px) * scale)
        overlay[y0:y1, x0:x1] = colour
    blended = cv2.addWeighted(thumbnail_rgb, 1 - HEATMAP_OPACITY, overlay, HEATMAP_OPACITY, 0)
    return _legend(blended)


def _legend(rgb: np.ndarray) -> np.ndarray:
    """A colour bar (MSS 0 to MSI 1) along the bottom."""
    width = rgb.shape[1]
    bar = np.repeat(_colours(np.linspace(0, 1, width))[None], 14, axis=0)
    bar = np.ascontiguousarray(bar)
    cv2.putText(bar, "MSS 0", (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    cv2.putText(bar, "1 MSI", (width - 38, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    return np.vstack([rgb, bar])


def cam_panel(tiles_rgb: np.ndarray, cams: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Tiles (top row) over their class activation maps (bottom row), each captioned."""
    columns = []
    spread = float(np.abs(cams).max()) or 1.0
    for tile, cam, value in zip(tiles_rgb, cams, probability, strict=True):
        size = tile.shape[0]
        heat = cv2.resize(((cam / spread + 1) / 2).astype(np.float32), (size, size),
                          interpolation=cv2.INTER_CUBIC)
        colour = _colours(heat.ravel()).reshape(size, size, 3)
        blended = cv2.addWeighted(tile, 0.5, np.ascontiguousarray(colour), 0.5, 0)
        caption = np.full((16, size, 3), 255, np.uint8)
        cv2.putText(caption, f"p={value:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        columns.append(np.vstack([caption, tile, blended]))
    return np.hstack(columns)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Save an RGB image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the PNG; check the folder is writable")


def heatmap_scale(size_px: tuple[int, int]) -> float:
    """Thumbnail px per working px so the longer side is at most HEATMAP_MAX_SIDE_PX."""
    return min(1.0, HEATMAP_MAX_SIDE_PX / max(size_px))
