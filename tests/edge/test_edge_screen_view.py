"""The kiosk screen's view of a result says why a grade was withheld, and only when it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.capture.quality import FrameQuality
from appliance.edge.measure import Measurement, measure_frame
from appliance.edge.reasons import Withheld, grade_withheld, not_graded_reason
from appliance.edge.screen_view import (
    ReferenceFileError,
    load_references,
    result_view,
    standing,
)
from appliance.edge.testing import FIXED_FEATURES
from appliance.transport import payloads
from appliance.transport.payloads import FEATURE_KEYS

RGB = np.zeros((8, 8, 3), np.uint8)


class _ReadsEverything:
    name, version, feature_names = "grader", "1", FEATURE_KEYS

    def classify(self, features: object) -> payloads.Classification:
        return payloads.Classification(model=self.name, version=self.version, label="fine",
                                       probabilities={"fine": 1.0})


def _view(measurement: Measurement, with_model: bool = True) -> dict[str, object]:
    measured = measure_frame(RGB, 10.0, FrameQuality("ok", ()), lambda _rgb, _um: measurement,
                             _ReadsEverything() if with_model else None)
    result = payloads.Result(
        measurement_id=payloads.new_measurement_id(), device_id="k1", site="lab",
        captured_at=payloads.utc_now(), software_version="x", quality=measured.quality,
        features=measured.features, classification=measured.classification,
        not_validated=list(measured.not_validated))
    return result_view(result, {}, overlay=False)


def test_a_withheld_grade_names_the_features_the_model_needed() -> None:
    view = _view(Measurement(FIXED_FEATURES, not_validated=("hill_mean_area_mm2", "kime_score")))
    assert view["grade"] is None
    assert view["grade_withheld"] == {"features": ["hill_mean_area_mm2", "kime_score"],
                                      "frame": False}


def test_a_frame_outside_the_range_is_said_as_such() -> None:
    view = _view(Measurement(FIXED_FEATURES, frame_outside=("scale 30.00 um/px outside 7-13",),
                             not_validated=("pore_count", "kime_score")))
    assert view["grade_withheld"] == {"features": ["pore_count", "kime_score"], "frame": True}


def test_a_graded_result_and_a_kiosk_without_a_model_withhold_nothing() -> None:
    graded = _view(Measurement(FIXED_FEATURES))
    assert (graded["grade"], graded["grade_withheld"]) == ("fine", None)
    no_model = _view(Measurement(FIXED_FEATURES, not_validated=("kime_score",)), False)
    assert (no_model["grade"], no_model["grade_withheld"]) == (None, None)
    outside = _view(Measurement(FIXED_FEATURES, frame_outside=("scale 30.00 um/px outside 7-13",),
                                not_validated=("kime_score",)), False)
    assert outside["grade_withheld"] is None  # no model: there was no grade to withhold


def test_the_reason_reads_back_as_it_was_written() -> None:
    assert grade_withheld([not_graded_reason(("hill_density_per_mm2", "kime_score"))]) == \
        Withheld(("hill_density_per_mm2", "kime_score"), frame=False)
    assert grade_withheld(["blurred", not_graded_reason(())]) == Withheld((), frame=False)
    assert grade_withheld(["blurred", "not graded by hand"]) is None


def test_a_hostile_reason_is_read_back_bounded_to_the_known_features() -> None:
    # the console reads reasons from whatever a kiosk sent: made-up names, markup and a
    # reason as long as a payload allows give back only the contract's keys, each once
    named = ["<script>alert(1)</script>", "kime_score", *["pore_count"] * 20_000,
             "\x1b[2Jwrinkles", *(f"f{i}" for i in range(5_000))]
    withheld = grade_withheld([not_graded_reason(named)])
    assert withheld == Withheld(("kime_score", "pore_count"), frame=False)


@pytest.mark.parametrize("mean", ['"inf"', "1e400", "NaN", "true"])
def test_a_reference_figure_that_is_no_finite_number_is_refused_naming_it(
    tmp_path: Path, mean: str
) -> None:
    """Infinity would reach the page as JSON it cannot parse; NaN ended the screen's thread."""
    reference = tmp_path / "reference.json"
    reference.write_text(
        f'{{"bands": {{"40-49": {{"kime_score": {{"mean": {mean}, "sd": 9.0, "n": 12}}}}}}}}'
    )
    with pytest.raises(ReferenceFileError, match=r"reference\.json: .*40-49.*kime_score.*mean"):
        load_references(reference)


def test_a_typical_range_past_the_float_range_is_not_shown() -> None:
    """Each figure finite, yet mean + 1.28 SD is not: Infinity is no JSON the page can parse."""
    assert standing(61.0, {"mean": 1e308, "sd": 1e308, "n": 3.0}) is None
    shown = standing(61.0, {"mean": 50.0, "sd": 10.0, "n": 3.0})
    assert shown is not None
    assert shown["where"] == "within"


def _classified(probabilities: dict[str, float]) -> payloads.Result:
    label = max(probabilities, key=lambda name: probabilities[name])
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(), device_id="k1", site="lab",
        captured_at=payloads.utc_now(), software_version="x",
        quality=payloads.Quality(verdict="ok"), features=FIXED_FEATURES,
        classification=payloads.Classification(model="grader", version="1", label=label,
                                               probabilities=probabilities))


def test_a_near_tie_is_shown_between_its_two_grades_in_the_models_order() -> None:
    """0.46 against 0.44 was shown as a definite "Normal": the top grade of such a result is
    right little more often than the second (edge/grade_margin.py)."""
    view = result_view(_classified({"fine": 0.44, "normal": 0.46, "coarse": 0.10}), {}, False)
    assert (view["grade"], view["grade_between"]) == ("normal", ["fine", "normal"])
    view = result_view(_classified({"fine": 0.05, "normal": 0.42, "coarse": 0.53}), {}, False)
    assert view["grade_between"] == ["normal", "coarse"]


def test_a_grade_that_stands_clear_is_one_grade() -> None:
    view = result_view(_classified({"fine": 0.30, "normal": 0.45, "coarse": 0.25}), {}, False)
    assert (view["grade"], view["grade_between"]) == ("normal", None)
    alone = result_view(_classified({"fine": 1.0}), {}, False)  # a model with one label
    assert alone["grade_between"] is None
