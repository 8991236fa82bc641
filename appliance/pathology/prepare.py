"""From a slide file to normalised model-ready tiles: read, mask, tile, fit stains, normalise.

Training (models/pathology/train.py) and inference (``appliance pathology run``) both go through
here, so the model sees tiles prepared exactly as they were in training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from appliance.config.pathology import DEFAULT_MAX_TILE_BYTES
from appliance.pathology.slides import Slide, SlideError, read_slide
from appliance.pathology.stain import (
    REFERENCE,
    StainError,
    StainModel,
    fit_stain_model,
    normalize_stain,
    stain_concentrations,
)
from appliance.pathology.tiles import (
    Tile,
    TissueMask,
    colourless,
    read_tiles,
    slide_tissue_mask,
    tile_grid,
)

# A tile counts as a candidate tumour tile when at least this share of its pixels carries nuclear
# hematoxylin (concentration above TUMOUR_HEMATOXYLIN in reference units): tumour sheets and
# glands are crowded with nuclei, fat and mucus are not (stroma and lymphocytes can pass).
TUMOUR_HEMATOXYLIN = 0.9
STAIN_FIT_PIXELS = 1_000_000
TUMOUR_NUCLEAR_SHARE = 0.07
# Tissue on at least this share of a slide is there, only too sparse for a tile: not blank
SPARSE_TISSUE_FRACTION = 0.01


@dataclass(frozen=True)
class TileSettings:
    """How tiles are cut and prepared for a model."""

    tile_px: int
    tile_um: float
    min_tissue_fraction: float = 0.5
    normalize: bool = True
    tumour_only: bool = False
    reference: StainModel = field(default=REFERENCE)
    max_tile_bytes: int = DEFAULT_MAX_TILE_BYTES  # pathology.max_tile_bytes

    @property
    def um_per_px(self) -> float:
        """Resolution of a prepared tile."""
        return self.tile_um / self.tile_px


@dataclass
class PreparedSlide:
    """A slide with its tissue mask, tiles and fitted stain model."""

    slide: Slide
    mask: TissueMask
    tiles: list[Tile]
    stain: StainModel | None

    def close(self) -> None:
        """Release the slide's pixels."""
        self.slide.close()


def prepare_slide(path: Path, um_per_px: float, settings: TileSettings,
                  roots: Sequence[Path] = ()) -> PreparedSlide:
    """Read a slide (inside ``roots``, when given), find its tissue tiles and fit its stains;
    SlideError when unusable."""
    slide = read_slide(path, um_per_px, settings.um_per_px, roots)
    try:
        mask = slide_tissue_mask(slide)
        tiles = tile_grid(slide, mask, settings.tile_um, settings.min_tissue_fraction)
        _check_tile_bytes(slide, len(tiles), settings)
        if not tiles:
            raise SlideError(f"{path}: {_no_tissue_problem(slide, mask, settings)}")
        stain = _fit_slide_stains(slide, mask) if settings.normalize else None
    except Exception:
        slide.close()
        raise
    return PreparedSlide(slide, mask, tiles, stain)


def _check_tile_bytes(slide: Slide, count: int, settings: TileSettings) -> None:
    """Refuse a slide whose tiles would take more than settings.max_tile_bytes, once its grid
    is known and before any tile is read: a model whose tiles are finer than the slide
    enlarges each, so the decode bound does not bound them, and a worker that went on would
    hold about 5 times their bytes before the kernel killed it (docs/pathology-server.md,
    Memory of a slide in flight)."""
    tile_bytes = count * settings.tile_px**2 * 3
    if tile_bytes <= settings.max_tile_bytes:
        return
    enlarged = slide.um_per_px / settings.um_per_px
    why = (f"each tile enlarged {enlarged:.3g}x: the model's tiles are {settings.um_per_px:.3g} "
           f"µm/px, the slide {slide.um_per_px:.3g}; score it with tiles no finer than the "
           "slide (a larger --tile-um or another model), or " if enlarged > 1 else "")
    raise SlideError(
        f"{slide.path}: its {count} tissue tiles of {settings.tile_px} px would take "
        f"{tile_bytes} bytes, more than the {settings.max_tile_bytes} of "
        f"pathology.max_tile_bytes ({why}raise it where the memory is there: the server's "
        "setting, --max-tile-bytes of `pathology run`); refused before any tile was read")


def _no_tissue_problem(slide: Slide, mask: TissueMask, settings: TileSettings) -> str:
    """Why no tile holds tissue: a grey image, or tissue too sparse for a tile (before, both
    were asked whether they were blank or overexposed), or too little stained tissue."""
    if colourless(slide):
        return ("no tissue tile: the image has no colour (a greyscale scan or export), and "
                "tissue is found by its stain's colour; score a colour (RGB) scan of the slide")
    if mask.tissue_fraction >= SPARSE_TISSUE_FRACTION:
        return (f"no tissue tile: tissue covers {mask.tissue_fraction:.1%} of the slide, but no "
                f"{settings.tile_um:g} µm tile is {settings.min_tissue_fraction:.0%} tissue "
                "(sparse tissue: fat, or scattered fragments)")
    return (f"no tissue tile (tissue covers {mask.tissue_fraction:.1%} of the slide; a tile "
            f"needs {settings.min_tissue_fraction:.0%}); is it blank or overexposed?")


def _fit_slide_stains(slide: Slide, mask: TissueMask) -> StainModel:
    """Stain model from the tissue pixels of a thumbnail of about STAIN_FIT_PIXELS pixels."""
    width, height = slide.size_px
    factor = max(1, int(np.sqrt(width * height / STAIN_FIT_PIXELS)))
    thumb = np.asarray(slide.image.reduce(factor) if factor > 1 else slide.image)
    tissue = cv2.resize(mask.mask.astype(np.uint8), (thumb.shape[1], thumb.shape[0]),
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    try:
        return fit_stain_model(thumb[tissue])
    except StainError as exc:
        raise SlideError(f"{slide.path}: cannot normalise stains: {exc}") from exc


def tile_batches(
    prepared: PreparedSlide, settings: TileSettings, batch_size: int
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Tiles in batches with their normalised pixels (N x px x px x 3 uint8)."""
    kept = prepared.tiles
    for start in range(0, len(kept), batch_size):
        group = kept[start : start + batch_size]
        pixels = read_tiles(prepared.slide, group, settings.tile_px)
        if prepared.stain is not None:
            pixels = normalize_stain(pixels, prepared.stain, settings.reference)
        if settings.tumour_only:
            tumour = tumour_tiles(pixels, settings.reference)
            group = [tile for tile, keep in zip(group, tumour, strict=True) if keep]
            pixels = pixels[tumour]
        if group:
            yield group, pixels


def tumour_tiles(tiles_rgb: np.ndarray, reference: StainModel = REFERENCE) -> np.ndarray:
    """Boolean per tile: crowded with nuclei like tumour epithelium (tiles already normalised)."""
    keep = np.zeros(len(tiles_rgb), bool)
    for index, tile in enumerate(tiles_rgb):
        hematoxylin = stain_concentrations(tile, reference)[..., 0]
        keep[index] = float((hematoxylin > TUMOUR_HEMATOXYLIN).mean()) >= TUMOUR_NUCLEAR_SHARE
    return keep
