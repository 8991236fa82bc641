"""Render synthetic skin geometry as a Scalar 25x microscope would see it.

A height field (domed hills, furrow valleys of each furrow's width, pore depressions) is shaded
under a slightly oblique LED ring, coloured with a skin albedo whose melanin and redness vary
smoothly, lit unevenly with vignetting, given specular shine on hill tops, defocused, and
spoiled with sensor noise. Furrow and pore edges are at half depth exactly where the geometry
puts them (half the furrow width from the centre line; the pore radius from its centre).
The "wide" preset adds an oblique source beside the ring (``skin_light``).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from scipy.special import erfinv

from appliance.synthetic import skin_extras, skin_light
from appliance.synthetic.skin_geometry import SkinGeometry
from appliance.synthetic.skin_params import DEFAULT_PORE_DARKNESS, SkinParams

Image = npt.NDArray[np.float32]
PAD_PX = 24
EDGE_SOFTNESS_PX = 0.45
GAUSSIAN_QUANTILES = np.asarray(
    np.sqrt(2.0) * erfinv(2.0 * (np.arange(256) + 0.5) / 256.0 - 1.0), dtype=np.float32
)
SKIN_ALBEDO_RGB = np.array([0.92, 0.74, 0.62], dtype=np.float32)
MELANIN_ABSORPTION_RGB = np.array([0.45, 0.75, 1.05], dtype=np.float32)
ERYTHEMA_ABSORPTION_RGB = np.array([0.0, 0.3, 0.15], dtype=np.float32)
GREY_WEIGHTS_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _centre_line_labels(geometry: SkinGeometry) -> npt.NDArray[np.int32]:
    """Padded image holding 1 + the edge index on each furrow's rasterised centre line.

    Each centre line is sampled at most one pixel apart along its major axis and the samples'
    pixels get its label: a vectorised rasteriser, much faster than a cv2.line call per furrow.
    """
    height, width = geometry.height_px + 2 * PAD_PX, geometry.width_px + 2 * PAD_PX
    starts = geometry.vertices_px[geometry.edges[:, 0]] + PAD_PX
    along = geometry.vertices_px[geometry.edges[:, 1]] + PAD_PX - starts
    steps = np.ceil(np.abs(along).max(axis=1)).astype(np.int64) + 1  # <= 1 px apart: no gaps
    edge_of_sample = np.repeat(np.arange(len(steps)), steps)
    first_sample = np.cumsum(steps) - steps
    t = (np.arange(len(edge_of_sample)) - first_sample[edge_of_sample]) / (steps - 1)[
        edge_of_sample
    ]
    points = starts[edge_of_sample] + t[:, None] * along[edge_of_sample]
    cols, rows = np.floor(points[:, 0]).astype(np.int64), np.floor(points[:, 1]).astype(np.int64)
    keep = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    labels = np.zeros((height, width), dtype=np.int32)
    labels[rows[keep], cols[keep]] = edge_of_sample[keep] + 1
    return labels


def _distance_to_segments(geometry: SkinGeometry, edge_index: npt.NDArray[np.int32]) -> Image:
    """Exact distance from each pixel centre to the centre line of the furrow given per pixel."""
    start = geometry.vertices_px[geometry.edges[:, 0]]
    along = geometry.vertices_px[geometry.edges[:, 1]] - start
    inv_length2 = 1.0 / np.maximum(np.sum(along**2, axis=1), 1e-9)
    rel_x, rel_y, along_x, along_y, t = (
        np.take(column.astype(np.float32), edge_index)
        for column in (start[:, 0], start[:, 1], along[:, 0], along[:, 1], inv_length2)
    )
    # In place, to keep a 1.2 MP frame cheap: rel = pixel - start; t = clip(rel.along / |along|²).
    np.subtract(np.arange(geometry.width_px, dtype=np.float32) + 0.5, rel_x, out=rel_x)
    np.subtract((np.arange(geometry.height_px, dtype=np.float32) + 0.5)[:, None], rel_y, out=rel_y)
    t *= rel_x * along_x + rel_y * along_y
    np.clip(t, 0.0, 1.0, out=t)
    rel_x -= along_x * t
    rel_y -= along_y * t
    return np.asarray(cv2.magnitude(rel_x, rel_y), dtype=np.float32)


def furrow_fields(geometry: SkinGeometry) -> tuple[Image, Image]:
    """Distance to the nearest furrow centre line and that furrow's width, per pixel (px)."""
    distance, width_map, _ = _furrow_maps(geometry)
    return distance, width_map


def _furrow_maps(geometry: SkinGeometry) -> tuple[Image, Image, Image | None]:
    """Distance to the nearest furrow centre line, its width and depth factor (None: all 1)."""
    labels = _centre_line_labels(geometry)
    on_line = labels > 0
    _, nearest = cv2.distanceTransformWithLabels(
        (~on_line).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    edge_of_label = np.zeros(int(nearest.max()) + 1, dtype=np.int32)
    edge_of_label[nearest[on_line]] = labels[on_line] - 1
    crop = np.s_[PAD_PX:-PAD_PX, PAD_PX:-PAD_PX]
    edge_index = edge_of_label[nearest[crop]]
    width_map = geometry.edge_width_px.astype(np.float32)[edge_index]
    depth_map = None
    if geometry.edge_depth is not None:
        depth_map = geometry.edge_depth.astype(np.float32)[edge_index]
    return _distance_to_segments(geometry, edge_index), width_map, depth_map


def pore_field(geometry: SkinGeometry) -> Image:
    """Pore depth in [0, 1]: soft-edged discs, exactly 0.5 on each pore's radius."""
    field = np.zeros((geometry.height_px, geometry.width_px), dtype=np.float32)
    count = len(geometry.pore_radii_px)
    ratios = geometry.pore_axis_ratio if geometry.pore_axis_ratio is not None else np.ones(count)
    angles = geometry.pore_angle_rad if geometry.pore_angle_rad is not None else np.zeros(count)
    for (cx, cy), radius, ratio, angle in zip(
        geometry.pore_centres_px, geometry.pore_radii_px, ratios, angles, strict=True
    ):
        reach = int(np.ceil(radius / np.sqrt(ratio) * 1.6 + 3))
        x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
        x1, y1 = (
            min(int(cx) + reach + 1, geometry.width_px),
            min(int(cy) + reach + 1, geometry.height_px),
        )
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        rho = _elliptical_radius(xs - cx, ys - cy, radius, float(ratio), float(angle))
        softness = max(0.18 * radius, EDGE_SOFTNESS_PX)
        disc = 1.0 / (1.0 + np.exp((rho - radius) / softness))
        np.maximum(field[y0:y1, x0:x1], disc, out=field[y0:y1, x0:x1])
    return field


def _elliptical_radius(
    dx: np.ndarray, dy: np.ndarray, radius: float, ratio: float, angle: float
) -> np.ndarray:
    """Distance scaled so that the ellipse of area pi*radius**2 and axis ratio ``ratio`` (minor
    over major, major along ``angle``) is at ``radius``; the plain distance for a circle."""
    if ratio >= 1.0:
        return np.asarray(np.hypot(dx, dy))
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    return np.asarray(np.hypot(along * np.sqrt(ratio), across / np.sqrt(ratio)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: int) -> Image:
    """Zero-mean, unit-ish smooth random field with features about ``cell_px`` across."""
    coarse = rng.standard_normal((shape[0] // cell_px + 2, shape[1] // cell_px + 2)).astype(
        np.float32
    )
    big = cv2.resize(
        coarse, (shape[1] + 2 * cell_px, shape[0] + 2 * cell_px), interpolation=cv2.INTER_CUBIC
    )
    return np.ascontiguousarray(big[cell_px : cell_px + shape[0], cell_px : cell_px + shape[1]])


def _albedo(rng: np.random.Generator, params: SkinParams, shape: tuple[int, int]) -> Image:
    """Skin colour per pixel, melanin and redness varying smoothly (built at 1/4 resolution)."""
    small = (shape[0] // 4, shape[1] // 4)
    melanin = (
        params.melanin + 0.12 * _smooth_noise(rng, small, 40) + 0.05 * _smooth_noise(rng, small, 10)
    )
    erythema = params.erythema + 0.15 * _smooth_noise(rng, small, 30)
    absorb = (
        melanin[..., None] * MELANIN_ABSORPTION_RGB + erythema[..., None] * ERYTHEMA_ABSORPTION_RGB
    )
    albedo = (SKIN_ALBEDO_RGB * np.exp(-absorb)).astype(np.float32)
    return np.asarray(
        cv2.resize(albedo, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR), dtype=np.float32
    )


def _blur(image: Image, sigma_px: float) -> Image:
    """Gaussian blur of a float32 image."""
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma_px), dtype=np.float32)


def _shading(height: Image, light_deg: float) -> Image:
    """Oblique ring-light shading from the height field's slope."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    lx, ly = np.cos(np.radians(light_deg)), np.sin(np.radians(light_deg))
    return np.asarray(np.clip(1.0 + 0.35 * (gx * lx + gy * ly), 0.6, 1.25), dtype=np.float32)


def _illumination(rng: np.random.Generator, params: SkinParams, shape: tuple[int, int]) -> Image:
    """Uneven LED illumination: radial vignetting times a gentle tilt (smooth, built small)."""
    small = (shape[0] // 8, shape[1] // 8)
    ys, xs = np.mgrid[0 : small[0], 0 : small[1]].astype(np.float32) / np.float32(small[0])
    cx, cy = small[1] / small[0] / 2 + rng.normal(0, 0.05), 0.5 + rng.normal(0, 0.05)
    radius2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / np.float32((small[1] / small[0] / 2) ** 2 + 0.25)
    angle = rng.uniform(0, 2 * np.pi)
    tilt = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    light = (1.0 - params.vignetting * radius2) * (1.0 + params.illumination_tilt * tilt)
    return np.asarray(cv2.resize(light.astype(np.float32), (shape[1], shape[0])), dtype=np.float32)


def _specular(rng: np.random.Generator, params: SkinParams, hill: Image) -> Image:
    """Specular shine: bright patches on hill tops where the skin is oily."""
    small = (hill.shape[0] // 4, hill.shape[1] // 4)
    oily = np.clip(_smooth_noise(rng, small, 20) - 0.4, 0.0, None)
    oily_full = cv2.resize(oily, (hill.shape[1], hill.shape[0]))
    return np.asarray(params.shine * 1.5 * oily_full * hill**3, dtype=np.float32)


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> Image:
    """Standard normal noise, quantised to 256 levels: random bytes through a quantile table."""
    return GAUSSIAN_QUANTILES[rng.integers(0, 256, size=shape, dtype=np.uint8)]


def _sensor_noise(
    rng: np.random.Generator, params: SkinParams, rgb: Image, luminance: Image
) -> None:
    """Add sensor noise in place: per-pixel luminance noise, coarser chroma noise (demosaic)."""
    height, width = rgb.shape[:2]
    sigma = params.noise_sigma * np.sqrt(np.maximum(luminance, 0.05)) + np.float32(0.002)
    luma = _gaussian_noise(rng, (height, width)) * sigma
    chroma = _gaussian_noise(rng, (height // 2, width // 2, 3)) * np.float32(
        0.6 * params.noise_sigma
    )
    rgb += luma[..., None]
    rgb += cv2.resize(chroma, (width, height), interpolation=cv2.INTER_NEAREST)


def _height_fields(
    geometry: SkinGeometry, params: SkinParams, junction: Image | None
) -> tuple[Image, Image, Image, Image]:
    """Furrow depth (0..1), hill dome (0..1), pore depth (0..1) and the combined height field.

    A furrow's fold and a pore's pit are added, or (``params.pits_max_combined``) the deeper
    of the two is taken, as where a pore is a hole in the fold it opens into.
    """
    distance, width, depth = _furrow_maps(geometry)
    half_width = width * np.float32(0.5)
    # the logistic edge; its argument held below float32's exp overflow (far from every
    # furrow the depth is 0 either way: 1 / (1 + e**60) rounds to nothing in 8-bit pixels)
    furrow = 1.0 / (1.0 + np.exp(np.minimum((distance - half_width)
                                            / np.float32(EDGE_SOFTNESS_PX), np.float32(60.0))))
    if depth is not None:  # shallow and deep furrows: the edge stays at half width
        furrow = furrow * depth
    rounding_px = np.float32(
        0.12 * np.sqrt(params.lattice_cell_area_mm2) * 1000.0 / params.um_per_px
    )
    hill = 1.0 - np.exp(-np.maximum(distance - half_width, 0.0) / rounding_px)
    pore = pore_field(geometry)
    fold = furrow * (0.35 * width + 1.0)
    pit = (3.0 * params.pore_darkness / DEFAULT_PORE_DARKNESS) * pore  # fainter pits, shallower
    if params.pits_max_combined:
        if junction is not None:
            fold = fold + params.junction_relief * junction
        height = 3.0 * hill - np.maximum(fold, pit)
    else:
        height = 3.0 * hill - fold - pit
        if junction is not None:
            height -= params.junction_relief * junction
    as_image = np.float32
    return furrow.astype(as_image), hill.astype(as_image), pore, height.astype(as_image)


def _darken(
    luminance: Image, furrow: Image, pore: Image, junction: Image | None, params: SkinParams
) -> Image:
    """``luminance`` times the share of light furrows, junctions and pores leave: their
    product, or with ``params.pits_max_combined`` the darker of fold (furrow and junction)
    and pit."""
    fold = 1.0 - params.furrow_darkness * furrow
    pit = 1.0 - params.pore_darkness * pore
    if params.pits_max_combined:
        if junction is not None:
            fold = fold * (1.0 - junction)
        return np.asarray(luminance * np.minimum(fold, pit), dtype=np.float32)
    luminance = luminance * fold * pit
    if junction is not None:
        luminance *= 1.0 - junction
    return luminance


def _pore_tint(pore: Image, params: SkinParams) -> Image:
    """Per-pixel RGB gains that make the pores redder or browner by their depth, their grey
    (ITU-R 601, as the measurement reads it) kept: the hue changes, not the pore's darkness."""
    absorb = (params.pore_erythema * ERYTHEMA_ABSORPTION_RGB
              + params.pore_melanin * MELANIN_ABSORPTION_RGB)
    tint = np.exp(-pore[..., None] * absorb)
    grey = tint @ GREY_WEIGHTS_RGB
    return np.asarray(tint / grey[..., None], dtype=np.float32)


def _add_pore_hairs(geometry: SkinGeometry, params: SkinParams, rgb: Image) -> None:
    """Hairs growing out of pores, in place: near-black ones (most of the light absorbed, the
    skin's hue kept faintly) and grey ones (0.7 of the skin's grey, none of its hue)."""
    drawn = skin_extras.pore_hairs(geometry, params)
    if drawn is None:
        return
    dark, grey_mask = (mask[..., None] for mask in drawn)
    rgb *= np.exp(-4.0 * dark * MELANIN_ABSORPTION_RGB) * (1.0 - 0.5 * dark)
    grey = rgb @ GREY_WEIGHTS_RGB
    rgb *= 1.0 - grey_mask
    rgb += grey_mask * (np.float32(0.7) * grey)[..., None]


def _add_extras(rng: np.random.Generator, params: SkinParams, rgb: Image,
                geometry: SkinGeometry) -> None:
    """The "wide" preset's pigment, hairs (those growing out of pores too), dust and colour
    cast, in place (others: nothing)."""
    shape = rgb.shape[:2]
    melanin = skin_extras.pigment(rng, params, shape)
    if melanin is not None:
        rgb *= np.exp(-melanin[..., None] * MELANIN_ABSORPTION_RGB)
    hair = skin_extras.hairs(rng, params, shape)
    if hair is not None and params.hair_grey_level > 0.0:  # near-neutral grey strands
        strand = hair[..., None]
        grey = rgb @ GREY_WEIGHTS_RGB
        rgb *= 1.0 - strand
        rgb += strand * (np.float32(params.hair_grey_level) * grey)[..., None]
    elif hair is not None:  # dark brown strands: strong melanin absorption and a shadow
        strand = hair[..., None]
        rgb *= np.exp(-3.0 * strand * MELANIN_ABSORPTION_RGB) * (1.0 - 0.4 * strand)
    _add_pore_hairs(geometry, params, rgb)
    specks = skin_extras.dust(rng, params, shape)
    if specks is not None:
        rgb *= (1.0 - specks)[..., None]
    skin_extras.colour_cast(rgb, params)


def render_linear(
    rng: np.random.Generator, geometry: SkinGeometry, params: SkinParams
) -> tuple[Image, Image]:
    """The frame's linear RGB (1.0 is 8-bit white) and its luminance, before sensor noise.

    The random draws do not depend on the pores, so the same generator state renders the same
    frame with some pores left out of ``geometry`` (how a pore's own visibility is measured).
    """
    junction = skin_extras.junction_darkening(geometry, params)  # "wide": darker junctions
    furrow, hill, pore, height = _height_fields(geometry, params, junction)
    shape = (geometry.height_px, geometry.width_px)
    blurred = _blur(height, 1.5)
    light = _shading(blurred, float(rng.uniform(0, 360)))
    if params.oblique_light_share > 0.0:  # "wide": an oblique source beside the ring
        light = skin_light.with_oblique_light(
            light, skin_light.relief_px(blurred, _blur(hill, 1.5), params), params)
    luminance = _darken(light * _illumination(rng, params, shape), furrow, pore, junction, params)
    rgb = _albedo(rng, params, shape) * luminance[..., None]
    if params.pore_erythema > 0.0 or params.pore_melanin > 0.0:  # "wide": reddish, brownish pores
        rgb *= _pore_tint(pore, params)
    rgb += _specular(rng, params, hill)[..., None]
    _add_extras(rng, params, rgb, geometry)
    return _blur(rgb, params.defocus_sigma_px), luminance


def render_rgb(
    rng: np.random.Generator, geometry: SkinGeometry, params: SkinParams
) -> npt.NDArray[np.uint8]:
    """The frame as 8-bit RGB, before JPEG compression."""
    rgb, luminance = render_linear(rng, geometry, params)
    _sensor_noise(rng, params, rgb, luminance)
    return np.asarray(cv2.convertScaleAbs(rgb, alpha=255.0), dtype=np.uint8)
