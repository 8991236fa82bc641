"""The kiosk overlay is drawn with the grade the model gave the result (the caption names it)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

import numpy as np

from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame
from appliance.edge.measure import Measurement
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.session import SessionTracker
from appliance.edge.testing import FIXED_FEATURES
from appliance.synthetic.skin import synthetic_frame
from appliance.transport import payloads


class _Model:
    name, version = "grader", "1"
    feature_names = payloads.FEATURE_KEYS

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        return payloads.Classification(model=self.name, version=self.version, label="coarse",
                                       probabilities={"coarse": 1.0})


def _measured_once(not_validated: tuple[payloads.FeatureKey, ...]) -> tuple[
        Accepted, list[tuple[str | None, tuple[str, ...] | None]]]:
    """One customer through the real pipeline; what the overlay drawer was called with."""
    drawn_with: list[tuple[str | None, tuple[str, ...] | None]] = []

    def analyzer(rgb: np.ndarray, um_per_px: float) -> Measurement:
        def draw(grade: str | None, withheld_for: tuple[str, ...] | None) -> np.ndarray:
            drawn_with.append((grade, withheld_for))
            return rgb

        return Measurement(FIXED_FEATURES, draw, not_validated=not_validated)

    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    runner = AnalysisRunner(
        frames, results, threading.Event(), gate=QualityGate(), sessions=SessionTracker(),
        analyzer=analyzer, classifier=_Model, identity=Identity("k1", "lab", "t/result"),
        um_per_px=10.0, limit=1,
    )
    frames.put(Frame(synthetic_frame(4, 0, "normal").image_rgb, 1, still=True, name="a.jpg"))
    runner.start()
    accepted = results.get(timeout=30)
    runner.join(10)
    assert accepted.draw_overlay is not None
    accepted.draw_overlay()
    return accepted, drawn_with


def test_the_overlay_drawer_receives_the_results_grade() -> None:
    accepted, drawn_with = _measured_once(())
    assert accepted.result.classification is not None
    assert drawn_with == [("coarse", None)]


def test_the_overlay_drawer_is_told_why_a_grade_was_withheld() -> None:
    accepted, drawn_with = _measured_once(("hill_density_per_mm2", "kime_score"))
    assert accepted.result.classification is None  # the model reads both
    assert drawn_with == [(None, ("hill_density_per_mm2", "kime_score"))]
