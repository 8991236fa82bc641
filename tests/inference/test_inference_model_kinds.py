"""A shipped model given where the other kind is needed is refused saying which kind it is:
`appliance models show appliance/shipped/msi-vgg19-w16.onnx` (the README lists both shipped
models) said 'metadata lacks feature_names, trained_on, created_at; the model has architecture,
labels, ...', and the skin grader given to `pathology run --model` said 'metadata lacks tile_px,
tile_um; export it with models/pathology/export.py'."""

from __future__ import annotations

import pytest

from appliance.cli import main
from appliance.inference.contract import ModelError
from appliance.inference.runner import OnnxRunner
from appliance.pathology.model import TileModel
from appliance.shipped import PATHOLOGY_MODEL, SKIN_MODEL, shipped_path


def test_the_pathology_model_is_no_skin_grader_and_says_what_it_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = shipped_path(PATHOLOGY_MODEL)
    with pytest.raises(ModelError) as refused:
        OnnxRunner(path)
    assert str(refused.value) == (
        f"{path}: a pathology tile model (for `appliance pathology run --model` or "
        "pathology.model), not a skin texture model: it has no feature_names to grade "
        "measurements with")
    assert main(["models", "show", str(path)]) == 2
    assert "a pathology tile model" in capsys.readouterr().err


def test_the_skin_grader_is_no_tile_model_and_says_what_it_is() -> None:
    path = shipped_path(SKIN_MODEL)
    with pytest.raises(ModelError) as refused:
        TileModel(path, provider="cpu")
    assert str(refused.value) == (
        f"{path}: a skin texture model (for the kiosk's model.path or `appliance models "
        "show`), not a pathology tile model: it grades skin measurements, not H&E tiles")
