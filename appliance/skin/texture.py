"""Skin texture (kime): furrow detection, furrow centre lines, hills, and their metrics.

Method (on the flattened image of ``preprocess``, at the canonical 20 µm/px):
1. Valley response: a black top-hat (grey closing minus the image) with a disk wider than any
   furrow. It is two-sided: a pixel responds only when it is darker than skin on both sides,
   so illumination gradients, the bright/dark sides of an obliquely lit furrow wall and the
   edges of (already clipped) shine do not read as furrows, unlike one-sided second
   derivatives. The disk (140 µm) also sets the widest furrow the method can see.
2. Furrow mask (the pores read the furrow floor from it): strong valley pixels seed the
   furrows, weaker ones connected to them extend them (hysteresis). The pores read it on every
   2nd row and column only, so ``measure_texture`` keeps it on that grid alone
   (``furrow_sample``); ``furrow_mask`` draws it on every pixel.
3. Hill cells (``hills``): hill regions and, where a faint furrow fades out and merges two
   hills, the hills' own cores as seeds; every pixel given to the nearest seed, so the borders
   between cells are the furrow centre lines and each cell includes half of every furrow
   around it (docs/measurement.md); a split whose border is not a furrow is undone, and so is
   one whose border is a hair lying across the hill.
4. Centre-line length and direction from those borders, segment by segment (``borders``):
   exact for straight segments at any angle, and extended beyond their own reach to where
   the segments ending in a junction meet; plus the visible furrow centre line that is no
   border, the dead ends (``spurs``: a furrow that fades out before its next junction leaves
   its two hills one cell around its end), which add length and direction, never hills.
5. Hills (``gaps``): two cells whose border is furrow on both sides of a stretch that is
   none, and which together are no larger than one hill, are one hill cut by a dead end that
   stops short of the furrow across it by a gap the frame shows. Such a dead end bounds
   nothing (docs/measurement.md "Definitions": one that ends within 13 µm of another furrow
   meets it, as no frame resolves that gap, and is a border), so the two are counted as one;
   its centre line stays in step 4's length.
6. Hill density: hills whose centre (the centroid of its outline: its borders with the other
   hills and, where it is cut, the frame edge) lies in the frame inset by ``INSET_UM`` or by
   one hill width (the square root of the mean hill area), whichever is more, on every side,
   per area of that inset frame. A hill cut by the frame edge is only partly seen (its seed may
   be a sliver of it); counting hills by their centres where they are seen whole estimates the
   same density as the definition's whole plus half of the cut hills, without deciding which
   cut hills are real. The centre of a cut hill is that of its visible part, up to about half
   a hill width in from the edge: a narrower inset counts some cut hills whose own centre lies
   outside it (on the project's generator, true hill polygons read +1.75 % below 8 hills/mm²
   with the 200 µm inset alone, -0.2 % with one hill width). Hills hidden under a hair are
   not seen either, so the hair's pixels leave the inset frame too, with the hills centred
   on them. Hill area: the mean area of the cells that do not touch the frame edge.

Faint networks (step 3a). The levels of steps 3-5 (``hills``: the hill level, the cores, the
growth levels, the furrow level; ``spurs``, ``gaps``) are valley responses in units of the hill
level, fitted on frames whose furrows read 0.2 and more deep. On skin whose network is faint
(shallow narrow furrows, weak cavity darkening: a response of 0.03-0.05 on its furrows) they
cut few of its furrows, merge its hills and lose most of its length. Where the response's 95th
percentile (``level_gain``) is under ``LEVEL_CONTRAST``, steps 3-5 read the response
``LEVEL_CONTRAST`` / that percentile times as deep (at most ``MAX_LEVEL_GAIN``): the levels then
lie at the same share of the frame's own furrow depth as on a clear frame. Continuous in the
percentile (the gain is 1 from ``LEVEL_CONTRAST`` on); the pores' furrow mask (step 2) and the
validated range's furrow contrast read the response as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from appliance.skin.borders import BorderSegments, CrackMasks, anisotropy, border_segments
from appliance.skin.gaps import gap_hills, hill_borders
from appliance.skin.hills import (
    STRONG_VALLEY,
    grow_cells,
    hair_mask,
    hill_seeds,
    label_areas,
    label_components,
    merge_cells,
    relabelled,
)
from appliance.skin.preprocess import WORK_UM_PER_PX, Prepared
from appliance.skin.spurs import dead_end_furrows

WEAK_VALLEY = 0.01  # a faint furrow, kept where it touches a clear one
TOPHAT_DIAMETER_UM = 140.0  # wider than the widest furrow (~120 µm), narrower than hills
TOPHAT_LEVELS = 60000.0  # steps per hill level of the top-hat's closing (speed only)
INSET_UM = 200.0  # hills are counted by their centres in the frame inset by this much at least
# Faint networks (step 3a): the hill and furrow levels read a response whose 95th percentile is
# at least LEVEL_CONTRAST; a fainter frame's response is read LEVEL_CONTRAST / p95 times as deep
# (at most MAX_LEVEL_GAIN). The levels were fitted on the project's generator, whose frames read
# 0.20-0.57 (seeds 11 and 12); 0.15 (three quarters of its faintest) leaves every frame of the
# generator and the second renderer as it was (docs/measurement.md "Faint networks").
LEVEL_CONTRAST = 0.15
MAX_LEVEL_GAIN = 3.0
LEVEL_PERCENTILE = 0.95  # the share of the response's pixels at or below the level it reads


@dataclass(frozen=True)
class Texture:
    """Furrow and hill geometry of one frame (work-scale arrays) and the texture metrics."""

    furrow_sample: np.ndarray  # bool: furrow pixels on every 2nd row and column (``furrow_sample``)
    cell_labels: np.ndarray  # uint16 (int32 past 65,535 labels): every pixel's hill cell (1..n)
    cell_hills: np.ndarray  # (n + 1,) int: each cell's hill (step 5; 0 stays 0)
    centre_lines: np.ndarray  # bool: pixels on a border between two hill cells or on a spur
    segments: BorderSegments  # the borders between the hill cells
    metrics: dict[str, float]
    hair: np.ndarray  # bool: pixels of hairs (``hills.hair_mask``): no pit there is a pore
    level_gain: float = 1.0  # how many times as deep the hills and furrows read the response

    @cached_property
    def hill_labels(self) -> np.ndarray:
        """Every pixel's hill (1..): its cell's."""
        return relabelled(self.cell_hills.astype(self.cell_labels.dtype), self.cell_labels)


def furrow_mask(response: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Hysteresis threshold of the valley response: weak furrow pixels joined to strong ones.

    The strong pixels are weak too, so a weak component without a strong pixel is a component
    of the weak-only pixels with no strong neighbour: those few are labelled and left out."""
    weak = np.greater(response, WEAK_VALLEY)
    strong = np.greater(response, STRONG_VALLEY)
    count, labels = label_components(weak & ~strong, connectivity=connectivity)
    # the labels of the weak-only pixels next to a strong one (0 elsewhere), counted per label
    # (``label_areas``: by calcHist for uint16 labels)
    beside_strong = np.zeros_like(labels)
    cv2.copyTo(labels, cv2.dilate(strong.view(np.uint8), _NEIGHBOURS[connectivity]),
               beside_strong)
    keep = label_areas(beside_strong, count) > 0
    keep[0] = True  # the strong pixels, and those not weak (left out below)
    mask: np.ndarray = np.take(keep, labels)  # np.take: 2x faster than keep[labels]
    mask &= weak
    return mask


# a pixel and its neighbours, by connectivity
_NEIGHBOURS = {4: cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
               8: np.ones((3, 3), np.uint8)}


def furrow_sample(response: np.ndarray) -> np.ndarray:
    """``furrow_mask`` on every 2nd row and column (rows and columns 0, 2, 4, ...), the pixels the
    pores read the furrow floor on, drawn on that grid: a quarter of the pixels to label.

    Joined 4-connected there: a step of the grid spans 2 px, a diagonal one 2.8 px, which would
    bridge gaps that the full image's 8-connectivity keeps apart. The pores' furrow floor (the
    median depth of these pixels) then reads within 0.07 % of the full mask's (median; at most
    0.75 %) on seed 11 frames (mixed 150-164, wide 290-304); with 8-connectivity 0.26 % low.
    """
    return furrow_mask(np.ascontiguousarray(response[::2, ::2]), connectivity=4)


def furrow_width_um(
    depth: np.ndarray, centre_lines: np.ndarray, length_px: float, um_per_px: float
) -> float:
    """Mean furrow width at half depth: pixels darker than halfway to the local valley floor.

    The floor is the deepest point next to a centre line, spread 3 px around it; only pixels
    that close to a centre line (and with a floor deeper than 0.02) count.
    """
    if length_px <= 0:
        return 0.0
    floor = cv2.dilate(depth, np.ones((3, 3), np.uint8))
    floor_at_line = np.multiply(floor, centre_lines, out=floor)  # floor >= 0: np.where, 7x faster
    local_floor = cv2.dilate(floor_at_line, np.ones((7, 7), np.uint8))
    half_floor = np.multiply(local_floor, np.float32(0.5), out=floor)  # (over the floor, read)
    half_depth = np.greater(depth, half_floor)
    half_depth &= np.greater(local_floor, 0.02)
    return float(np.count_nonzero(half_depth)) / length_px * um_per_px


def tophat_response(flat: np.ndarray) -> np.ndarray:
    """Black top-hat: how much darker a pixel is than the closing that fills narrow valleys.

    The closing runs on the smoothed level in steps of 1/``TOPHAT_LEVELS`` as uint16 (OpenCV's
    disk closing takes half the time of float32's; the flattened level is at most
    ``preprocess.SHINE_CLIP``, 64,800 steps): the response moves by at most one step, far
    below every level read from it (the lowest, ``hills.CORE_LEVEL``, is 75 steps)."""
    smooth = cv2.GaussianBlur(flat, (0, 0), 0.7)
    size = int(TOPHAT_DIAMETER_UM / WORK_UM_PER_PX) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    # numpy's multiply and cast: 3x faster than cv2.multiply with a dtype; whole steps down
    # (the steps, then the response, written over the smoothed level, read last)
    steps = np.multiply(smooth, np.float32(TOPHAT_LEVELS), out=smooth).astype(np.uint16)
    closed = cv2.morphologyEx(steps, cv2.MORPH_BLACKHAT, kernel, dst=steps)
    response: np.ndarray = np.multiply(closed, np.float32(1.0 / TOPHAT_LEVELS), out=smooth,
                                       dtype=np.float32)
    return response


def hill_cells(
    response: np.ndarray, um_per_px: float, hair: np.ndarray | None = None
) -> tuple[np.ndarray, CrackMasks]:
    """Every pixel's hill cell (``hills``) and the cracks between the cells; ``hair``: the
    pixels of hairs (``hills.hair_mask``), whose halves of a hill are merged."""
    seeds = hill_seeds(response, um_per_px)
    cells = grow_cells(seeds.labels, response)
    no_hair = np.zeros(response.shape, dtype=bool) if hair is None else hair
    return merge_cells(cells, CrackMasks.of(cells), seeds, response, no_hair)


def level_gain(response: np.ndarray) -> float:
    """How many times as deep the hill and furrow levels read the valley response (step 3a):
    ``LEVEL_CONTRAST`` over the response's 95th percentile, between 1 and ``MAX_LEVEL_GAIN``.

    The percentile is read on every 2nd row and column (a quarter of the pixels; within 0.4 %
    of all pixels' on 23 development frames of blind4, blind2 and the own generator), by
    partition: 0.14-0.17 ms thread CPU a frame."""
    sample = np.ascontiguousarray(response[::2, ::2]).ravel()
    if sample.size == 0:
        return 1.0
    rank = min(int(LEVEL_PERCENTILE * sample.size), sample.size - 1)
    level = float(np.partition(sample, rank)[rank])
    return min(max(LEVEL_CONTRAST / max(level, LEVEL_CONTRAST / MAX_LEVEL_GAIN), 1.0),
               MAX_LEVEL_GAIN)


def measure_texture(prepared: Prepared) -> Texture:
    """Furrows, centre lines and hills of a prepared frame, with the texture metrics."""
    um = prepared.um_per_work_px
    response = tophat_response(prepared.flat_work)
    gain = level_gain(response)
    # the hills and furrow centre lines read the response with the gain (step 3a); the pores'
    # furrow floor reads it as it is (``furrow_sample`` below)
    levelled = response if gain == 1.0 else np.multiply(response, np.float32(gain))
    hair = hair_mask(prepared.rgb_work)
    cells, masks = hill_cells(levelled, um, hair)
    segments = border_segments(cells, masks=masks)
    borders = masks.line_mask()
    spurs = dead_end_furrows(levelled, borders, hair)
    cell_areas = label_areas(cells, int(cells.max()) + 1)
    cell_hills = gap_hills(segments, levelled, cell_areas)
    lines = borders | spurs.mask
    length_px = segments.total_length_px + spurs.length_px
    metrics = {
        **_hill_metrics(cells, cell_hills, cell_areas, segments, um_per_px=um, hair=hair),
        "furrow_density_mm_per_mm2": length_px * um / 1000.0 / prepared.frame_area_mm2,
        "furrow_mean_width_um": furrow_width_um(prepared.depth_work, lines, length_px, um),
        "furrow_anisotropy": anisotropy(np.concatenate([segments.lengths_px, spurs.lengths_px]),
                                        np.concatenate([segments.angles_rad, spurs.angles_rad])),
    }
    return Texture(furrow_sample(response), cells, cell_hills, lines, segments, metrics, hair,
                   gain)


def _hill_metrics(
    cells: np.ndarray, cell_hills: np.ndarray, cell_areas: np.ndarray, segments: BorderSegments,
    *, um_per_px: float, hair: np.ndarray,
) -> dict[str, float]:
    """Hill density in the inset frame outside the hairs and mean area of the hills entirely
    inside (``cell_hills``: each cell's hill; ``cell_areas``: each cell's pixels)."""
    count = int(cell_hills.max()) + 1
    areas_px = np.bincount(cell_hills, cell_areas, minlength=count)
    whole = areas_px > 0
    whole[0] = False
    whole &= ~_hills_on_border(cells, cell_hills, count)
    mean_px = float(areas_px[whole].mean()) if np.any(whole) else 0.0
    return {
        "hill_density_per_mm2": _inset_density(cells, cell_hills, segments, um_per_px=um_per_px,
                                               hair=hair, mean_area_px=mean_px),
        "hill_mean_area_mm2": mean_px * um_per_px * um_per_px / 1e6,
    }


def _inset_density(
    cells: np.ndarray, cell_hills: np.ndarray, segments: BorderSegments,
    *, um_per_px: float, hair: np.ndarray, mean_area_px: float,
) -> float:
    """Hills per mm² whose centre lies in the inset frame and not under a hair (step 6).

    The frame is inset by ``INSET_UM`` or one hill width (``mean_area_px`` ** 0.5), whichever
    is more, and by at most a quarter of its size.
    """
    height, width = cells.shape
    centre_x, centre_y = _outline_centres(cells, cell_hills, segments)
    inset = min(max(INSET_UM / um_per_px, mean_area_px**0.5), 0.25 * min(height, width))
    inside = (np.abs(centre_x - 0.5 * width) <= 0.5 * width - inset) & (
        np.abs(centre_y - 0.5 * height) <= 0.5 * height - inset
    )
    inside[0] = False
    # the pixels whose centre lies in the inset frame, and the hair among them
    first = math.ceil(inset - 0.5)
    hair_px = cv2.countNonZero(hair[first:height - first, first:width - first].view(np.uint8))
    if hair_px:
        column = np.minimum(centre_x.astype(np.int64), width - 1)  # frame x to pixel index
        row = np.minimum(centre_y.astype(np.int64), height - 1)
        inside &= ~hair[row, column]
    inset_area_px = (width - 2 * inset) * (height - 2 * inset) - hair_px
    if inset_area_px <= 0:  # hair all over the inset frame: no hill is seen
        return 0.0
    return float(np.count_nonzero(inside) / (inset_area_px * um_per_px**2 / 1e6))


def _outline_centres(
    cells: np.ndarray, cell_hills: np.ndarray, segments: BorderSegments
) -> tuple[np.ndarray, np.ndarray]:
    """Each hill's centre in frame coordinates (the frame spans 0..width): the centroid of the
    cracks of its borders with the other hills and, where it is cut, of the frame edge."""
    height, width = cells.shape
    count = int(cell_hills.max()) + 1
    edge_labels = cell_hills.take(
        np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]]))
    pairs, sums = hill_borders(segments, cell_hills)
    along_x, along_y = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    edge_x = np.concatenate([along_x, along_x, np.full(height, -0.5), np.full(height, width - 0.5)])
    edge_y = np.concatenate([np.full(width, -0.5), np.full(width, height - 0.5), along_y, along_y])
    owners = np.concatenate([pairs[:, 0], pairs[:, 1], edge_labels])

    def per_owner(column: int, edge: np.ndarray) -> np.ndarray:
        """A column of the crack sums for both cells of each border, then the edge's values,
        summed per owning cell."""
        values = np.concatenate([sums[:, column], sums[:, column], edge])
        summed: np.ndarray = np.bincount(owners, values, count)
        return summed

    weight = per_owner(0, np.ones(len(edge_labels)))
    np.maximum(weight, 1.0, out=weight)
    # pixel indices to frame coordinates: + 0.5
    centre_x = per_owner(1, edge_x) / weight + 0.5
    centre_y = per_owner(2, edge_y) / weight + 0.5
    return centre_x, centre_y


def _hills_on_border(cells: np.ndarray, cell_hills: np.ndarray, count: int) -> np.ndarray:
    on_border = np.zeros(count, dtype=bool)
    for edge in (cells[0], cells[-1], cells[:, 0], cells[:, -1]):
        on_border[cell_hills.take(edge)] = True
    return on_border
