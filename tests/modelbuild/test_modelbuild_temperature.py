"""Calibrated probabilities: the temperature fitted on the calibration split, put in the graph
in front of its softmax, and the grades left as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from inference_helpers import (
    LABELS,
    contract,
    drawn_overconfident,
    make_table,
    train_tiny,
    write_float,
)

from appliance.inference.runner import OnnxRunner
from appliance.modelbuild import temperature
from appliance.modelbuild.build import BuildSettings, BuiltModel, build_model
from appliance.modelbuild.reliability import expected_calibration_error, negative_log_likelihood
from appliance.modelbuild.table import write_table
from appliance.modelbuild.training import label_indices


def test_the_fitted_temperature_undoes_an_overconfidence_and_keeps_every_grade() -> None:
    overconfident, truth = drawn_overconfident(3000, 2.0)
    fitted = temperature.fit_temperature(overconfident, truth)
    assert fitted == pytest.approx(2.0, rel=0.1)
    calibrated = temperature.tempered(overconfident, fitted)
    assert np.array_equal(calibrated.argmax(axis=1), overconfident.argmax(axis=1))
    assert negative_log_likelihood(calibrated, truth) < negative_log_likelihood(overconfident,
                                                                                truth)
    assert expected_calibration_error(calibrated, truth) < expected_calibration_error(
        overconfident, truth) / 3


def test_a_calibration_split_all_right_does_not_make_the_model_certain() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]] * 20)
    truth = np.array([0, 1] * 20)
    fitted = temperature.fit_temperature(probabilities, truth)
    assert temperature.at_bound(fitted)
    assert fitted == pytest.approx(temperature.LEAST_TEMPERATURE, rel=1e-3)


def test_the_temperature_in_the_graph_divides_the_logits_before_the_softmax(
        tmp_path: Path) -> None:
    table = make_table(rows=300)
    path = write_float(tmp_path / "m.onnx", train_tiny(table, epochs=10), contract())
    features = table.features
    before = OnnxRunner(path).probabilities(features)
    temperature.set_temperature(path, 1.7)
    after = OnnxRunner(path).probabilities(features)  # loads as any model: Div is plain ONNX
    assert np.allclose(after, temperature.tempered(before, 1.7), atol=1e-5)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))
    assert temperature.graph_temperature(onnx.load_model(str(path))) == pytest.approx(1.7)
    with pytest.raises(ValueError, match="divides by a temperature already"):
        temperature.set_temperature(path, 1.7)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    folder = tmp_path_factory.mktemp("calibrated")
    table = write_table(folder / "grades.parquet", make_table(rows=600, noise=0.6))
    return build_model(BuildSettings(table=table, out_dir=folder / "out",
                                     trained_on="unit-test table", hidden=(64, 64), epochs=60))


def test_a_build_fits_the_temperature_on_its_calibration_rows_into_both_graphs(
        built: BuiltModel) -> None:
    figures = built.figures["calibration"]["temperature"]
    value = figures["value"]
    for path in (built.float_path, built.int8_path):
        assert temperature.graph_temperature(onnx.load_model(str(path))) == value
    calibration = make_table(rows=600, noise=0.6).rows("calibration")
    served = OnnxRunner(built.int8_path).probabilities(calibration.features)
    untempered = temperature.tempered(served, 1.0 / value)
    truth = label_indices(calibration.labels, LABELS)
    assert temperature.fit_temperature(untempered, truth) == pytest.approx(value, rel=1e-3)
    assert figures["fitted_on_rows"] == 60
    assert figures["nll_after"] <= figures["nll_before"]
