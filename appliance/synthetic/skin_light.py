"""An oblique light beside the microscope's LED ring, for the "wide" preset's frames.

A ring of LEDs lights the skin from every side at once, so a slope brightens on one side of the
ring about as much as it darkens on the other, and the frame reads little of the relief. A tilted
scope, a gap in the ring or room light let one side dominate: then each face of the relief is lit
by its angle to that source (Lambert's law, no cast shadows), the wall of a furrow or the flank of
a hill turned away from it darkens, and the hill domes and their micro-relief, which the ring
hardly shows, read as ramps of light across the hill. The source is drawn per frame
(``skin_params``): its share of the light on flat skin, its elevation and direction, how high the
domes rise and the micro-relief's amplitude. Only the light changes: the geometry and the truth
are the frame's whatever the light.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from appliance.synthetic.skin_params import SkinParams

Image = npt.NDArray[np.float32]
HILL_ROUNDING_PER_SIDE = 0.12  # skin_render: a hill's edge rounds over this share of its side
DOME_ROUNDING_PER_SIDE = 0.25  # a dome rises over this share of the hill's side
MICRO_RELIEF_CELL_UM = 40.0  # the micro-relief's bumps are about this wide
BRIGHTEST = 2.0  # a face turned to a low source is at most this many times flat skin's light


def _micro_relief(params: SkinParams, shape: tuple[int, int]) -> Image:
    """Zero-mean, unit-ish smooth bumps about ``MICRO_RELIEF_CELL_UM`` across, from the
    frame's own relief seed (so the frame's other draws are as they were)."""
    rng = np.random.default_rng(params.relief_seed)
    cell_px = max(2, round(MICRO_RELIEF_CELL_UM / params.um_per_px))
    coarse = rng.standard_normal((shape[0] // cell_px + 3, shape[1] // cell_px + 3))
    big = cv2.resize(coarse.astype(np.float32), ((coarse.shape[1] - 1) * cell_px,
                                                  (coarse.shape[0] - 1) * cell_px),
                     interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[cell_px:cell_px + shape[0], cell_px:cell_px + shape[1]])


def relief_px(height: Image, hill: Image, params: SkinParams) -> Image:
    """The relief the oblique source reads, in px of height: the frame's height field (furrow
    folds, pits and the hills' rounded edges) plus a dome on each hill and the micro-relief.

    ``hill`` is 1 - exp(-d / r) at a distance d from the furrow's edge, r the hill's rounding;
    the dome 1 - exp(-d / R) over the wider rounding R is then 1 - (1 - hill) ** (r / R)."""
    dome = 1.0 - np.power(np.maximum(1.0 - hill, 0.0), HILL_ROUNDING_PER_SIDE
                          / DOME_ROUNDING_PER_SIDE)
    relief = height + np.float32(params.hill_dome_um / params.um_per_px) * dome
    if params.micro_relief_um > 0.0:
        relief += (np.float32(params.micro_relief_um / params.um_per_px)
                   * _micro_relief(params, height.shape[:2]) * hill)
    return np.asarray(relief, dtype=np.float32)


def oblique_light(relief: Image, params: SkinParams) -> Image:
    """The oblique source's light on each pixel of ``relief`` (px of height), 1 on flat skin:
    Lambert's cosine of the surface normal with the source, over that of flat skin."""
    gx = cv2.Sobel(relief, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(relief, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    elevation = math.radians(params.oblique_elevation_deg)
    azimuth = math.radians(params.oblique_azimuth_deg)
    lx, ly = math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth)
    lz = math.sin(elevation)
    facing = (lz - gx * lx - gy * ly) / np.sqrt(1.0 + gx * gx + gy * gy)
    return np.asarray(np.clip(facing / lz, 0.0, BRIGHTEST), dtype=np.float32)


def with_oblique_light(ring: Image, relief: Image, params: SkinParams) -> Image:
    """The ring's light blended with the oblique source's by the frame's share of it."""
    share = np.float32(params.oblique_light_share)
    return np.asarray((1.0 - share) * ring + share * oblique_light(relief, params),
                      dtype=np.float32)
