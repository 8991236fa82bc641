"""The frame quality gate: every verdict on frames a user would recognise, and burst picking."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from appliance.capture.quality import FrameQuality, QualityGate, best_frame
from appliance.synthetic.skin import synthetic_frame
from appliance.transport import payloads


@lru_cache(maxsize=1)
def _skin() -> np.ndarray:
    return synthetic_frame(11, 0, "normal").image_rgb


def _scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def test_sharp_skin_frame_is_ok() -> None:
    quality = QualityGate().assess(_skin())
    assert quality.verdict == "ok"
    assert quality.ok
    assert quality.reasons == ()
    assert quality.scores["skin_fraction"] > 0.9


def test_defocused_frame_is_blurred() -> None:
    quality = QualityGate().assess(cv2.GaussianBlur(_skin(), (0, 0), 4.0))
    assert quality.verdict == "blurred"
    assert any("focus" in reason for reason in quality.reasons)


def test_too_much_light_is_overexposed() -> None:
    quality = QualityGate().assess(_scaled(_skin(), 3.0))
    assert quality.verdict == "overexposed"
    assert "clipped white" in quality.reasons[0]


def test_too_little_light_is_underexposed() -> None:
    quality = QualityGate().assess(_scaled(_skin(), 0.3))
    assert quality.verdict == "underexposed"


def _field(red: int, green: int, blue: int) -> np.ndarray:
    return np.dstack([np.full((960, 1280), v, np.uint8) for v in (red, green, blue)])


@pytest.mark.parametrize(
    "field",
    [_field(124, 128, 133), _field(0, 0, 0), _field(255, 255, 255), _field(60, 90, 200)],
    ids=["grey-table", "dark-field", "white-field", "blue-table"],
)
def test_scope_not_on_skin_is_no_contact(field: np.ndarray) -> None:
    quality = QualityGate().assess(field)
    assert quality.verdict == "no_contact"
    assert "press the scope onto the skin" in quality.reasons[0]


@pytest.mark.parametrize(
    ("field", "named", "not_named"),
    [(_field(124, 128, 133), "skin fraction 0.00 < 0.45 (too little skin in view)", "dark"),
     (_field(60, 90, 200), "skin fraction 0.00 < 0.45 (too little skin in view)", "dark"),
     (_field(255, 255, 255), "skin fraction 0.00 < 0.45 (too little skin in view)", "dark"),
     (_field(0, 0, 0), "dark field, mean level 0 < 12 (the scope lifted", "skin fraction")],
    ids=["grey-table", "blue-table", "white-field", "dark-field"],
)
def test_no_contact_names_only_the_check_that_failed(field: np.ndarray, named: str,
                                                     not_named: str) -> None:
    """`appliance analyze` of a bright micrometer photo said "skin fraction 0.00 < 0.45 or
    dark field (mean 207)": a white field called dark, as the reason named both checks with
    their values whichever had failed."""
    quality = QualityGate().assess(field)
    assert quality.verdict == "no_contact"
    assert named in quality.reasons[0]
    assert not_named not in quality.reasons[0]


@pytest.mark.parametrize("mono", ["skin", "grey-field"])
def test_a_frame_without_colour_says_so_not_press_the_scope(mono: str) -> None:
    """A camera in a mono mode (or a greyscale file) on skin: asking to press the scope on
    would send the operator the wrong way; the reason names the colour and the format."""
    grey = (cv2.cvtColor(_skin(), cv2.COLOR_RGB2GRAY) if mono == "skin"
            else np.full((960, 1280), 128, np.uint8))
    quality = QualityGate().assess(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
    assert quality.verdict == "no_contact"
    assert quality.scores["chroma_max"] == 0.0
    assert "the frame carries no colour" in quality.reasons[0]
    assert "camera's format" in quality.reasons[0]
    assert not any("skin fraction" in reason for reason in quality.reasons)


def test_shifted_frame_after_previous_is_moving() -> None:
    skin = _skin()
    moved = np.roll(skin, 25, axis=1)
    assert QualityGate().assess(moved, previous=skin).verdict == "moving"
    assert QualityGate().assess(skin, previous=skin).verdict == "ok"


def test_best_frame_prefers_ok_then_sharpest() -> None:
    gate = QualityGate()
    skin = _skin()
    burst = [cv2.GaussianBlur(skin, (0, 0), 4.0), skin, cv2.GaussianBlur(skin, (0, 0), 1.5)]
    qualities = [gate.assess(frame) for frame in burst]
    assert best_frame(burst, qualities) == 1
    with pytest.raises(ValueError, match="one quality per frame"):
        best_frame(burst, qualities[:2])


def test_quality_becomes_a_valid_payload() -> None:
    quality = FrameQuality("blurred", ("focus 1.0 < 200",), {"focus": 1.0})
    payload = quality.to_payload()
    assert isinstance(payload, payloads.Quality)
    assert payload.verdict == "blurred"
    assert payload.reasons == ["focus 1.0 < 200"]
