"""The model contract: what a model must state in its metadata, and what we refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inference_helpers import contract

from appliance.inference.contract import (
    ModelError,
    check_features,
    check_io_shape,
    parse_contract,
)
from appliance.transport.payloads import FEATURE_KEYS

MODEL = Path("/models/grade.onnx")


def test_contract_round_trips_through_metadata() -> None:
    figures = {"validation": {"accuracy_int8": 0.91}}
    original = contract(figures=figures, extra={"precision": "int8"})
    parsed = parse_contract(MODEL, original.to_metadata())
    assert parsed == original
    assert json.loads(original.to_metadata()["feature_names"]) == list(FEATURE_KEYS)


def test_no_metadata_is_refused_naming_the_file_and_what_we_need() -> None:
    with pytest.raises(ModelError, match="carries no metadata") as err:
        parse_contract(MODEL, {})
    assert str(MODEL) in str(err.value)
    assert "feature_names" in str(err.value)


def test_missing_keys_are_listed_with_what_the_model_has() -> None:
    metadata = contract().to_metadata()
    del metadata["labels"], metadata["version"]
    with pytest.raises(ModelError, match="lacks labels, version") as err:
        parse_contract(MODEL, metadata)
    assert "the model has" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("fine,normal", "not JSON"), ('"fine"', "non-empty JSON list"), ("[]", "non-empty"),
     ('["fine", "fine"]', "twice")],
)
def test_malformed_label_lists_are_refused(raw: str, problem: str) -> None:
    metadata = contract().to_metadata() | {"labels": raw}
    with pytest.raises(ModelError, match=problem):
        parse_contract(MODEL, metadata)


def test_a_feature_the_kiosk_does_not_measure_is_named_with_both_lists() -> None:
    names = (*FEATURE_KEYS[:-1], "pore_volume_nl")
    with pytest.raises(ModelError, match="pore_volume_nl") as err:
        check_features(MODEL, contract(feature_names=names))
    assert "model side" in str(err.value)
    assert "our side" in str(err.value)
    assert "shine_ratio" in str(err.value)  # ours, which the model dropped


def test_a_model_using_fewer_features_is_accepted() -> None:
    check_features(MODEL, contract(feature_names=FEATURE_KEYS[:5]))


@pytest.mark.parametrize(
    ("input_shape", "output_shape", "problem"),
    [
        (["batch", 15], ["batch", 3], "input shape"),
        (["batch", 16, 1], ["batch", 3], "input shape"),
        ([8, 16], ["batch", 3], "fixed batch of 8"),
        (["batch", 16], ["batch", 4], "output shape"),
    ],
)
def test_shapes_must_fit_the_feature_and_label_lists(
    input_shape: list[object], output_shape: list[object], problem: str
) -> None:
    with pytest.raises(ModelError, match=problem):
        check_io_shape(MODEL, contract(), input_shape, output_shape)


def test_dynamic_batch_with_matching_widths_is_accepted() -> None:
    check_io_shape(MODEL, contract(), ["batch", 16], [None, 3])


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"version": "1." + "9" * 70}, "version"), ({"name": "n" * 129}, "name"),
     ({"labels": ("fine", "x" * 65)}, "labels"), ({"labels": ("fine", "")}, "labels")],
)
def test_a_name_version_or_label_a_result_cannot_carry_is_refused(
    changes: dict[str, object], key: str
) -> None:
    """Such a model would load, then fail every grade and the device's status message."""
    metadata = contract(**changes).to_metadata()
    with pytest.raises(ModelError, match=rf"metadata '{key}'.*(at most|at least)") as err:
        parse_contract(MODEL, metadata)
    assert str(MODEL) in str(err.value)


@pytest.mark.parametrize(
    ("changes", "key", "shown"),
    [({"version": "1.0.0\u2060"}, "version", "\\u2060"),
     ({"name": "grader\u202e"}, "name", "\\u202e"),
     ({"labels": ("fine", "coarse\U000e0041")}, "labels", "\\U000e0041")],
)
def test_a_name_version_or_label_holding_a_character_that_draws_nothing_is_refused(
    changes: dict[str, object], key: str, shown: str
) -> None:
    """No result or status could carry it (payloads.Drawn): the model is refused at load, its
    kiosk keeps the model it has, and so no honest kiosk sends such a name."""
    metadata = contract(**changes).to_metadata()
    with pytest.raises(ModelError, match=rf"metadata '{key}'.*cannot be sent in a result") as err:
        parse_contract(MODEL, metadata)
    assert f"holds {shown} at character" in str(err.value)
