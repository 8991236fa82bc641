"""The model's contract, read from its ONNX metadata and checked against our feature schema.

A model carries in ``metadata_props`` what it expects (``feature_names``, in input order), what it
answers (``labels``, in output order), which it is (``name``, ``version``), and where it came from
(``trained_on``, ``created_at``, calibration and validation figures). The runner refuses a model
whose contract is missing, malformed, or asks for features the kiosk does not measure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance import safejson
from appliance.transport.payloads import FEATURE_KEYS, MAX_LABELS, Classification

REQUIRED_KEYS = ("feature_names", "labels", "version", "trained_on", "created_at")
FIGURE_KEYS = ("calibration", "validation")
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # a build's created_at (UTC, whole seconds)


class ModelError(ValueError):
    """A model file that cannot serve (kiosk or pathology): the message names the file and why."""


@dataclass(frozen=True)
class ModelContract:
    """What a model expects and answers, as its metadata states it."""

    name: str
    version: str
    feature_names: tuple[str, ...]
    labels: tuple[str, ...]
    trained_on: str
    created_at: str
    figures: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """The contract as ONNX ``metadata_props`` (string values, lists and figures as JSON)."""
        props = dict(self.extra)
        props.update(
            name=self.name,
            version=self.version,
            feature_names=json.dumps(list(self.feature_names)),
            labels=json.dumps(list(self.labels)),
            trained_on=self.trained_on,
            created_at=self.created_at,
        )
        for key, value in self.figures.items():
            props[key] = json.dumps(value, sort_keys=True)
        return props


def _json_string_list(path: Path, key: str, raw: str) -> tuple[str, ...]:
    try:
        value = safejson.loads(raw)
    except ValueError as exc:  # not JSON, or nested too deeply
        raise ModelError(
            f"{path}: metadata {key!r} is not JSON ({exc}); the model says {raw[:80]!r}, "
            f"we expect a JSON list of names; rebuild the model with `appliance models build-skin`"
        ) from exc
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ModelError(
            f"{path}: metadata {key!r} must be a non-empty JSON list of strings; "
            f"the model says {raw[:80]!r}"
        )
    if len(set(value)) != len(value):
        raise ModelError(f"{path}: metadata {key!r} names an entry twice: {raw[:120]!r}")
    return tuple(value)


def _figures(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for key in FIGURE_KEYS:
        if key not in metadata:
            continue
        try:
            figures[key] = safejson.loads(metadata[key])
        except ValueError as exc:  # not JSON, or nested too deeply
            raise ModelError(f"{path}: metadata {key!r} is not JSON ({exc})") from exc
    return figures


def parse_contract(path: Path, metadata: Mapping[str, str]) -> ModelContract:
    """Read a model's contract from its metadata; ModelError names what is missing or wrong."""
    if not metadata:
        raise ModelError(
            f"{path}: the model carries no metadata; we need {', '.join(REQUIRED_KEYS)} "
            f"(build it with `appliance models build-skin`, which writes them)"
        )
    missing = [key for key in REQUIRED_KEYS if not metadata.get(key)]
    if missing and "tile_um" in metadata:  # the shipped msi-vgg19-w16.onnx, say
        raise ModelError(
            f"{path}: a pathology tile model (for `appliance pathology run --model` or "
            "pathology.model), not a skin texture model: it has no feature_names to grade "
            "measurements with"
        )
    if missing:
        raise ModelError(
            f"{path}: metadata lacks {', '.join(missing)}; the model has "
            f"{', '.join(sorted(metadata)) or 'nothing'}; we need {', '.join(REQUIRED_KEYS)}"
        )
    labels = _json_string_list(path, "labels", metadata["labels"])
    if len(labels) > MAX_LABELS:
        raise ModelError(f"{path}: {len(labels)} labels; at most {MAX_LABELS} are supported")
    known = set(REQUIRED_KEYS) | set(FIGURE_KEYS) | {"name"}
    parsed = ModelContract(
        name=metadata.get("name") or path.name.split(".")[0],
        version=metadata["version"],
        feature_names=_json_string_list(path, "feature_names", metadata["feature_names"]),
        labels=labels,
        trained_on=metadata["trained_on"],
        created_at=metadata["created_at"],
        figures=_figures(path, metadata),
        extra={k: v for k, v in metadata.items() if k not in known},
    )
    check_carried(path, parsed)
    return parsed


# a Classification field -> the metadata key that fills it
_CARRIED_FROM = {"model": "name", "version": "version", "label": "labels"}


def check_carried(path: Path, contract: ModelContract) -> None:
    """Refuse a name, version or label that a result's classification cannot carry: such a
    model would load, and then no grade and no status naming it could be sent."""
    for label in contract.labels:
        try:
            Classification(model=contract.name, version=contract.version, label=label,
                           probabilities={label: 1.0})
        except ValidationError as exc:
            error = exc.errors()[0]
            key = _CARRIED_FROM.get(str(error["loc"][0]), str(error["loc"][0]))
            raise ModelError(
                f"{path}: metadata {key!r} ({str(error['input'])[:80]!r}) cannot be sent in a "
                f"result: {error['msg']}; rebuild the model with one that fits"
            ) from exc


def check_features(
    path: Path, contract: ModelContract, available: Sequence[str] = FEATURE_KEYS
) -> None:
    """Refuse a model that needs a feature the kiosk does not measure (naming both lists)."""
    unknown = [name for name in contract.feature_names if name not in available]
    if unknown:
        raise ModelError(
            f"{path}: the model needs feature(s) {', '.join(unknown)} that the kiosk does not "
            f"measure; model side: {list(contract.feature_names)}; our side: {list(available)}"
        )


def check_io_shape(
    path: Path, contract: ModelContract, input_shape: Sequence[Any], output_shape: Sequence[Any]
) -> None:
    """Refuse a model whose input/output shape disagrees with its feature and label lists."""
    n_features, n_labels = len(contract.feature_names), len(contract.labels)
    if len(input_shape) != 2 or input_shape[1] != n_features:
        raise ModelError(
            f"{path}: model input shape {list(input_shape)} does not fit its "
            f"{n_features} feature_names; we feed [batch, {n_features}] float32"
        )
    if isinstance(input_shape[0], int):
        raise ModelError(
            f"{path}: model input has a fixed batch of {input_shape[0]}; "
            f"we feed [batch, {n_features}] with any batch (export with a dynamic batch axis)"
        )
    if len(output_shape) != 2 or output_shape[1] != n_labels:
        raise ModelError(
            f"{path}: model output shape {list(output_shape)} does not fit its "
            f"{n_labels} labels {list(contract.labels)}; we read [batch, {n_labels}] probabilities"
        )
