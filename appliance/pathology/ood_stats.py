"""Input statistics of a tile for the out-of-distribution guard: stain density and texture.

The network's pooled features alone do not tell a real H&E tile from the synthetic tissue the
demo model learnt (docs/pathology-ood.md), so the guard also describes the tile's pixels:
1. optical density per RGB channel (OD = -ln((I + 1) / 256)): mean, standard deviation and
   the 10th / 50th / 90th percentiles;
2. texture at three scales (no blur, Gaussian sigma 1.5 px and 3 px on the grey image): mean and
   standard deviation of the Sobel gradient magnitude and mean absolute Laplacian.
All 24 values go through log1p so that the shared covariance fits them better.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

TEXTURE_SIGMAS_PX = (0.0, 1.5, 3.0)
STATISTIC_COUNT = 3 + 3 + 9 + 3 * len(TEXTURE_SIGMAS_PX)


# the optical density of each of the 256 levels, in float32 as the statistics were fitted
LEVEL_DENSITY = -np.log((np.arange(256, dtype=np.float32) + 1.0) / 256.0)
QUANTILES = (0.1, 0.5, 0.9)


def optical_density_statistics(tiles_rgb: np.ndarray) -> np.ndarray:
    """Mean, sd and 10/50/90th percentiles of optical density per channel (N x 15).

    A channel has 256 levels, so each statistic is read off the tile's histogram of levels:
    the percentiles are numpy's (linear interpolation between the two pixels nearest in rank)
    without sorting a pixel, a quarter of the preparation's time before."""
    count, channels = len(tiles_rgb), 3
    flat = tiles_rgb.reshape(count, -1, channels)
    pixels = flat.shape[1]
    offsets = (np.arange(count, dtype=np.int64) * 256)[:, None]
    # histograms in order of rising density: level 255 first
    histograms = np.stack([np.bincount((flat[:, :, c] + offsets).ravel(), minlength=count * 256)
                           .reshape(count, 256)[:, ::-1] for c in range(channels)], axis=1)
    density = LEVEL_DENSITY[::-1].astype(np.float64)
    mean = histograms @ density / pixels
    spread = np.sqrt(np.einsum("ncl,ncl->nc", histograms,
                               (density[None, None, :] - mean[:, :, None]) ** 2) / pixels)
    ranks = np.cumsum(histograms, axis=2)  # pixels at or below each level, per tile and channel
    percentiles = []
    for q in QUANTILES:
        position = (pixels - 1) * q
        below = math.floor(position)
        low = density[(ranks <= below).sum(axis=2)]
        high = density[(ranks <= min(below + 1, pixels - 1)).sum(axis=2)]
        percentiles.append(low + (position - below) * (high - low))
    return np.concatenate([mean, spread, np.stack(percentiles, axis=1).reshape(count, 9)],
                          axis=1)


def texture_statistics(tile_rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude mean and sd and mean |Laplacian| at each scale of one tile."""
    grey = cv2.cvtColor(tile_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    values = []
    for sigma_px in TEXTURE_SIGMAS_PX:
        smooth = cv2.GaussianBlur(grey, (0, 0), sigma_px) if sigma_px else grey
        magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0),
                                  cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
        laplacian = np.abs(cv2.Laplacian(smooth, cv2.CV_32F))
        values += [magnitude.mean(), magnitude.std(), laplacian.mean()]
    return np.array(values, np.float32)


def tile_statistics(tiles_rgb: np.ndarray) -> np.ndarray:
    """The guard's input statistics of N x H x W x 3 uint8 tiles (N x STATISTIC_COUNT)."""
    if len(tiles_rgb) == 0:
        return np.zeros((0, STATISTIC_COUNT), np.float32)
    texture = np.stack([texture_statistics(tile) for tile in tiles_rgb])
    statistics = np.concatenate([optical_density_statistics(tiles_rgb), texture], axis=1)
    described: np.ndarray = np.log1p(np.maximum(statistics, 0.0)).astype(np.float32)
    return described
