"""A tile model must answer what scoring reads, N x 2 probabilities for N tiles and features
its guard can score, or it is refused as it loads: a model from an operator's models folder
that answered otherwise loaded, and failed (or mislabelled) the first job's tiles instead
(appliance/pathology/model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tile_model_helpers
from onnx import numpy_helper
from tile_model_helpers import tile_model

from appliance.config import PathologyConfig
from appliance.pathology.backends import open_backend
from appliance.pathology.heatmap import tile_heatmap
from appliance.pathology.model import ModelError, TileModel
from appliance.pathology.run import DecisiveTiles, unfinite_cams_note
from appliance.pathology.tiles import Tile


def test_a_model_without_probabilities_is_refused_as_it_loads(tmp_path: Path) -> None:
    model = tile_model(tmp_path / "scores.onnx", guard=True, probabilities="scores")
    with pytest.raises(ModelError) as refused:
        open_backend(PathologyConfig(model=str(model), backends=["onnx-cpu"]))
    # on main: loaded; its first batch failed with KeyError: 'probabilities'
    assert (f"{model}: on a test run of 16 blank tiles the model has no output "
            "'probabilities' (its outputs: scores, features); scoring reads N x 2 "
            "probabilities") in str(refused.value)


def test_a_model_answering_one_row_for_a_batch_is_refused_as_it_loads(tmp_path: Path) -> None:
    model = tile_model(tmp_path / "one.onnx", one_row=True)
    with pytest.raises(ModelError) as refused:
        TileModel(model, require_guard=False)  # on main: one probability for every batch
    assert "its probabilities are of shape [1, 2], not [16, 2]" in str(refused.value)


def test_a_model_whose_features_do_not_fit_its_guard_is_refused_as_it_loads(
    tmp_path: Path,
) -> None:
    model = tile_model(tmp_path / "narrow.onnx", guard=True, features=5)
    with pytest.raises(ModelError) as refused:
        TileModel(model)  # on main: loaded; the guard refused its first batch
    assert "its features do not fit its guard (features of shape (16, 29)" in str(
        refused.value)


def test_a_model_answering_maps_finer_than_its_tiles_is_refused_as_it_loads(
    tmp_path: Path,
) -> None:
    """A CAM is a map over its tile; a slide keeps those of its decisive tiles (up to 1,000,
    --cam-tiles) and the server a whole batch's at once: 2,000 x 2,000 maps are 16 MB a tile,
    1 GB a batch of 64."""
    model = tile_model(tmp_path / "fine.onnx", guard=True, cam=2000)
    with pytest.raises(ModelError) as refused:
        TileModel(model)  # on main: loaded
    assert "its CAMs are 2000 x 2000 maps, finer than the 64 px tiles they map" in str(
        refused.value)
    assert TileModel(tile_model(tmp_path / "coarse.onnx", guard=True, cam=4)).has_cam


def test_a_model_answering_cams_that_are_not_finite_is_refused_as_it_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On main it loaded, and every slide's CAM panel was drawn from infinities, a NumPy
    warning on stderr the only word of it."""
    monkeypatch.setattr(tile_model_helpers, "ONES", numpy_helper.from_array(
        np.full(1, np.inf, np.float32)))
    model = tile_model(tmp_path / "cam.onnx", cam=4)
    with pytest.raises(ModelError) as refused:
        TileModel(model, require_guard=False)
    assert "its cam hold values that are not finite (NaN or infinite)" in str(refused.value)


def test_a_model_answering_features_that_are_not_finite_is_refused_as_it_loads(
        tmp_path: Path) -> None:
    """On main it loaded, and the guard called every slide unsupported (0 % of its tiles in
    distribution) without a word of the model's NaN."""
    path = tile_model(tmp_path / "features.onnx", guard=True)
    proto = onnx.load(str(path))
    for weights in proto.graph.initializer:
        if weights.name == "to_features":
            weights.CopyFrom(numpy_helper.from_array(
                np.full(numpy_helper.to_array(weights).shape, np.nan, np.float32), weights.name))
    onnx.save(proto, str(path))
    with pytest.raises(ModelError) as refused:
        TileModel(path)
    assert "its features hold values that are not finite (NaN or infinite)" in str(refused.value)


def test_cams_that_are_not_finite_are_left_out_of_the_decisive_tiles_and_counted() -> None:
    """A model finite on the 16 blank tiles it is checked with as it loads may answer NaN or
    infinite CAMs on tissue: those were drawn as they came (a NumPy warning, no word in the
    result); now they are left out and a line under the heatmap says how many."""
    decisive = DecisiveTiles(2)
    pixels = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    cams = np.ones((4, 4, 4), np.float32)
    cams[0, 1, 2], cams[3, 0, 0] = np.nan, np.inf
    decisive.offer(pixels, cams, np.array([0.99, 0.5, 0.9, 0.01]))
    assert decisive.unfinite_cams == 2
    assert decisive.probability == pytest.approx([0.9, 0.5])  # tiles 0 and 3 left out
    assert [tile.tolist() for tile in decisive.pixels] == [pixels[2].tolist(), pixels[1].tolist()]
    assert all(np.isfinite(cam).all() for cam in decisive.cams)
    note = unfinite_cams_note(decisive)
    assert note == "2 tiles' CAMs not finite (NaN or infinite): not drawn"
    assert unfinite_cams_note(DecisiveTiles(2)) == ""
    thumbnail, tiles = np.full((64, 64, 3), 200, np.uint8), [Tile(0, 0, 0, 0, 32, 1.0)]
    plain = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.9]), "s")
    noted = tile_heatmap(thumbnail, 1.0, tiles, np.array([0.9]), "s", note=note)
    assert noted.shape[0] == plain.shape[0] + 28  # the line under the legend
    assert (noted[:plain.shape[0]] == plain).all()
    assert (noted[plain.shape[0]:] < 255).any()  # the note's ink
