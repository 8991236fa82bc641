"""Exact tilings drawn to test the furrow-length estimator on (not skin: no furrow, no growth)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import Voronoi

from appliance.synthetic.skin_truth import tiling_labels

SIZE_PX = 400
JITTER = 0.22  # of the spacing


def hexagonal_voronoi(spacing_px: float, seed: int) -> tuple[np.ndarray, float]:
    """Cell labels of a jittered hexagonal Voronoi tiling and its true edge length (px)."""
    rng = np.random.default_rng(seed)
    pad = 3.0 * spacing_px
    rows = np.arange(-pad, SIZE_PX + pad, spacing_px * np.sqrt(3.0) / 2.0)
    points = np.array([(x + (i % 2) * spacing_px / 2.0, y) for i, y in enumerate(rows)
                       for x in np.arange(-pad, SIZE_PX + pad, spacing_px)])
    points += rng.normal(0.0, JITTER * spacing_px, points.shape)
    diagram = Voronoi(points)
    polygons = [diagram.vertices[diagram.regions[r]] for r in diagram.point_region
                if diagram.regions[r] and -1 not in diagram.regions[r]]
    return tiling_labels(polygons, SIZE_PX)
