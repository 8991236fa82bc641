"""A model file naming its weights as external data in another file is read only from inside
the model's own folder: ONNX Runtime before 1.24.3 read them from any path a model named (an
absolute path, ``../``, a link leading out; loaded from bytes: any path at all), so a model
file made a kiosk's or a release's process read its host's other files as weights."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
from inference_helpers import LABELS, contract
from onnx import helper
from packaging.requirements import Requirement
from packaging.version import Version

from appliance.inference.contract import ModelError
from appliance.inference.runner import OnnxRunner
from appliance.transport.payloads import FEATURE_KEYS

REPO = Path(__file__).resolve().parents[2]
WEIGHT_BYTES = len(FEATURE_KEYS) * len(LABELS) * 4


def _naming_external_weights(path: Path, location: str) -> Path:
    """A model with the runner's contract whose one weight lies in ``location``."""
    weights = onnx.TensorProto(name="weights", data_type=onnx.TensorProto.FLOAT,
                               dims=[len(FEATURE_KEYS), len(LABELS)],
                               data_location=onnx.TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(WEIGHT_BYTES))):
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weights"], ["scores"]),
         helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1)], "external",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT,
                                       ["batch", len(FEATURE_KEYS)])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT,
                                       ["batch", len(LABELS)])],
        [weights])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    helper.set_model_props(proto, contract().to_metadata())
    path.write_bytes(proto.SerializeToString())
    return path


def test_the_onnxruntime_the_package_asks_for_reads_no_weights_from_outside() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (onnxruntime,) = [Requirement(d) for d in dependencies if Requirement(d).name == "onnxruntime"]
    assert Version("1.24.2") not in onnxruntime.specifier  # on main: >=1.17 took it
    assert Version("1.24.3") in onnxruntime.specifier


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the model's folder, with the bytes of a weight matrix."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(WEIGHT_BYTES // 4, 7.0, np.float32).tobytes())
    return secret


@pytest.mark.parametrize("named", ["absolute", "parent", "link"])
def test_weights_named_outside_the_model_s_folder_are_refused(
        tmp_path: Path, outside: Path, named: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(outside)
    location = {"absolute": str(outside), "parent": "../secret.bin", "link": "weights.bin"}[named]
    model = _naming_external_weights(folder / "model.onnx", location)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxRunner(model)


def test_weights_of_a_model_given_as_bytes_are_not_read_from_outside(
        tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release self-tests the very bytes it ships (OnnxRunner's ``data``)."""
    folder = tmp_path / "release"
    folder.mkdir()
    model = _naming_external_weights(folder / "model.onnx", "../secret.bin")
    monkeypatch.chdir(folder)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxRunner(model, data=model.read_bytes())


def test_weights_inside_the_model_s_folder_are_read(tmp_path: Path, outside: Path) -> None:
    """The refusals above are the paths', not the model's: beside it, its weights are read."""
    (tmp_path / "weights.bin").write_bytes(outside.read_bytes())
    runner = OnnxRunner(_naming_external_weights(tmp_path / "model.onnx", "weights.bin"))
    answers = runner.probabilities(np.ones((2, len(FEATURE_KEYS)), np.float32))
    np.testing.assert_allclose(answers, 1 / len(LABELS), rtol=1e-6)  # equal weights: no grade
