"""The captioned overlay (``appliance analyze --overlay``) is drawn with the grade the model gave
the result (the caption names it, or why it was withheld); the kiosk screen's picture is the
marked frame, drawn without the caption."""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame
from appliance.edge.measure import MeasuredFrame, Measurement, measure_frame
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.session import SessionTracker
from appliance.edge.testing import FIXED_FEATURES
from appliance.transport import payloads
from tests.skin_frames import generated

Drawn = list[tuple[str | None, tuple[str, ...] | None]]


class _Model:
    name, version = "grader", "1"
    feature_names = payloads.FEATURE_KEYS

    def classify(self, features: Mapping[str, float]) -> payloads.Classification:
        return payloads.Classification(model=self.name, version=self.version, label="coarse",
                                       probabilities={"coarse": 1.0})


def _recording_analyzer(drawn_with: Drawn, not_validated: tuple[payloads.FeatureKey, ...]) -> Any:
    """An analyser whose captioned overlay records what it was drawn with, and whose marked
    frame is the frame itself (recorded as drawn with nothing)."""
    def analyzer(rgb: np.ndarray, um_per_px: float) -> Measurement:
        def caption(grade: str | None, withheld_for: tuple[str, ...] | None) -> np.ndarray:
            drawn_with.append((grade, withheld_for))
            return np.vstack([rgb, rgb[:8]])

        def marked() -> np.ndarray:
            drawn_with.append(("marked frame", None))
            return rgb

        return Measurement(FIXED_FEATURES, caption, not_validated=not_validated,
                           marked_frame=marked)

    return analyzer


def _rgb() -> np.ndarray:
    rgb: np.ndarray = generated(4, 0, "normal").image_rgb
    return rgb


def _measured(not_validated: tuple[payloads.FeatureKey, ...]) -> tuple[MeasuredFrame, Drawn]:
    """One frame measured as ``appliance analyze`` measures it; its captioned overlay drawn."""
    drawn_with: Drawn = []
    rgb = _rgb()
    measured = measure_frame(rgb, 10.0, QualityGate().assess(rgb),
                             _recording_analyzer(drawn_with, not_validated), _Model())
    assert measured.draw_overlay is not None
    measured.draw_overlay()
    return measured, drawn_with


def test_the_captioned_overlay_is_drawn_with_the_results_grade() -> None:
    measured, drawn_with = _measured(())
    assert measured.classification is not None
    assert drawn_with == [("coarse", None)]


def test_the_captioned_overlay_is_told_why_a_grade_was_withheld() -> None:
    measured, drawn_with = _measured(("hill_density_per_mm2", "kime_score"))
    assert measured.classification is None  # the model reads both
    assert drawn_with == [(None, ("hill_density_per_mm2", "kime_score"))]


def test_the_kiosk_screen_is_handed_the_marked_frame_not_the_captioned_overlay() -> None:
    drawn_with: Drawn = []
    frames: queue.Queue[Frame] = queue.Queue()
    results: queue.Queue[Accepted] = queue.Queue()
    runner = AnalysisRunner(
        frames, results, threading.Event(), gate=QualityGate(), sessions=SessionTracker(),
        analyzer=_recording_analyzer(drawn_with, ()), classifier=_Model,
        identity=Identity("k1", "lab", "t/result"), um_per_px=10.0, limit=1,
    )
    frames.put(Frame(_rgb(), 1, still=True, name="a.jpg"))
    runner.start()
    accepted = results.get(timeout=30)
    runner.join(10)
    assert accepted.result.classification is not None  # graded, yet no caption to name it in
    assert accepted.draw_screen_picture is not None
    assert accepted.draw_screen_picture().shape == _rgb().shape
    assert drawn_with == [("marked frame", None)]
