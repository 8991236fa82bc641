"""Metrics against hand-computed values, aggregation of tile scores, the evaluate report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.pathology.aggregate import aggregate, decisive_tiles, slide_label
from appliance.pathology.metrics import (
    auroc,
    binary_metrics,
    bootstrap_ci,
    confusion,
    youden_threshold,
)

TRUTH = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
SCORES = np.array([0.9, 0.8, 0.4, 0.7, 0.6, 0.3, 0.2, 0.1, 0.35, 0.05])


def test_confusion_and_metrics_match_hand_counts() -> None:
    # At 0.5: TP = 3 (0.9, 0.8, 0.7), FN = 1 (0.4), FP = 1 (0.6), TN = 5.
    counts = confusion(TRUTH, SCORES >= 0.5)
    assert (counts.tp, counts.fn, counts.fp, counts.tn) == (3, 1, 1, 5)
    result = binary_metrics(TRUTH, SCORES, 0.5)
    assert result["accuracy"] == pytest.approx(8 / 10)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["sensitivity"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(5 / 6)
    assert result["f_measure"] == pytest.approx(0.75)
    # Pairs (pos, neg) = 24; the only positive below a negative: 0.4 < 0.6 -> 23/24.
    assert result["auroc"] == pytest.approx(23 / 24)


def test_auroc_counts_ties_as_half_and_needs_both_classes() -> None:
    assert auroc(np.array([1, 0], bool), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert auroc(np.array([1, 1, 0], bool), np.array([0.5, 0.9, 0.5])) == pytest.approx(0.75)
    assert math.isnan(auroc(np.array([1, 1], bool), np.array([0.2, 0.3])))


def test_undefined_ratios_are_nan_not_zero() -> None:
    result = binary_metrics(np.array([0, 0, 1], bool), np.array([0.1, 0.2, 0.3]), 0.9)
    assert math.isnan(result["precision"])  # nothing called positive
    assert result["sensitivity"] == 0.0
    assert math.isnan(result["f_measure"])


def test_bootstrap_ci_brackets_estimate_and_resamples_patients() -> None:
    patients = np.array([f"p{i}" for i in range(10)])
    ci = bootstrap_ci(TRUTH, SCORES, 0.5, patients, resamples=300)
    for name, value in binary_metrics(TRUTH, SCORES, 0.5).items():
        low, high = ci[name]
        assert low <= value <= high, name
    # Ten copies of each slide under ONE patient id: resampling patients must not pretend
    # there are 100 independent cases, so the interval stays as wide as with 10 slides.
    many = bootstrap_ci(np.repeat(TRUTH, 10), np.repeat(SCORES, 10), 0.5,
                        np.repeat(patients, 10), resamples=300)
    assert many["accuracy"][1] - many["accuracy"][0] > 0.2


def test_youden_threshold_separates_separable_scores() -> None:
    threshold = youden_threshold(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.3, 0.6, 0.8]))
    assert 0.3 < threshold < 0.6


def test_aggregate_mean_share_and_label() -> None:
    scores = aggregate(np.array([0.9, 0.6, 0.2, 0.1]))
    assert scores.mean_probability == pytest.approx(0.45)
    assert scores.msi_tile_share == pytest.approx(0.5)
    assert scores.tile_count == 4
    assert slide_label(scores.score("mean"), 0.5, ("MSS", "MSI")) == "MSS"
    assert slide_label(scores.score("share"), 0.5, ("MSS", "MSI")) == "MSI"
    assert list(decisive_tiles(np.array([0.5, 0.95, 0.02, 0.6]), 2)) == [2, 1]
    with pytest.raises(ValueError, match="no tiles"):
        aggregate(np.array([]))
