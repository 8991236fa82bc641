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

import cv2
import numpy as np

TEXTURE_SIGMAS_PX = (0.0, 1.5, 3.0)
STATISTIC_COUNT = 3 + 3 + 9 + 3 * len(TEXTURE_SIGMAS_PX)


def optical_density_statistics(tiles_rgb: np.ndarray) -> np.ndarray:
    """Mean, sd and 10/50/90th percentiles of optical density per channel (N x 15)."""
    density = -np.log((tiles_rgb.astype(np.float32) + 1.0) / 256.0)
    flat = density.reshape(len(tiles_rgb), -1, 3)
    percentiles = np.quantile(flat, [0.1, 0.5, 0.9], axis=1).transpose(1, 0, 2)
    return np.concatenate(
        [flat.mean(axis=1), flat.std(axis=1), percentiles.reshape(len(tiles_rgb), 9)], axis=1
    )


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
