"""What a preparation worker process does with one slide: decode, mask, tile, normalise.

It runs in the server's preparation worker processes (appliance/pathology/workerpool.py) so
decoding and stain normalisation use every core while the main process feeds the accelerator.
It returns the normalised tiles, the guard's input statistics of each tile
(appliance/pathology/ood_stats.py, computed here so the accelerator never waits for them) and
a thumbnail for the heatmap; a slide that cannot be prepared comes back with its error instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.pathology.heatmap import heatmap_scale
from appliance.pathology.ood_stats import tile_statistics
from appliance.pathology.prepare import TileSettings, prepare_slide, tile_batches
from appliance.pathology.slides import SlideError
from appliance.pathology.tiles import Tile

CHUNK_TILES = 256


@dataclass
class PreparedTiles:
    """A prepared slide: tiles, their pixels and statistics, a thumbnail; or an error."""

    job_id: str
    slide_index: int
    tiles: list[Tile] = field(default_factory=list)
    pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    statistics: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    thumbnail: np.ndarray | None = None
    thumbnail_scale: float = 1.0
    error: str = ""


def prepare_for_model(
    job_id: str, slide_index: int, path: str, um_per_px: float, settings: TileSettings, *,
    roots: Sequence[str] = (),
) -> PreparedTiles:
    """Everything the server needs of one slide before the model sees it; the file read must
    lie inside ``roots`` (the server's slide roots) as it is opened."""
    try:
        prepared = prepare_slide(Path(path), um_per_px, settings, [Path(r) for r in roots])
    except SlideError as exc:
        return PreparedTiles(job_id, slide_index, error=str(exc))
    try:
        tiles: list[Tile] = []
        statistics: list[np.ndarray] = []
        size = settings.tile_px  # each chunk written straight into the slide's one tile array
        pixels = np.empty((len(prepared.tiles), size, size, 3), np.uint8)
        for group, chunk in tile_batches(prepared, settings, CHUNK_TILES):
            pixels[len(tiles):len(tiles) + len(group)] = chunk
            statistics.append(tile_statistics(chunk))  # its working arrays: a chunk's only
            tiles += group
        if not tiles:
            return PreparedTiles(job_id, slide_index,
                                 error=f"{path}: no tile passed the tumour filter")
        slide = prepared.slide
        thumb = slide.thumbnail(slide.um_per_px * math.ceil(1 / heatmap_scale(slide.size_px)))
        return PreparedTiles(job_id, slide_index, tiles, pixels[:len(tiles)],
                             np.concatenate(statistics), thumb,
                             thumb.shape[1] / slide.size_px[0])
    except (SlideError, ValueError) as exc:
        return PreparedTiles(job_id, slide_index, error=str(exc))
    finally:
        prepared.close()
