"""`appliance config check` opens a pathology server's model files as the server does
(appliance/pathology/modelcheck.py): a corrupt, oversized or ill-shaped model passed the check
(the file was there) and the server refused it at start, or the unit restarted it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tile_model_helpers import tile_model

from appliance.cli import main
from appliance.pathology import modelcheck
from appliance.pathology.model import MAX_MODEL_BYTES


def _check(tmp_path: Path, pathology: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``config check`` of a server's config with ``pathology`` added: its exit and stderr."""
    (tmp_path / "slides").mkdir(exist_ok=True)
    config = tmp_path / "pathology.yaml"
    config.write_text(f"model: {{path: null}}\nstate_dir: {tmp_path / 'state'}\n"
                      f"pathology: {{slide_roots: [slides], {pathology}}}\n")
    code = main(["config", "check", str(config)])
    return code, capsys.readouterr().err


def test_a_corrupt_model_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "msi.onnx"
    model.write_bytes(b"\x08\x07not a protobuf at all" * 200)
    code, said = _check(tmp_path, f"model: {model}", capsys)
    assert code == 2
    assert f"pathology.model: {model}: not a loadable ONNX model" in said
    assert "check pathology.model and pathology.int8_model" in said


def test_a_model_larger_than_the_server_opens_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "huge.onnx"
    with model.open("wb") as sparse:  # no disk taken: its size is all that is read
        os.truncate(sparse.fileno(), MAX_MODEL_BYTES + 1)
    code, said = _check(tmp_path, f"model: {model}", capsys)
    assert code == 2
    assert (f"pathology.model: {model}: model file is {MAX_MODEL_BYTES + 1} bytes, more than "
            f"the {MAX_MODEL_BYTES} a model here may be: not this kind of model") in said
    assert "empty" not in said  # it said "the file is empty or not this kind of model"


@pytest.mark.parametrize(("shape", "refusal"), [
    ({"side": 32}, "the model's input is 32x32 px but its metadata says tiles are 64 px"),
    ({"one_row": True}, "its probabilities are of shape [1, 2], not [16, 2]"),
])
def test_a_model_of_the_wrong_shape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: dict[str, object], refusal: str,
) -> None:
    model = tile_model(tmp_path / "shaped.onnx", guard=True, **shape)  # type: ignore[arg-type]
    code, said = _check(tmp_path, f"model: {model}", capsys)
    assert code == 2
    assert f"pathology.model: {model}: " in said
    assert refusal in said


def test_the_int8_model_is_checked_where_onnx_cpu_would_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    int8 = tmp_path / "msi.int8.onnx"
    int8.write_bytes(b"truncated")
    code, said = _check(tmp_path, f"int8_model: {int8}", capsys)
    assert code == 2
    assert f"pathology.int8_model: {int8}: not a loadable ONNX model" in said
    assert "pathology.model:" not in said  # the shipped model opens
    code, said = _check(tmp_path, f"int8_model: {int8}, backends: [torch-cpu]", capsys)
    assert code == 0, said  # no backend here runs it


def test_the_shipped_model_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = _check(tmp_path, "backends: [onnx-cpu]", capsys)
    assert code == 0, said


def test_a_model_not_opened_in_time_is_named_and_the_check_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model opens in a child process with a deadline: a graph that loads or runs for
    ever ends the child, not the check."""
    monkeypatch.setattr(modelcheck, "MODEL_CHECK_TIMEOUT_S", 0.001)
    code, said = _check(tmp_path, "backends: [onnx-cpu]", capsys)
    assert code == 2
    assert "msi-vgg19-w16.onnx: not opened within 0.001 s" in said
