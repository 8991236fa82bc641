"""benchmarks/fit_pore_score.py: the fit behind ``pores.PoreModel``, reproducible from the repo."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.skin.pores import (
    MODEL,
    PoreModel,
    failed_tests,
    measure_candidates,
    pore_readings,
    pore_score,
    pore_tests,
)
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture
from appliance.synthetic.skin import synthetic_frame

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from fit_pore_score import LEFT_OUT, NAMES, NOT_A_PORE, PORE, fit_logistic, labels  # noqa: E402


def test_newton_fit_recovers_known_coefficients_per_unit_of_each_reading() -> None:
    generator = np.random.default_rng(3)
    # readings on scales and offsets far from standard, so the way back from the
    # standardised fit is tested too
    readings = generator.normal([5.0, -2.0, 0.0], [0.5, 3.0, 0.05], size=(40_000, 3))
    truth, intercept = np.array([2.0, -0.7, 30.0]), -9.0
    chance = 1.0 / (1.0 + np.exp(-(intercept + readings @ truth)))
    is_pore = generator.random(len(readings)) < chance
    fitted_intercept, fitted = fit_logistic(readings, is_pore)
    np.testing.assert_allclose(fitted, truth, rtol=0.06)
    assert abs(fitted_intercept - intercept) < 0.5


def test_the_penalty_shrinks_the_standardised_coefficients() -> None:
    generator = np.random.default_rng(4)
    readings = generator.normal(size=(300, 2))
    is_pore = generator.random(300) < 1.0 / (1.0 + np.exp(-3.0 * readings[:, 0]))
    _, loose = fit_logistic(readings, is_pore, penalty=0.0)
    _, tight = fit_logistic(readings, is_pore, penalty=100.0)
    assert abs(tight[0]) < 0.8 * abs(loose[0])


def test_the_readings_weighed_by_the_model_are_pore_score_exactly() -> None:
    frame = synthetic_frame(11, 0, "mixed")
    prepared = prepare(frame.image_rgb, frame.um_per_px)
    found = measure_candidates(prepared, measure_texture(prepared).furrow_sample)
    tests = pore_tests(found)
    readings = pore_readings(found)
    readings["failed_tests"] = failed_tests(tests, len(found.shape.floor))
    assert tuple(readings) == NAMES
    assert set(NAMES) | {"intercept"} == {field.name for field in dataclasses.fields(PoreModel)}
    score = np.full(len(found.shape.floor), MODEL.intercept)
    for name in NAMES:
        score += getattr(MODEL, name) * readings[name]
    assert len(score) > 50
    assert np.array_equal(score, pore_score(found, tests))


def test_the_nearest_pit_within_reach_is_the_pore_the_others_near_it_left_out() -> None:
    true_centres = np.array([[10.0, 10.0], [100.0, 100.0]])
    reach = np.array([5.0, 5.0])
    pits = np.array([[12.0, 10.0], [10.0, 13.0], [40.0, 40.0], [104.0, 100.0], [100.0, 106.0]])
    assert labels(true_centres, reach, pits).tolist() == [PORE, LEFT_OUT, NOT_A_PORE, PORE,
                                                           NOT_A_PORE]
    assert labels(true_centres[:0], reach[:0], pits).tolist() == [NOT_A_PORE] * 5


def test_a_tiny_run_prints_every_coefficient_of_the_model_beside_the_shipped_ones() -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fit_pore_score.py"), "--wide", "0", "1", "--mixed",
         "0", "0", "--workers", "1"], capture_output=True, text=True, timeout=120, env=env,
        check=True)
    result = json.loads(done.stdout)
    fields = {field.name for field in dataclasses.fields(PoreModel)}
    assert set(result["fitted_model"]) == fields
    assert result["shipped_model"] == dataclasses.asdict(MODEL)
    assert all(np.isfinite(value) for value in result["fitted_model"].values())
    assert result["frames"] == 3
    assert 0 < result["pores"] < result["pits"] <= result["profiled_pits"]


def test_no_frames_is_refused_with_exit_2() -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fit_pore_score.py"), "--wide", "5", "0", "--mixed",
         "3", "0"], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 2
    assert "no frames to fit on" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_weight_of_k_fits_as_k_copies_of_the_row() -> None:
    # the joint fit (benchmarks/fit_pore_rule.py --joint) weighs the junction pits, its hard
    # negatives, by --junction-weight: a weight must mean what that many copies would
    generator = np.random.default_rng(5)
    readings = generator.normal(0.0, 1.0, size=(3_000, 2))
    is_pore = generator.random(len(readings)) < 1.0 / (1.0 + np.exp(-(readings @ [1.5, -2.0])))
    weight = np.where(is_pore, 1.0, 3.0)  # every negative weighs 3
    copies = np.repeat(np.arange(len(readings)), weight.astype(int))
    weighted = fit_logistic(readings, is_pore, sample_weight=weight)
    copied = fit_logistic(readings[copies], is_pore[copies])
    # the same to 0.1 % (the penalty is on the standardised columns, whose spread the copies
    # move a little); negatives weighing 3 lower the intercept by about log 3
    assert weighted[0] == pytest.approx(copied[0], abs=1e-3)
    assert np.allclose(weighted[1], copied[1], rtol=1e-3)
    assert fit_logistic(readings, is_pore)[0] - weighted[0] == pytest.approx(np.log(3.0), abs=0.2)
