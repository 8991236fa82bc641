"""`appliance analyze` says a near-tie (edge/grade_margin.py) as the kiosk screen does: never
as one grade, in its table, its --json and its overlay's caption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.config import load_config_or_defaults
from appliance.skin import overlay
from appliance.skin.analyze_run import TABLE_LEGEND, AnalyzeRun
from appliance.transport.payloads import Classification
from tests.skin_frames import generated


class _Grader:
    """A model that grades every frame with the probabilities it is given."""

    name, version = "grader", "1.0.0"
    feature_names = ("kime_score",)

    def __init__(self, probabilities: dict[str, float]) -> None:
        self.probabilities = probabilities

    def classify(self, features: dict[str, Any]) -> Classification:
        label = max(self.probabilities, key=lambda grade: self.probabilities[grade])
        return Classification(model=self.name, version=self.version, label=label,
                              probabilities=self.probabilities)


@pytest.fixture
def frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no config.yaml: built-in defaults
    path = tmp_path / "skin.jpg"
    path.write_bytes(generated(21, 0, "normal").jpeg)
    return path


def _measured(frame: Path, probabilities: dict[str, float],
              monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[str | None]]:
    """The record of ``frame`` graded with ``probabilities``, and the grade its overlay's
    caption was drawn with."""
    captions: list[str | None] = []
    drawn = overlay.draw_overlay

    def draw(rgb: np.ndarray, analysis: Any, grade: str | None, withheld: Any) -> np.ndarray:
        captions.append(grade)
        return drawn(rgb, analysis, grade, withheld)

    monkeypatch.setattr(overlay, "draw_overlay", draw)
    run = AnalyzeRun(load_config_or_defaults(None), frame.parent / "overlays",
                     _Grader(probabilities))
    (frame.parent / "overlays").mkdir()
    return run.measure(frame), captions


def test_a_near_tie_is_said_between_its_two_grades_in_the_table_json_and_caption(
    frame: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, captions = _measured(frame, {"fine": 0.46, "normal": 0.44, "coarse": 0.10},
                                 monkeypatch)
    assert record["classification"]["label"] == "fine"  # the model's label stays as it was
    assert record["grade_between"] == ["fine", "normal"]
    assert AnalyzeRun.table_row(record).endswith(" fine/normal")
    assert AnalyzeRun.needs_legend(record)
    assert "A/B: a near-tie, between grades A and B" in TABLE_LEGEND
    assert captions == ["between fine and normal"]
    assert Path(record["overlay"]).is_file()


def test_a_clear_grade_is_said_as_one(frame: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record, captions = _measured(frame, {"fine": 0.20, "normal": 0.70, "coarse": 0.10},
                                 monkeypatch)
    assert "grade_between" not in record
    assert AnalyzeRun.table_row(record).endswith(" normal")
    assert not AnalyzeRun.needs_legend(record)
    assert captions == ["normal"]
