"""The shipped default model: loads, states its synthetic origin, and grades typical skin."""

from __future__ import annotations

import onnx
import pytest

from appliance.inference.classifier import DEFAULT_MODEL, SkinClassifier
from appliance.inference.runner import OnnxRunner
from appliance.modelbuild.evaluate import find_float_model
from appliance.modelbuild.temperature import graph_temperature
from appliance.transport.payloads import FEATURE_KEYS
from appliance.updates.serving import ServingModel

# Per-grade medians of the shipped table (measured by appliance.skin.analysis on synthetic frames).
FINE = {
    "pore_count": 83, "pore_density_per_cm2": 67.55, "pore_mean_diameter_um": 148.4,
    "pore_area_ratio": 0.0125, "furrow_density_mm_per_mm2": 10.15, "hill_density_per_mm2": 21.0,
    "hill_mean_area_mm2": 0.0468, "furrow_mean_width_um": 40.6, "furrow_anisotropy": 0.101,
    "kime_score": 80.2, "lab_l": 49.6, "lab_a": 19.7, "lab_b": 21.1, "melanin_index": 20.3,
    "erythema_index": 18.6, "shine_ratio": 0.0,
}
COARSE = FINE | {
    "pore_count": 85, "pore_density_per_cm2": 69.2, "pore_mean_diameter_um": 186.0,
    "pore_area_ratio": 0.0195, "furrow_density_mm_per_mm2": 5.8, "hill_density_per_mm2": 7.3,
    "hill_mean_area_mm2": 0.134, "furrow_mean_width_um": 60.2, "furrow_anisotropy": 0.278,
    "kime_score": 39.8, "lab_l": 46.8, "melanin_index": 22.3, "erythema_index": 19.4,
}


def test_shipped_model_contract_says_synthetic_and_matches_our_features() -> None:
    contract = OnnxRunner(DEFAULT_MODEL).contract
    assert contract.feature_names == FEATURE_KEYS
    assert contract.labels == ("fine", "normal", "coarse")
    assert "SYNTHETIC" in contract.trained_on
    assert contract.extra["precision"] == "int8"
    assert contract.figures["validation"]["agreement_int8_float"] >= 0.99


def test_the_shipped_model_serves_probabilities_tempered_as_its_contract_says() -> None:
    """Its untempered probabilities were overconfident (T > 1 softens them), and on the
    validation rows, which the temperature was not fitted on, the tempered ones are nearer
    their accuracy."""
    figures = OnnxRunner(DEFAULT_MODEL).contract.figures["calibration"]["temperature"]
    float_path = find_float_model(OnnxRunner(DEFAULT_MODEL))
    assert float_path is not None
    for path in (DEFAULT_MODEL, float_path):
        assert graph_temperature(onnx.load_model(str(path))) == figures["value"] > 1.0
    assert figures["validation_ece_after"] < figures["validation_ece_before"]


def test_shipped_int8_is_at_least_twice_smaller_than_its_float_model() -> None:
    float_path = find_float_model(OnnxRunner(DEFAULT_MODEL))
    assert float_path is not None
    assert DEFAULT_MODEL.stat().st_size * 2 <= float_path.stat().st_size


@pytest.mark.parametrize(("features", "grade"), [(FINE, "fine"), (COARSE, "coarse")])
def test_shipped_model_grades_clear_cases(features: dict[str, float], grade: str) -> None:
    result = SkinClassifier.load(DEFAULT_MODEL).classify(features)
    assert result.label == grade
    assert result.probabilities[grade] > 0.5


def test_the_serving_model_names_the_features_it_reads() -> None:
    classifier = SkinClassifier.load(DEFAULT_MODEL)
    assert classifier.feature_names == classifier.contract.feature_names
    assert "kime_score" in classifier.feature_names  # so an unmeasured kime score stops a grade
    assert ServingModel(classifier).feature_names == classifier.feature_names
    assert ServingModel(None).feature_names == ()  # no model: nothing to withhold
