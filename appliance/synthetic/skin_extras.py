"""What the "wide" skin preset adds to a frame: things that look a little like pores but are not.

Dark furrow junctions (darker than the furrows meeting there, as wide or wider), pigment spots and
freckles (soft, brownish, larger), hairs (long curves: dark brown, or near-neutral grey as
``params.hair_grey_level`` says; their colour is the renderer's), hairs growing out of pores
(``params.pore_hair_share`` of them: rooted at the pore's centre, thinner than the pore, near-black
or grey), dust (small sharp specks) and a
colour cast of lamp and sensor. None of them changes the ground truth: they are not pores and
not furrows. With the other presets' parameters every layer is empty and no random number is
drawn, so their frames stay as they were.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from appliance.synthetic.skin_geometry import SkinGeometry
from appliance.synthetic.skin_params import SkinParams

Image = npt.NDArray[np.float32]
SUBPIXEL_BITS = 4  # cv2 drawing with 1/16 px precision


def junction_darkening(geometry: SkinGeometry, params: SkinParams) -> Image | None:
    """Extra darkness (0..1) of soft discs on the furrow junctions; None when there is none."""
    if params.junction_darkness <= 0.0 or params.junction_size <= 0.0:
        return None
    degree = np.bincount(geometry.edges.ravel(), minlength=len(geometry.vertices_px))
    width_sum = np.bincount(geometry.edges.ravel(), np.repeat(geometry.edge_width_px, 2),
                            minlength=len(geometry.vertices_px))
    junctions = np.flatnonzero(degree >= 3)
    shape = (geometry.height_px, geometry.width_px)
    field = np.zeros(shape, dtype=np.float32)
    for vertex in junctions:
        radius = params.junction_size * width_sum[vertex] / degree[vertex]
        if params.junction_bowl:
            _stamp_bowl(field, geometry.vertices_px[vertex], radius)
        else:
            _stamp_disc(field, geometry.vertices_px[vertex], radius, max(0.3 * radius, 0.5))
    return field * np.float32(params.junction_darkness)


def _stamp_disc(field: Image, centre: np.ndarray, radius: float, softness: float) -> None:
    """Keep the larger of ``field`` and a soft disc (1 inside, 0.5 on ``radius``)."""
    cx, cy = float(centre[0]), float(centre[1])
    reach = int(np.ceil(radius + 4 * softness + 2))
    x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
    x1, y1 = min(int(cx) + reach + 1, field.shape[1]), min(int(cy) + reach + 1, field.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    disc = 1.0 / (1.0 + np.exp((np.hypot(xs - cx, ys - cy) - radius) / softness))
    np.maximum(field[y0:y1, x0:x1], disc, out=field[y0:y1, x0:x1])


def _stamp_bowl(field: Image, centre: np.ndarray, radius: float) -> None:
    """Keep the larger of ``field`` and a round Gaussian bowl (1 in its middle, 0.5 on
    ``radius``): a pit with no flat floor, whose outline closes in light."""
    sigma = max(radius, 0.5) / np.sqrt(2.0 * np.log(2.0))
    cx, cy = float(centre[0]), float(centre[1])
    reach = int(np.ceil(3.5 * sigma + 2))
    x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
    x1, y1 = min(int(cx) + reach + 1, field.shape[1]), min(int(cy) + reach + 1, field.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    bowl = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / np.float32(2.0 * sigma**2))
    np.maximum(field[y0:y1, x0:x1], bowl, out=field[y0:y1, x0:x1])


def _gaussian_blobs(
    rng: np.random.Generator, shape: tuple[int, int], count: int, sizes_px: tuple[float, float],
    amplitudes: tuple[float, float],
) -> Image:
    """``count`` soft Gaussian blobs, each of 1-3 lobes (irregular outlines), summed."""
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        centre = rng.uniform((0, 0), (shape[1], shape[0]))
        diameter, amplitude = rng.uniform(*sizes_px), rng.uniform(*amplitudes)
        for _lobe in range(int(rng.integers(1, 4))):
            lobe_centre = centre + rng.normal(0.0, diameter / 6.0, 2)
            sigma = diameter / 3.0 * rng.uniform(0.7, 1.0)
            _add_gaussian(field, lobe_centre, sigma, amplitude)
    return field


def _add_gaussian(field: Image, centre: np.ndarray, sigma: float, amplitude: float) -> None:
    """Add a Gaussian bump of peak ``amplitude`` (cut at 3 sigma) to ``field`` in place."""
    cx, cy = float(centre[0]), float(centre[1])
    reach = int(np.ceil(3 * sigma))
    x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
    x1, y1 = min(int(cx) + reach + 1, field.shape[1]), min(int(cy) + reach + 1, field.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    bump = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / np.float32(2 * sigma * sigma))
    field[y0:y1, x0:x1] += np.float32(amplitude) * bump


def pigment(rng: np.random.Generator, params: SkinParams, shape: tuple[int, int]) -> Image | None:
    """Extra melanin of pigment spots (small, darker) and freckles (larger, fainter)."""
    if params.pigment_spots == 0 and params.freckles == 0:
        return None
    px = 1.0 / params.um_per_px
    spots = _gaussian_blobs(rng, shape, params.pigment_spots, (150 * px, 600 * px), (0.5, 1.1))
    freckles = _gaussian_blobs(rng, shape, params.freckles, (500 * px, 1800 * px), (0.2, 0.5))
    return spots + freckles


def hairs(rng: np.random.Generator, params: SkinParams, shape: tuple[int, int]) -> Image | None:
    """Coverage (0..1) of hairs: long gently curved dark strands, 40-110 µm thick."""
    if params.hairs == 0:
        return None
    mask = np.zeros(shape, dtype=np.uint8)
    scale = 1 << SUBPIXEL_BITS
    for _ in range(params.hairs):
        ends = rng.uniform((0, 0), (shape[1], shape[0]), size=(3, 2))
        t = np.linspace(0.0, 1.0, 64)[:, None]
        curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * ends[1] + t**2 * ends[2]
        thickness = max(1, round(rng.uniform(40.0, 110.0) / params.um_per_px))
        points = np.round(curve * scale).astype(np.int32)
        cv2.polylines(mask, [points], False, 255, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
    return mask.astype(np.float32) / np.float32(255.0)


def _pore_hair_rng(params: SkinParams, centre: npt.NDArray[np.float64]) -> np.random.Generator:
    """The generator of the hair of the pore at ``centre`` (its first draw: whether it has one)."""
    where = np.round(centre * (1 << SUBPIXEL_BITS)).astype(np.int64).tolist()
    key = [params.pore_hair_seed, *where]
    return np.random.default_rng(np.abs(np.array(key, dtype=np.int64)))


def pores_with_hairs(geometry: SkinGeometry, params: SkinParams) -> npt.NDArray[np.bool_]:
    """Which pores of ``geometry`` ``pore_hairs`` gives a hair (the truth of a harness)."""
    if params.pore_hair_share <= 0.0:
        return np.zeros(len(geometry.pore_radii_px), dtype=bool)
    return np.array([_pore_hair_rng(params, centre).random() < params.pore_hair_share
                     for centre in geometry.pore_centres_px], dtype=bool)


def pore_hairs(geometry: SkinGeometry, params: SkinParams) -> tuple[Image, Image] | None:
    """Coverage (0..1) of hairs growing out of pores, near-black ones and grey ones apart.

    On ``params.pore_hair_share`` of the pores a strand leaves the pore's centre in any direction:
    0.4-2.5 mm long, gently curved, 25-90 µm thick but at most 0.6 of the pore's diameter (a pit
    wider than the strand leaving it), near-black or (a third of them) grey. Each pore's draws
    come from its own generator (``params.pore_hair_seed`` and its centre), so a pore left out of
    ``geometry`` takes its hair with it and leaves the others as they were."""
    if params.pore_hair_share <= 0.0 or len(geometry.pore_radii_px) == 0:
        return None
    shape = (geometry.height_px, geometry.width_px)
    masks = (np.zeros(shape, dtype=np.uint8), np.zeros(shape, dtype=np.uint8))
    scale = 1 << SUBPIXEL_BITS
    for centre, radius in zip(geometry.pore_centres_px, geometry.pore_radii_px, strict=True):
        rng = _pore_hair_rng(params, centre)
        if rng.random() >= params.pore_hair_share:
            continue
        angle, length_um = rng.uniform(0.0, 2 * np.pi), rng.uniform(400.0, 2500.0)
        bend, grey = rng.uniform(-0.25, 0.25), bool(rng.random() < 1.0 / 3.0)
        thick_um = min(rng.uniform(25.0, 90.0), 0.6 * 2.0 * radius * params.um_per_px)
        length = length_um / params.um_per_px
        ahead = np.array([np.cos(angle), np.sin(angle)])
        side = np.array([-ahead[1], ahead[0]])
        ends = np.array([centre, centre + ahead * length / 2 + side * bend * length,
                         centre + ahead * length])
        t = np.linspace(0.0, 1.0, 48)[:, None]
        curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * ends[1] + t**2 * ends[2]
        points = np.round(curve * scale).astype(np.int32)
        thickness = max(1, round(thick_um / params.um_per_px))
        cv2.polylines(masks[int(grey)], [points], False, 255, thickness, cv2.LINE_AA,
                      SUBPIXEL_BITS)
    dark, grey_mask = (mask.astype(np.float32) / np.float32(255.0) for mask in masks)
    return dark, grey_mask


def dust(rng: np.random.Generator, params: SkinParams, shape: tuple[int, int]) -> Image | None:
    """Coverage (0..1) of dust specks on the lens: small, sharp, very dark, 15-45 µm."""
    if params.dust_specks == 0:
        return None
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(params.dust_specks):
        centre = rng.uniform((0, 0), (shape[1], shape[0]))
        radius = rng.uniform(7.5, 22.5) / params.um_per_px
        _stamp_disc(field, centre, radius, 0.4)
    return field * np.float32(0.85)


def colour_cast(rgb: Image, params: SkinParams) -> None:
    """Scale the red and blue channels in place (lamp and sensor colour)."""
    if params.colour_cast_red != 1.0:
        rgb[..., 0] *= np.float32(params.colour_cast_red)
    if params.colour_cast_blue != 1.0:
        rgb[..., 2] *= np.float32(params.colour_cast_blue)
