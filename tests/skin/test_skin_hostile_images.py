"""Hostile image files: refused from their header before decoding, and the run goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from appliance.config import Config, SkinConfig
from appliance.hostile import huge_png, lying_jpeg
from appliance.skin.analysis import analyze
from appliance.skin.analyze_run import AnalyzeRun
from appliance.skin.frames import FrameError, decode_frame, header_size, load_frame
from tests.skin_frames import generated


def test_a_20000px_png_is_refused_from_its_header(tmp_path: Path) -> None:
    data = huge_png()
    assert len(data) < 2_000_000  # small on disk, 1.2 GB decoded
    assert header_size(data) == (20_000, 20_000)
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(FrameError, match=r"bomb\.png: .*20000x20000"):
        load_frame(tmp_path / "bomb.png")
    with pytest.raises(FrameError, match=r"refused before decoding|too large"):
        load_frame(tmp_path / "bomb.png", expected_shape=None)


def test_a_jpeg_header_claiming_65000px_is_refused_and_the_files_after_it_are_measured(
    tmp_path: Path,
) -> None:
    liar = tmp_path / "liar.jpg"
    liar.write_bytes(lying_jpeg())
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(huge_png())
    good = tmp_path / "good.jpg"
    good.write_bytes(generated(3, 0, "normal").jpeg)
    run = AnalyzeRun(Config(), None)
    records = [run.measure(path) for path in (liar, bomb, good)]
    assert "65000x65000" in records[0]["error"]
    assert "20000x20000" in records[1]["error"]
    assert "features" in records[2]  # the run went on


def test_any_error_inside_one_file_is_that_file_s_error(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jpg"
    odd.write_bytes(generated(3, 0, "normal").jpeg)
    run = AnalyzeRun(Config(), tmp_path / "missing-folder" / "sub")  # overlays cannot be written
    record = run.measure(odd)
    assert record["image"] == str(odd)
    assert "features" in record  # the measurement stands; the overlay's failure beside it
    assert "odd" in record["overlay_error"]
    assert "could not write the overlay" in record["overlay_error"]


def test_a_scale_beyond_the_measurable_range_is_refused_before_any_image_is_made() -> None:
    """A scale of 100 µm/px would blow a 1280x960 frame up to a 12800x9600 fine image (0.5 GB):
    the measurement refuses it by name, and so does the config."""
    frame = np.full((960, 1280, 3), 128, np.uint8)
    with pytest.raises(ValueError, match=r"um_per_px must be within 0.5..30"):
        analyze(frame, 100.0)
    with pytest.raises(ValidationError, match="um_per_px"):
        SkinConfig(um_per_px=100.0)
    assert analyze(frame, 30.0).features.pore_count == 0


def test_a_frame_of_more_than_65535_tiny_cells_is_measured() -> None:
    """A grid of dark lines 4 px apart at the coarsest scale: over 65,535 hill seeds, whose
    labels are int32 (OpenCV's dilation takes uint16 but not int32: it raised a cv2.error)."""
    rgb = np.full((960, 1280, 3), 200, np.uint8)
    rgb[::4] = 60
    rgb[:, ::4] = 60
    analysis = analyze(rgb, 30.0)
    cell_mm2 = (4 * 30.0 / 1000.0) ** 2
    assert analysis.features.hill_density_per_mm2 == pytest.approx(1.0 / cell_mm2, rel=0.05)


def test_a_damaged_bmp_or_tiff_is_reported_once_in_the_command_s_words(tmp_path: Path) -> None:
    """OpenCV's BMP reader prints its own error line on a cut file, and Pillow's TIFF header
    reader a warning and a message naming a Python object; the command should say it once."""
    bgr = cv2.cvtColor(generated(3, 0, "normal").image_rgb, cv2.COLOR_RGB2BGR)
    for name in ("cut.bmp", "cut.tif"):
        whole = bytes(cv2.imencode(Path(name).suffix, bgr)[1])
        assert np.array_equal(decode_frame(whole), bgr[:, :, ::-1])  # intact: its pixels
        (tmp_path / name).write_bytes(whole[: len(whole) // 2])
    frames = [str(tmp_path / "cut.bmp"), str(tmp_path / "cut.tif")]
    done = subprocess.run([sys.executable, "-m", "appliance", "analyze", *frames],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    for frame in frames:
        assert done.stderr.count(f"analyze: {frame}: corrupt image data") == 1
    for line in done.stderr.splitlines():  # log lines and the command's own verdicts only
        assert " INFO " in line or line.startswith("analyze: "), line
    assert "BytesIO" not in done.stderr
