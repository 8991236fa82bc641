"""One measurement, one model: a model swapped in mid-measurement grades the next one only.

A measurement reads the serving model's feature list (a grade built on a feature outside the
validated range is withheld) and then classifies. The updater may swap models at any moment;
these tests swap right after the feature list is read, the moment the two steps could split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import pytest

from appliance.capture.quality import FrameQuality
from appliance.config import config_from_mapping
from appliance.edge.measure import Measurement, measure_frame
from appliance.edge.service import load_model
from appliance.edge.testing import FIXED_FEATURES
from appliance.inference.classifier import DEFAULT_MODEL, SkinClassifier
from appliance.shipped import shipped_path
from appliance.transport import payloads
from appliance.updates.serving import ServingModel

RGB = np.zeros((8, 8, 3), np.uint8)
GOOD_FRAME = FrameQuality("ok", ())


class _Grader:
    """A model that gives one label and reads the features it is told; ``on_read`` runs each
    time its feature list is read (a swap by the updater, in these tests)."""

    version = "1"

    def __init__(self, name: str, label: str, reads: tuple[str, ...]) -> None:
        self.name, self.label, self.reads = name, label, reads
        self.on_read: Callable[[], None] = lambda: None
        self.graded = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        self.on_read()
        return self.reads

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        self.graded += 1
        return payloads.Classification(model=self.name, version=self.version, label=self.label,
                                       probabilities={self.label: 1.0})

    def pinned(self) -> _Grader:
        return self  # never changes by itself


def _hills_unsure(rgb: np.ndarray, um_per_px: float) -> Measurement:
    return Measurement(FIXED_FEATURES, not_validated=("hill_density_per_mm2",))


def _serving(model: _Grader) -> ServingModel:
    return ServingModel(cast(Any, model))


def test_a_swap_after_the_feature_list_is_read_does_not_grade_this_measurement() -> None:
    colour_only = _Grader("colour", "fine", ("lab_l", "lab_a"))  # may grade: all measured
    texture = _Grader("texture", "coarse", ("lab_l", "hill_density_per_mm2"))
    serving = _serving(colour_only)
    colour_only.on_read = lambda: serving.swap(cast(Any, texture), None)  # the updater, now

    measured = measure_frame(RGB, 10.0, GOOD_FRAME, _hills_unsure, serving)

    assert measured.classification is not None
    assert measured.classification.model == "colour"  # the model whose features were checked
    assert texture.graded == 0  # never asked to grade a hill density that was not measured
    following = measure_frame(RGB, 10.0, GOOD_FRAME, _hills_unsure, serving)
    assert following.classification is None  # the next measurement is the new model's
    assert "not graded: the model reads features outside the validated range " \
           "(hill_density_per_mm2)" in following.quality.reasons


def test_a_swap_back_mid_measurement_does_not_grade_a_withheld_measurement() -> None:
    texture = _Grader("texture", "coarse", ("lab_l", "hill_density_per_mm2"))
    colour_only = _Grader("colour", "fine", ("lab_l",))
    serving = _serving(texture)
    texture.on_read = lambda: serving.swap(cast(Any, colour_only), None)

    measured = measure_frame(RGB, 10.0, GOOD_FRAME, _hills_unsure, serving)

    assert measured.classification is None  # withheld for the texture model, by its own list
    assert colour_only.graded == 0
    assert any("(hill_density_per_mm2)" in r for r in measured.quality.reasons)


def test_a_pinned_model_keeps_its_name_features_and_grades_after_a_swap() -> None:
    first = _Grader("first", "fine", ("lab_l",))
    second = _Grader("second", "coarse", ("lab_a", "lab_l"))
    serving = _serving(first)
    pinned = serving.pinned()
    serving.swap(cast(Any, second), None)
    assert pinned is not None
    assert (pinned.name, pinned.feature_names) == ("first", ("lab_l",))
    assert pinned.classify({"lab_l": 1.0}).model == "first"
    assert serving.classify({"lab_l": 1.0, "lab_a": 1.0}).model == "second"
    serving.swap(None, None)
    assert serving.pinned() is None  # no model serves: results go out unclassified


def test_a_pinned_skin_classifier_is_not_changed_by_a_reload() -> None:
    classifier = SkinClassifier.load(DEFAULT_MODEL)  # the INT8 model
    pinned = classifier.pinned()
    features = FIXED_FEATURES.model_dump()
    int8_answer = pinned.classify(features)
    classifier.reload(shipped_path("skin-texture-grade.float.onnx"))  # SIGHUP, another file
    assert classifier.contract.extra["precision"] == "float32"
    assert pinned.contract.extra["precision"] == "int8"  # still the model it was pinned to
    assert pinned.path == DEFAULT_MODEL
    assert pinned.classify(features) == int8_answer


def test_the_daemon_journal_names_the_model_it_serves_and_loading_alone_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Loading a model is a debug line (one-shot commands print none per run); the daemon
    says at INFO, in its own words, which model serves."""
    caplog.set_level(logging.INFO)
    SkinClassifier.load(DEFAULT_MODEL)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    serving = load_model(config_from_mapping({}, environ={}))
    assert serving is not None
    said = [(r.name, r.getMessage()) for r in caplog.records if r.levelno == logging.INFO]
    assert said == [("appliance.edge.service",
                     f"model skin-texture-grade {serving.version} serving, from {DEFAULT_MODEL}")]
