"""Clinical classification metrics, AUROC, patient-level bootstrap confidence intervals.

Definitions (positive class = MSI): accuracy (TP+TN)/N, precision TP/(TP+FP), sensitivity
TP/(TP+FN), specificity TN/(TN+FP), F-measure 2PR/(P+R), AUROC the Mann-Whitney probability that
a positive slide scores above a negative one (ties count one half). A value whose denominator is
zero is NaN ("n/a" in reports), never a silent 0. Bootstrap resamples patients, not slides,
because slides of one patient are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

METRIC_NAMES = ("accuracy", "precision", "sensitivity", "specificity", "f_measure", "auroc")


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary confusion matrix."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def total(self) -> int:
        """Number of cases."""
        return self.tp + self.fp + self.tn + self.fn


def confusion(truth: np.ndarray, predicted: np.ndarray) -> Confusion:
    """Confusion counts of boolean truth against boolean predictions."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    return Confusion(
        tp=int((truth & predicted).sum()),
        fp=int((~truth & predicted).sum()),
        tn=int((~truth & ~predicted).sum()),
        fn=int((truth & ~predicted).sum()),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)); NaN without both classes."""
    truth = np.asarray(truth, bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, float))
    rank_sum = float(ranks[truth].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def binary_metrics(truth: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The six metrics of a scored, thresholded binary classification."""
    counts = confusion(truth, np.asarray(scores) >= threshold)
    precision = _ratio(counts.tp, counts.tp + counts.fp)
    sensitivity = _ratio(counts.tp, counts.tp + counts.fn)
    return {
        "accuracy": _ratio(counts.tp + counts.tn, counts.total),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(counts.tn, counts.tn + counts.fp),
        "f_measure": _ratio(2 * precision * sensitivity, precision + sensitivity),
        "auroc": auroc(truth, scores),
    }


def bootstrap_ci(
    truth: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    patients: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of each metric, resampling patients with replacement."""
    rng = np.random.default_rng(seed)
    unique, index = np.unique(np.asarray(patients), return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(unique))]
    draws = {name: [] for name in METRIC_NAMES}  # type: dict[str, list[float]]
    for _ in range(resamples):
        chosen = rng.integers(0, len(unique), len(unique))
        rows = np.concatenate([members[k] for k in chosen])
        for name, value in binary_metrics(truth[rows], scores[rows], threshold).items():
            draws[name].append(value)
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan,) * 2
        intervals[name] = (float(low), float(high))
    return intervals


def youden_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """Score threshold maximising sensitivity + specificity - 1 (midpoint between scores)."""
    truth, scores = np.asarray(truth, bool), np.asarray(scores, float)
    candidates = np.unique(scores)
    if candidates.size < 2:
        return float(candidates[0]) if candidates.size else 0.5
    cuts = (candidates[:-1] + candidates[1:]) / 2
    best, best_j = 0.5, -np.inf
    for cut in cuts:
        result = binary_metrics(truth, scores, float(cut))
        j = np.nan_to_num(result["sensitivity"]) + np.nan_to_num(result["specificity"]) - 1
        if j > best_j:
            best, best_j = float(cut), j
    return best
