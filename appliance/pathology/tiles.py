"""Tissue mask and tiling: which square regions of a slide hold tissue, and their pixels.

The mask follows CLAM (Lu et al., Nat. Biomed. Eng. 2021): Otsu's threshold on the
median-blurred HSV saturation of a thumbnail, closed morphologically, enclosed holes filled.
Otsu needs background to split from tissue; on an image that is all tissue it would cut the
tissue itself in two, so its threshold is clamped to the range where glass ends and stain
begins.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from appliance.pathology.slides import Slide, SlideError

MASK_UM_PER_PX = 2.0
MAX_MASK_PIXELS = 16_000_000
SATURATION_FLOOR = 12
SATURATION_CEILING = 25
CLOSE_UM = 16.0
MAX_HOLE_UM2 = 20_000.0
MIN_TISSUE_FOR_EDGE_FILL = 0.1
GREY_DETAIL_LEVELS = 16  # grey levels between a slide's darkest and brightest 1 %: not blank


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue map of a slide at mask_um_per_px."""

    mask: np.ndarray
    um_per_px: float

    @property
    def tissue_fraction(self) -> float:
        """Share of the slide area that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0


@dataclass(frozen=True)
class Tile:
    """One square region of the working image: grid position, box in px, tissue share."""

    row: int
    col: int
    x_px: int
    y_px: int
    size_px: int
    tissue_fraction: float


def tissue_mask(rgb: np.ndarray, um_per_px: float) -> TissueMask:
    """Tissue map of an RGB thumbnail taken at um_per_px."""
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    saturation = cv2.medianBlur(saturation, 5)
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = float(np.clip(otsu, SATURATION_FLOOR, SATURATION_CEILING))
    mask = saturation > threshold
    close_px = max(1, round(CLOSE_UM / um_per_px))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_px, close_px))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    # Holes cut by the image edge (fat cells of an all-tissue image) count as enclosed when
    # the image holds some tissue; large background stays background either way.
    padded = np.pad(mask, 1, constant_values=bool(mask.mean() > MIN_TISSUE_FOR_EDGE_FILL))
    filled = _fill_small_holes(padded, MAX_HOLE_UM2 / um_per_px**2)[1:-1, 1:-1]
    return TissueMask(filled, um_per_px)


def _fill_small_holes(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    """Fill enclosed background regions smaller than max_hole_px (fat cells, lumens)."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    labels, count = ndimage.label(holes)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    small = sizes < max_hole_px
    small[0] = False
    filled: np.ndarray = mask | small[labels]
    return filled


def slide_tissue_mask(slide: Slide) -> TissueMask:
    """Tissue map of a slide, from a thumbnail at about MASK_UM_PER_PX (at most 16 Mpx)."""
    thumb = _mask_thumbnail(slide)
    thumb_um_per_px = slide.um_per_px * slide.size_px[0] / thumb.shape[1]
    return tissue_mask(thumb, thumb_um_per_px)


def _mask_thumbnail(slide: Slide) -> np.ndarray:
    width, height = slide.size_px
    factor = math.ceil(math.sqrt(width * height / MAX_MASK_PIXELS))
    return slide.thumbnail(max(MASK_UM_PER_PX, slide.um_per_px * factor))


def colourless(slide: Slide) -> bool:
    """Whether the slide shows detail but no colour, as a greyscale scan or export does: the
    mask finds tissue by its stain's saturation, so such a slide has no tissue for it, though
    it is neither blank nor overexposed."""
    hsv = cv2.cvtColor(_mask_thumbnail(slide), cv2.COLOR_RGB2HSV)
    saturation = cv2.medianBlur(hsv[..., 1], 5)
    darkest, brightest = np.percentile(hsv[..., 2], [1, 99])
    return (float(np.percentile(saturation, 99)) <= SATURATION_FLOOR
            and brightest - darkest >= GREY_DETAIL_LEVELS)


def tile_grid(
    slide: Slide, mask: TissueMask, tile_um: float, min_tissue_fraction: float = 0.5
) -> list[Tile]:
    """Non-overlapping tiles of tile_um µm whose tissue share is at least min_tissue_fraction."""
    size_px = round(tile_um / slide.um_per_px)
    width, height = slide.size_px
    if size_px > min(width, height):  # told in the file's pixels, not the reduced image's
        source_width, source_height = slide.source_size_px
        um = slide.source_um_per_px
        raise SlideError(
            f"{slide.path}: the slide is {source_width * um:g}x{source_height * um:g} µm "
            f"({source_width}x{source_height} px at {um:g} µm/px), smaller than one "
            f"{tile_um:g} µm tile; check the slide's µm/px or --tile-um"
        )
    if size_px < 8:
        raise SlideError(
            f"{slide.path}: a {tile_um:g} µm tile is {size_px} px at {slide.um_per_px:.3g} µm/px "
            "(under 8 px); check the slide's µm/px or --tile-um"
        )
    scale = slide.um_per_px / mask.um_per_px
    tiles = []
    for row in range(height // size_px):
        for col in range(width // size_px):
            fraction = _box_fraction(mask.mask, col * size_px * scale, row * size_px * scale,
                                     size_px * scale)
            if fraction >= min_tissue_fraction:
                tiles.append(Tile(row, col, col * size_px, row * size_px, size_px, fraction))
    return tiles


def _box_fraction(mask: np.ndarray, x: float, y: float, size: float) -> float:
    """Mean of the mask over a box given in mask pixels."""
    x0, y0 = int(x), int(y)
    x1, y1 = max(x0 + 1, round(x + size)), max(y0 + 1, round(y + size))
    window = mask[y0:y1, x0:x1]
    return float(window.mean()) if window.size else 0.0


def read_tiles(slide: Slide, tiles: list[Tile], tile_px: int) -> np.ndarray:
    """Pixels of the tiles, resized to tile_px (N x tile_px x tile_px x 3, uint8 RGB)."""
    batch = np.empty((len(tiles), tile_px, tile_px, 3), np.uint8)
    for index, tile in enumerate(tiles):
        box = (tile.x_px, tile.y_px, tile.x_px + tile.size_px, tile.y_px + tile.size_px)
        batch[index] = np.asarray(
            slide.image.resize((tile_px, tile_px), Image.Resampling.BOX, box=box)
        )
    return batch


def batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Consecutive groups of at most batch_size tiles."""
    for start in range(0, len(tiles), batch_size):
        yield tiles[start : start + batch_size]
