"""Calibration from a synthetic stage micrometer: the scale comes back, junk is refused."""

from __future__ import annotations

import math
import re
import tracemalloc
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.cli_help_text import COMMAND_HELP
from appliance.skin.calibration import CalibrationError, calibrate_from_micrometer
from appliance.skin.validity import SCALE_UM_PER_PX
from appliance.synthetic.micrometer import MicrometerSpec, micrometer_frame
from tests.skin_frames import generated


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


@lru_cache(maxsize=4)
def _gray(spec: MicrometerSpec) -> np.ndarray:
    """The grey photo of ``spec``, drawn once for the module (three tests read 9.6 µm/px's),
    read-only."""
    gray = cv2.cvtColor(micrometer_frame(spec), cv2.COLOR_RGB2GRAY)
    gray.flags.writeable = False
    return gray


@pytest.mark.parametrize(
    "spec",
    [
        MicrometerSpec(um_per_px=10.0, lines=125, line_height_px=100),  # a short scale
        MicrometerSpec(um_per_px=9.3, lines=80, line_height_px=300, angle_deg=5.0, seed=1),
        MicrometerSpec(um_per_px=12.5, lines=60, line_height_px=60, angle_deg=-8.0,
                       noise_sd=6.0, blur_sigma_px=1.5, seed=2),
        MicrometerSpec(um_per_px=7.0, lines=30, line_height_px=120, angle_deg=2.0, seed=3),
    ],
)
def test_micrometer_photos_are_measured_within_a_tenth_of_a_percent(spec: MicrometerSpec) -> None:
    result = calibrate_from_micrometer(_gray(spec), spec.pitch_mm)
    assert result.um_per_px == pytest.approx(spec.um_per_px, rel=0.001)
    assert abs(result.um_per_px - spec.um_per_px) < 4 * result.um_per_px_sd + 0.002
    assert result.line_count >= min(spec.lines, 1280 / spec.pitch_px) - 3


def test_skin_frames_are_not_micrometers() -> None:
    reasons = []
    for index in range(8):
        skin = generated(index, index, "mixed").image_rgb
        with pytest.raises(CalibrationError) as refused:
            calibrate_from_micrometer(cv2.cvtColor(skin, cv2.COLOR_RGB2GRAY), 0.1)
        reasons.append(str(refused.value))
    assert all("not a" in reason or "missing" in reason for reason in reasons)


def test_a_grating_with_uneven_spacing_is_refused() -> None:
    gray = _gray(MicrometerSpec(lines=125, line_height_px=400))
    ys, xs = np.mgrid[0:960, 0:1280].astype(np.float32)
    chirped = xs + 0.00025 * (xs - 640.0) ** 2 - 50.0  # pitch drifts by ~30 % across the frame
    uneven = cv2.remap(gray, chirped, ys, cv2.INTER_LINEAR, borderValue=220)
    with pytest.raises(CalibrationError, match=r"spacing|evenly"):
        calibrate_from_micrometer(uneven, 0.1)


def test_calibrate_command_prints_the_uncertainty_and_refuses_skin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = tmp_path / "scale.png"
    cv2.imwrite(str(scale), _gray(MicrometerSpec(um_per_px=9.8, lines=125, line_height_px=100)))
    assert main(["calibrate", str(scale), "--mm", "0.1"]) == 0
    assert re.search(r"9\.80\d ± \d\.\d+(e-\d+)? um/px \(95 %", capsys.readouterr().out)
    skin = tmp_path / "skin.jpg"
    skin.write_bytes(generated(3, 3, "mixed").jpeg)
    assert main(["calibrate", str(skin), "--mm", "0.1"]) == 1
    captured = capsys.readouterr()
    assert "put this in config.yaml" not in captured.out
    assert "skin.jpg" in captured.err


@pytest.mark.parametrize(("blur_sigma_px", "reason"), [(3.0, "faint"), (6.0, "graduation lines")])
def test_an_out_of_focus_micrometer_is_refused(blur_sigma_px: float, reason: str) -> None:
    blurred = MicrometerSpec(um_per_px=9.0, lines=125, blur_sigma_px=blur_sigma_px)
    with pytest.raises(CalibrationError, match=reason):
        calibrate_from_micrometer(_gray(blurred), 0.1)


def test_a_scale_the_config_would_refuse_is_refused_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = tmp_path / "scale.png"
    cv2.imwrite(str(scale), _gray(MicrometerSpec(um_per_px=9.6, lines=125, line_height_px=100)))
    for typo in ("1", "1e-9"):  # 0.1 typed as 1: 96 um/px; a slip of the exponent: 0.000
        assert main(["calibrate", str(scale), "--mm", typo]) == 1
        captured = capsys.readouterr()
        assert "put this in config.yaml" not in captured.out
        assert "outside what skin.um_per_px accepts" in captured.err
        assert f"check --mm {float(typo):g}" in captured.err


def test_a_scale_outside_the_validated_range_is_printed_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = tmp_path / "scale.png"
    cv2.imwrite(str(scale), _gray(MicrometerSpec(um_per_px=9.6, lines=125, line_height_px=100)))
    assert main(["calibrate", str(scale), "--mm", "0.2"]) == 0  # 19.2 um/px: a 12x lens
    captured = capsys.readouterr()
    assert "um_per_px: 19.2" in captured.out
    assert "warning: 19.2" in captured.err
    assert "outside 7-13 um/px" in captured.err
    assert main(["calibrate", str(scale), "--mm", "0.1"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["inf", "nan", "0", "-0.1", "ten"])
def test_a_line_spacing_that_is_no_finite_positive_number_is_exit_2(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["calibrate", str(tmp_path / "scale.png"), "--mm", bad])
    assert exited.value.code == 2
    assert "argument --mm: must be a finite positive number" in capsys.readouterr().err


def test_a_calibrate_error_names_the_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.png").write_text("no image")
    assert main(["calibrate", str(tmp_path / "x.png"), "--mm", "0.1"]) == 1
    assert capsys.readouterr().err.count("x.png") == 1


def test_an_infinite_spacing_is_no_finite_positive_number() -> None:
    gray = _gray(MicrometerSpec(um_per_px=9.6, lines=125, line_height_px=100))
    with pytest.raises(CalibrationError, match="--mm must be a finite positive number"):
        calibrate_from_micrometer(gray, math.inf)


def test_a_large_photo_is_calibrated_in_bounded_scratch_memory() -> None:
    """A 12 Mpx micrometer photo is measured with at most 12 bytes of scratch a pixel (about
    10.6 now; a double-precision full spectrum and a complex product took 60), and correctly."""
    small = micrometer_frame(MicrometerSpec(um_per_px=10.0, lines=125, angle_deg=2.0, seed=3))
    gray = cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (4000, 3000),
                      interpolation=cv2.INTER_CUBIC)
    tracemalloc.start()
    try:
        result = calibrate_from_micrometer(gray, 0.1)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes <= 12 * gray.size, f"{peak_bytes / gray.size:.1f} bytes a pixel"
    assert result.um_per_px == pytest.approx(10.0 * 1280 / 4000, rel=0.002)


def _examples_mm(command: str) -> set[float]:
    """The line spacings (--mm) the examples of ``appliance COMMAND --help`` give."""
    examples = COMMAND_HELP[command][1]
    return {float(match) for line in examples for match in re.findall(r"--mm (\S+)", line)}


@pytest.mark.parametrize("um_per_px", SCALE_UM_PER_PX)
def test_the_help_s_example_spacings_can_be_calibrated_at_the_validated_scales(
        um_per_px: float) -> None:
    """`calibrate --help` gave `appliance calibrate micrometer.jpg --mm 0.01`: lines 0.01 mm
    apart are 0.8-1.4 px apart at the 7-13 um/px the measurement is validated on, which no
    photo resolves (`synth micrometer` refuses to draw them). Every spacing an example gives is
    one the 25x lens can be calibrated with, at either end of that range."""
    spacings = _examples_mm("calibrate")
    assert spacings
    for pitch_mm in spacings:
        spec = MicrometerSpec(um_per_px=um_per_px, pitch_mm=pitch_mm, lines=125)
        result = calibrate_from_micrometer(_gray(spec), pitch_mm)
        assert result.um_per_px == pytest.approx(um_per_px, rel=0.001), pitch_mm


@pytest.mark.parametrize("spec", [
    MicrometerSpec(um_per_px=9.6, lines=125, line_height_px=100, angle_deg=5.0),
    MicrometerSpec(um_per_px=12.0, lines=60, line_height_px=960, angle_deg=30.0, seed=1),
])
def test_bright_lines_on_a_dark_field_are_measured_as_dark_lines_are(
    spec: MicrometerSpec,
) -> None:
    """A chrome-on-glass scale under a USB microscope's own ring light shows bright lines on a
    dark field: it was refused as "found only 2 graduation lines (need 8): not a micrometer
    scale", the wide dark gaps between the lines taken for the lines."""
    dark_lines = _gray(spec)
    bright_lines = calibrate_from_micrometer(255 - dark_lines, spec.pitch_mm)
    assert bright_lines.um_per_px == pytest.approx(spec.um_per_px, rel=0.001)
    assert bright_lines.line_count == calibrate_from_micrometer(dark_lines,
                                                                spec.pitch_mm).line_count


def test_skin_frames_turned_negative_are_not_micrometers() -> None:
    for index in range(4):
        skin = cv2.cvtColor(generated(index, index, "mixed").image_rgb, cv2.COLOR_RGB2GRAY)
        with pytest.raises(CalibrationError):
            calibrate_from_micrometer(255 - skin, 0.1)


def test_a_scale_too_short_keeps_the_dark_lines_refusal_when_no_bright_lines_pass() -> None:
    """Seven lines: the bright reading found noise of the field as lines and refused them as
    "not evenly spaced"; the refusal a user can act on is the dark lines' count."""
    with pytest.raises(CalibrationError, match=r"found only \d graduation lines \(need 8\)"):
        calibrate_from_micrometer(_gray(MicrometerSpec(lines=7, angle_deg=2.0)), 0.1)


@pytest.mark.parametrize("lines", [8, 10, 16])
def test_a_scale_of_a_few_lines_is_measured_as_the_readme_says(lines: int) -> None:
    """"At least 8 lines": a scale of 8 to 16 lines 0.1 mm apart (a 1 mm scale has 11) spans
    80-160 px of the frame, and was refused, "not evenly spaced" or "found only 5 graduation
    lines", the level between line and field read over the noise of the empty field beside it."""
    result = calibrate_from_micrometer(_gray(MicrometerSpec(lines=lines, angle_deg=2.0)), 0.1)
    assert result.line_count == lines
    assert abs(result.um_per_px - 10.0) < 2 * result.um_per_px_sd
