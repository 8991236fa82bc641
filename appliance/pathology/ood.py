"""Out-of-distribution guard: is a tile like the tissue the model was trained on?

The method (Lee et al., NeurIPS 2018, "A simple unified framework for detecting out-of-distribution
samples"): fit per-class means and one shared covariance of a tile's description on the training
tiles; a tile's distance is the smallest Mahalanobis distance to a class mean. The description
(``guard_inputs``) is the tile's input statistics (appliance/pathology/ood_stats.py) beside the
network's features (the model output ``features``: the global average of each conv block's last
activation, the last of them being the penultimate layer), as Lee et al. combine layers.

1. ``in_distribution`` of a tile = the share of training tiles at least as far from their class
   mean (1 = typical, 0 = farther than every training tile). It is read off the training
   distances' quantiles, so it means the same for every model.
2. A tile is *in distribution* when that share is at least ``tile_min_score``.
3. A slide is *supported* when at least ``slide_min_share`` of its tiles are in distribution;
   otherwise its label is ``unsupported`` (appliance/pathology/verdict.py), never MSI or MSS.
   ``slide_min_share`` is picked on held-out in-distribution slides so that at least
   ``pass_rate`` of them pass (``choose_slide_min_share``), and never above one half.

The guard travels inside the ONNX file (metadata key ``ood``; docs/pathology-ood.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from appliance import safejson
from appliance.pathology.ood_stats import tile_statistics

METADATA_KEY = "ood"
KIND = "mahalanobis-stats-blocks/1"
DEFAULT_TILE_MIN_SCORE = 0.03
MOSTLY = 0.5
QUANTILE_COUNT = 201
SHRINKAGE = 0.01


class GuardError(ValueError):
    """An OOD description that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class DistributionGuard:
    """Class means, shared precision and training-distance quantiles of tile descriptions."""

    class_means: np.ndarray
    precision: np.ndarray
    distance_quantiles: np.ndarray
    tile_min_score: float = DEFAULT_TILE_MIN_SCORE
    slide_min_share: float = MOSTLY

    @property
    def feature_count(self) -> int:
        """Length of the feature vector the guard expects."""
        return int(self.class_means.shape[1])

    def distances(self, described: np.ndarray) -> np.ndarray:
        """Smallest Mahalanobis distance of each description (``guard_inputs``) to a class mean."""
        rows = np.asarray(described, np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.feature_count:
            raise GuardError(f"features of shape {rows.shape}; the guard expects N x "
                             f"{self.feature_count}")
        # (x - m)' P (x - m) through one 2-D BLAS product: numpy's einsum of the three
        # operands loops in C without BLAS (0.36 s for 889 full-width tiles here, about 4 s on
        # a 16-core GPU host, where it held the slide finisher; docs/pathology-server.md), and
        # a 3-D @ 2-D product is a slow batched loop (80 ms); this is 12 ms
        centred = (rows[:, None, :] - self.class_means[None, :, :]).reshape(-1, rows.shape[1])
        squared = np.einsum("nd,nd->n", centred @ self.precision, centred).reshape(
            len(rows), len(self.class_means))
        nearest: np.ndarray = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
        return nearest

    def scores(self, described: np.ndarray) -> np.ndarray:
        """``in_distribution`` per tile: share of training tiles at least this far (0-1)."""
        levels = np.linspace(1.0, 0.0, len(self.distance_quantiles))
        distance = self.distances(described)
        score = np.interp(distance, self.distance_quantiles, levels, left=1.0, right=0.0)
        return np.asarray(score, np.float32)

    def in_distribution(self, tile_scores: np.ndarray) -> np.ndarray:
        """Per tile, whether its score reaches tile_min_score (a NaN score does not)."""
        typical: np.ndarray = np.asarray(tile_scores, float) >= self.tile_min_score
        return typical

    def in_distribution_share(self, tile_scores: np.ndarray) -> float:
        """Share of a slide's tiles whose score reaches tile_min_score."""
        typical = self.in_distribution(tile_scores)
        return float(typical.mean()) if typical.size else 0.0

    def supported(self, share: float) -> bool:
        """Whether a slide with this in-distribution share gets an MSI/MSS label."""
        return share >= self.slide_min_share

    def to_metadata(self) -> str:
        """The JSON stored under the ONNX metadata key ``ood``."""
        return json.dumps({
            "kind": KIND,
            "class_means": np.round(self.class_means, 6).tolist(),
            "precision": np.round(self.precision, 6).tolist(),
            "distance_quantiles": np.round(self.distance_quantiles, 6).tolist(),
            "tile_min_score": self.tile_min_score,
            "slide_min_share": self.slide_min_share,
        })


def guard_inputs(tiles_rgb: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The description the guard scores: input statistics beside the model's features."""
    return guard_inputs_from_statistics(tile_statistics(tiles_rgb), features)


def guard_inputs_from_statistics(statistics: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The same description from statistics computed earlier (by a preparation worker)."""
    return np.concatenate([statistics, np.asarray(features, np.float32)], axis=1)


def guard_from_metadata(text: str) -> DistributionGuard:
    """Read the guard back from its metadata JSON; GuardError when malformed."""
    try:
        data = safejson.loads(text)
        if data.get("kind") != KIND:
            raise GuardError(f"guard kind {data.get('kind')!r}; this version reads {KIND!r}")
        guard = DistributionGuard(
            class_means=np.asarray(data["class_means"], np.float64),
            precision=np.asarray(data["precision"], np.float64),
            distance_quantiles=np.asarray(data["distance_quantiles"], np.float64),
            tile_min_score=float(data["tile_min_score"]),
            slide_min_share=float(data["slide_min_share"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GuardError(f"unreadable OOD guard ({exc})") from exc
    _check_shapes(guard)
    return guard


def _check_shapes(guard: DistributionGuard) -> None:
    means, precision = guard.class_means, guard.precision
    if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]):
        raise GuardError(f"class means {means.shape} and precision {precision.shape} disagree")
    quantiles = guard.distance_quantiles
    if quantiles.ndim != 1 or len(quantiles) < 2 or np.any(np.diff(quantiles) < 0):
        raise GuardError("distance quantiles must be an ascending list of at least 2 values")
    if not (0 <= guard.tile_min_score <= 1 and 0 <= guard.slide_min_share <= 1):
        raise GuardError("tile_min_score and slide_min_share must lie in 0..1")


def fit_guard(described: np.ndarray, labels: np.ndarray) -> DistributionGuard:
    """Fit class means, a shrunk shared covariance and the training-distance quantiles."""
    rows = np.asarray(described, np.float64)
    classes = np.unique(labels)
    if rows.ndim != 2 or len(rows) <= rows.shape[1] or len(classes) < 1:
        raise GuardError(f"{len(rows)} training tiles of {rows.shape[1:]} features is too few "
                         "to fit a covariance; use more tiles than features")
    means = np.stack([rows[labels == label].mean(axis=0) for label in classes])
    centred = rows - means[np.searchsorted(classes, labels)]
    covariance = centred.T @ centred / (len(rows) - len(classes))
    ridge = SHRINKAGE * np.trace(covariance) / len(covariance)
    precision = np.linalg.pinv(covariance + ridge * np.eye(len(covariance)))
    partial = DistributionGuard(means, precision, np.array([0.0, 1.0]))
    training = partial.distances(rows)
    quantiles = np.quantile(training, np.linspace(0, 1, QUANTILE_COUNT))
    return DistributionGuard(means, precision, quantiles)


def choose_slide_min_share(
    guard: DistributionGuard, held_out_shares: np.ndarray, pass_rate: float = 0.95
) -> DistributionGuard:
    """The guard with slide_min_share set so >= pass_rate of held-out slides pass (<= 1/2)."""
    shares = np.sort(np.asarray(held_out_shares, float))
    if shares.size == 0:
        raise GuardError("no held-out slides to choose the slide threshold on")
    allowed_failures = int(np.floor((1 - pass_rate) * len(shares)))
    cut = min(MOSTLY, float(shares[allowed_failures]))
    return DistributionGuard(guard.class_means, guard.precision, guard.distance_quantiles,
                             guard.tile_min_score, cut)
