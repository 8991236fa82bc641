"""A tile model's input decides how much is made before it runs: tiles are cut at its
metadata's tile size, and runs hold 1 to 16 tiles. A model asking for tiles of tens of
thousands of pixels, or for a fixed batch, is refused as it loads, naming what it asked
(appliance/pathology/model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tile_model_helpers import tile_model

from appliance.cli import main
from appliance.pathology.model import ModelError, TileModel


def test_a_model_asking_for_huge_tiles_is_refused_before_any_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model = tile_model(tmp_path / "huge.onnx", guard=True, side="side",
                       metadata={"tile_px": "46341"})
    slide = tmp_path / "slide.png"  # never read: the model is refused first
    slide.write_bytes(b"")
    # on main: loaded, and a slide's first 64 tiles then asked numpy for 384 GiB
    assert main(["pathology", "submit", str(slide), "--um-per-px", "1", "--out",
                 str(tmp_path / "out"), "--model", str(model)]) == 2
    assert (f"{model}: metadata tile size 46341 px / 256.0 µm; a tile model here takes tiles "
            "of 16 to 512 px") in capsys.readouterr().err


def test_a_model_taking_a_fixed_batch_is_refused_naming_it(tmp_path: Path) -> None:
    model = tile_model(tmp_path / "fixed.onnx", batch=100_000)
    with pytest.raises(ModelError) as refused:
        TileModel(model, require_guard=False)  # on main: loaded; every batch then failed
    assert (f"{model}: the model's input takes exactly 100000 tiles a run; tiles come in runs "
            "of 1 to 16: export it with a dynamic batch axis") in str(refused.value)
