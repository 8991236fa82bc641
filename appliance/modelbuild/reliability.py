"""How far a classifier's probabilities can be taken at their word, on labelled rows.

A probability is calibrated when, of the rows given top probability 0.8, about 80 % are right.
Measured here on the top label (the grade shown):

1. Rows are put in ``BINS`` equal bins of confidence (the top probability; bin i holds
   (i/BINS, (i+1)/BINS]), and each bin's mean confidence is set against its accuracy: the
   reliability table.
2. Expected calibration error (ECE): the row-weighted mean gap between the two over the bins
   (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, equation 3).
3. Brier score: mean squared distance of the probability vector from the one-hot truth, and
   negative log-likelihood (NLL) of the true label: proper scores, which reward calibration
   and sharpness together and need no bins.

On a few hundred rows the ECE of even a perfectly calibrated model is not 0 (a bin of 15 rows
at 0.7 holds 10 or 11 right by chance), so ``chance_ece`` gives what a calibrated model would
show on the same confidences and rows, drawn at random.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

BINS = 10
FLOOR = float(np.finfo(np.float32).tiny)  # a float32 softmax's 0 read as its least normal

Probabilities = npt.NDArray[np.floating[Any]]
Truth = npt.NDArray[np.int64]


def _bins(confidence: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.int64]:
    return np.asarray(np.clip(np.ceil(confidence * bins) - 1, 0, bins - 1), dtype=np.int64)


def _ece(confidence: npt.NDArray[np.float64], right: npt.NDArray[np.bool_], bins: int) -> float:
    index = _bins(confidence, bins)
    total = 0.0
    for b in np.unique(index):
        chosen = index == b
        total += chosen.mean() * abs(right[chosen].mean() - confidence[chosen].mean())
    return float(total)


def expected_calibration_error(probabilities: Probabilities, truth: Truth,
                               bins: int = BINS) -> float:
    """Top-label ECE over ``bins`` equal confidence bins."""
    p = np.asarray(probabilities, dtype=np.float64)
    return _ece(p.max(axis=1), p.argmax(axis=1) == truth, bins)


def brier_score(probabilities: Probabilities, truth: Truth) -> float:
    """Mean over rows of the squared distance between probabilities and the one-hot truth
    (0 perfect; 2 certain and wrong)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean(np.sum((p - np.eye(p.shape[1])[truth]) ** 2, axis=1)))


def negative_log_likelihood(probabilities: Probabilities, truth: Truth) -> float:
    """Mean -log of the probability given to the true label (a 0 read as FLOOR)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(truth)), truth], FLOOR))))


def reliability_table(probabilities: Probabilities, truth: Truth,
                      bins: int = BINS) -> list[dict[str, Any]]:
    """One row per confidence bin that holds rows: its range, rows, mean confidence, accuracy."""
    p = np.asarray(probabilities, dtype=np.float64)
    confidence, right = p.max(axis=1), p.argmax(axis=1) == truth
    index = _bins(confidence, bins)
    return [
        {"confidence_from": round(b / bins, 3), "confidence_to": round((b + 1) / bins, 3),
         "rows": int((index == b).sum()),
         "mean_confidence": round(float(confidence[index == b].mean()), 4),
         "accuracy": round(float(right[index == b].mean()), 4)}
        for b in np.unique(index)
    ]


def chance_ece(probabilities: Probabilities, draws: int = 2000, seed: int = 0,
               bins: int = BINS) -> dict[str, float]:
    """Median and 95th percentile of the ECE a perfectly calibrated model would show on these
    confidences (each row right with probability equal to its confidence), over ``draws``."""
    confidence = np.asarray(probabilities, dtype=np.float64).max(axis=1)
    rng = np.random.default_rng(seed)
    eces = [_ece(confidence, rng.random(len(confidence)) < confidence, bins)
            for _ in range(draws)]
    return {"median": round(float(np.median(eces)), 4),
            "p95": round(float(np.percentile(eces, 95)), 4)}


def reliability(probabilities: Probabilities, truth: Truth) -> dict[str, Any]:
    """Every figure above for one set of rows, rounded for a report."""
    p = np.asarray(probabilities, dtype=np.float64)
    return {
        "rows": len(truth),
        "accuracy": round(float(np.mean(p.argmax(axis=1) == truth)), 4),
        "mean_confidence": round(float(p.max(axis=1).mean()), 4),
        "ece": round(expected_calibration_error(p, truth), 4),
        "brier": round(brier_score(p, truth), 4),
        "nll": round(negative_log_likelihood(p, truth), 4),
        "table": reliability_table(p, truth),
    }
