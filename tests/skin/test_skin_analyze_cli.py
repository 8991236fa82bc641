"""`appliance analyze`: JSON lines, readable table, overlays, per-file errors, classification."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.skin.analysis import analyze
from appliance.skin.overlay import draw_overlay
from appliance.synthetic.skin import synthetic_frame
from appliance.transport.payloads import FEATURE_KEYS, Features, Quality

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "skin-texture-grade.int8.onnx"


@lru_cache(maxsize=1)
def _jpeg() -> bytes:
    return synthetic_frame(21, 0, "normal").jpeg


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg()[:5000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 100, 3), np.uint8))
    return {"good": good, "truncated": truncated, "empty": empty, "text": text, "small": small}


def test_json_line_per_image_with_quality_and_features(
    images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--json", str(images["good"])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["image"] == str(images["good"])
    assert set(record["features"]) == set(FEATURE_KEYS)
    Features.model_validate(record["features"])
    assert Quality.model_validate(record["quality"]).verdict == "ok"
    # config.yaml ships with model.path set to the default model: classified once it is built
    assert ("classification" in record) == DEFAULT_MODEL.exists()


def test_bad_files_get_errors_and_the_good_one_is_still_measured(
    images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["truncated", "good", "empty", "text", "small"]
    assert main(["analyze", "--json", *(str(images[name]) for name in order)]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [("error" in r) for r in records] == [True, False, True, True, True]
    assert records[1]["features"]["pore_count"] > 0
    for problem in ("truncated JPEG", "empty file", "not an image", "wrong size 100x100"):
        assert problem in captured.err


def test_readable_table(images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(images["good"])]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert "kime" in header
    assert "pores" in header
    assert row.startswith("good.jpg")
    assert " ok " in row


def test_overlay_files_are_written(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "overlays"
    assert main(["analyze", "--json", "--overlay", str(folder), str(images["good"])]) == 0
    record = json.loads(capsys.readouterr().out)
    overlay = cv2.imread(record["overlay"])
    assert overlay is not None
    assert overlay.shape == (960, 1280, 3)


def test_overlay_marks_furrows_pores_and_numbers() -> None:
    skin = synthetic_frame(21, 0, "normal")
    analysis = analyze(skin.image_rgb, skin.um_per_px)
    overlay = draw_overlay(skin.image_rgb, analysis)
    changed = np.any(overlay != skin.image_rgb, axis=2)
    assert changed.mean() > 0.5  # hills tinted everywhere
    assert np.all(overlay[10:130, 10:500].mean(axis=(0, 1)) < 120)  # the dark number panel
    magenta = (overlay[..., 0] > 200) & (overlay[..., 1] < 120) & (overlay[..., 2] > 150)
    for (x, y), diameter_um in zip(
        analysis.pores.centres_half_px * 2 + 0.5, analysis.pores.diameters_um, strict=True
    ):
        radius = round(diameter_um / skin.um_per_px / 2) + 2
        x0, y0 = int(x) + radius, int(y)
        if x0 > 1275 or (x0 < 580 and y0 < 160):  # ring off the frame or under the numbers
            continue
        assert magenta[max(y0 - 2, 0):y0 + 3, max(x0 - 2, 0):x0 + 3].any(), (x, y)


def test_bad_config_is_exit_2(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("skin:\n  um_per_px: -3\n")
    assert main(["analyze", "--config", str(config), str(images["good"])]) == 2
    assert "skin.um_per_px" in capsys.readouterr().err


@pytest.mark.slow
def test_classification_when_a_model_is_configured(
    images: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "inference"))
    from inference_helpers import contract, make_table, train_tiny, write_float

    model_path = DEFAULT_MODEL
    if not model_path.is_file():  # the shipped model is built separately; train a tiny one
        model_path = write_float(tmp_path / "tiny.onnx", train_tiny(make_table(), 10), contract())
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  path: {model_path}\n")
    assert main(["analyze", "--json", "--config", str(config), str(images["good"])]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["classification"]["label"] in record["classification"]["probabilities"]
    assert sum(record["classification"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_white_reference_changes_colour_only(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    white = tmp_path / "white.png"
    cv2.imwrite(str(white), np.full((240, 320, 3), (170, 230, 250), np.uint8))  # BGR: warm lamp
    assert main(["analyze", "--json", str(images["good"])]) == 0
    plain = json.loads(capsys.readouterr().out)["features"]
    assert main(["analyze", "--json", "--white", str(white), str(images["good"])]) == 0
    corrected = json.loads(capsys.readouterr().out)["features"]
    assert corrected["lab_b"] < plain["lab_b"] - 3.0  # the lamp's yellow is removed
    assert corrected["pore_count"] == plain["pore_count"]


def test_unusable_white_reference_is_exit_2(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--white", str(tmp_path / "none.png"), str(images["good"])]) == 2
    assert "--white" in capsys.readouterr().err


def test_missing_model_is_exit_2_naming_the_file(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  path: no-such-model.onnx\n")
    assert main(["analyze", "--config", str(config), str(images["good"])]) == 2
    assert "no-such-model.onnx" in capsys.readouterr().err
