"""Calibration from a synthetic stage micrometer: the scale comes back, junk is refused."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.skin.calibration import CalibrationError, calibrate_from_micrometer


def micrometer(um_per_px: float, pitch_mm: float, angle_deg: float, seed: int = 0) -> np.ndarray:
    """Dark graduation lines pitch_mm apart on a bright slide, turned, blurred, noisy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:960, 0:1280].astype(float)
    angle = math.radians(angle_deg)
    across = (xx - 640) * math.cos(angle) + (yy - 480) * math.sin(angle)
    pitch_px = pitch_mm * 1000.0 / um_per_px
    distance = np.abs(((across / pitch_px) + 0.5) % 1.0 - 0.5) * pitch_px
    image = 210.0 - 150.0 * np.clip(1.5 - distance, 0.0, 1.0)
    image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0.0, 5.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("um_per_px", "angle_deg"), [(9.3, 7.0), (10.0, 0.0), (12.5, -9.0)])
def test_scale_is_recovered(um_per_px: float, angle_deg: float) -> None:
    result = calibrate_from_micrometer(micrometer(um_per_px, 0.1, angle_deg), 0.1)
    assert result.um_per_px == pytest.approx(um_per_px, rel=0.005)
    assert result.line_count > 50


def test_blank_slide_is_refused() -> None:
    blank = np.random.default_rng(1).normal(128, 3, (960, 1280)).clip(0, 255).astype(np.uint8)
    with pytest.raises(CalibrationError):
        calibrate_from_micrometer(blank, 0.1)


def test_calibrate_command_prints_config_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "micrometer.png"
    cv2.imwrite(str(image), micrometer(9.3, 0.1, 4.0))
    assert main(["calibrate", str(image), "--mm", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "um_per_px: 9.3" in out


def test_calibrate_command_rejects_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.png").write_text("no image")
    assert main(["calibrate", str(tmp_path / "x.png"), "--mm", "0.1"]) == 1
    assert "not an image" in capsys.readouterr().err
