"""From tile probabilities to a slide score and label (Kather 2019: share of MSI tiles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SlideScore = Literal["mean", "share"]
TILE_THRESHOLD = 0.5


@dataclass(frozen=True)
class SlideScores:
    """Slide-level summary of its tile probabilities."""

    mean_probability: float
    msi_tile_share: float
    tile_count: int

    def score(self, method: SlideScore) -> float:
        """The score a label is decided on: mean tile probability or share of MSI tiles."""
        return self.mean_probability if method == "mean" else self.msi_tile_share


def aggregate(tile_probability: np.ndarray, tile_threshold: float = TILE_THRESHOLD) -> SlideScores:
    """Mean probability and share of tiles at or above tile_threshold."""
    probability = np.asarray(tile_probability, float)
    if probability.size == 0:
        raise ValueError("no tiles to aggregate; the slide had no scored tissue tile")
    return SlideScores(
        mean_probability=float(probability.mean()),
        msi_tile_share=float((probability >= tile_threshold).mean()),
        tile_count=int(probability.size),
    )


def unscored_tiles_problem(tile_probability: np.ndarray) -> str | None:
    """Why a slide's tile probabilities cannot be summarised, or None when they can: a model
    (an overflowing half-precision backend, a broken export) that answered some tiles with NaN,
    infinity or a value outside 0-1 would give a NaN mean, read as the negative label."""
    probability = np.asarray(tile_probability, float)
    with np.errstate(invalid="ignore"):
        bad = int(np.count_nonzero(~((probability >= 0.0) & (probability <= 1.0))))
    if bad == 0:
        return None
    return (f"the model answered {bad} of {probability.size} tiles with no probability (NaN, "
            "infinite or outside 0-1); the slide is not scored: check the model and its "
            "backend")


def slide_label(score: float, threshold: float, labels: tuple[str, str]) -> str:
    """labels[1] (positive) when the score reaches the threshold, else labels[0]."""
    return labels[1] if score >= threshold else labels[0]


def decisive_tiles(tile_probability: np.ndarray, count: int) -> np.ndarray:
    """Indices of the count tiles farthest from 0.5, most decisive first."""
    distance = np.abs(np.asarray(tile_probability, float) - 0.5)
    order: np.ndarray = np.argsort(-distance, kind="stable")[:count]
    return order
