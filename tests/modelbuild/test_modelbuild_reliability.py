"""The reliability figures of a classifier's probabilities: ECE, Brier score, NLL, the
reliability table, and the ECE a calibrated model shows by chance."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import drawn_overconfident

from appliance.modelbuild.reliability import (
    brier_score,
    chance_ece,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_table,
)


def test_ece_brier_and_nll_of_a_hand_worked_example() -> None:
    # two rows at 0.85 (one right), two at 0.65 (both right): |0.5-0.85|/2 + |1-0.65|/2
    probabilities = np.array([[0.85, 0.1, 0.05], [0.85, 0.1, 0.05],
                              [0.65, 0.25, 0.1], [0.1, 0.65, 0.25]])
    truth = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probabilities, truth) == pytest.approx(0.35)
    assert brier_score(probabilities, truth) == pytest.approx((0.035 + 1.535 + 0.195 + 0.195) / 4)
    assert negative_log_likelihood(probabilities, truth) == pytest.approx(
        -np.mean(np.log([0.85, 0.1, 0.65, 0.65])))
    table = reliability_table(probabilities, truth)
    assert [(r["confidence_from"], r["rows"], r["mean_confidence"], r["accuracy"])
            for r in table] == [(0.6, 2, 0.65, 1.0), (0.8, 2, 0.85, 0.5)]


def test_a_calibrated_model_s_ece_lies_within_what_chance_gives_and_an_overconfident_not() -> (
        None):
    calibrated, truth = drawn_overconfident(2000, 1.0)
    overconfident, _ = drawn_overconfident(2000, 2.0)
    assert expected_calibration_error(calibrated, truth) <= chance_ece(calibrated)["p95"]
    assert expected_calibration_error(overconfident, truth) > 3 * chance_ece(overconfident)["p95"]
