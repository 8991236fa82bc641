"""Small labelled tables and tiny models for the inference tests (no synthetic rendering)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from appliance.inference.contract import ModelContract
from appliance.modelbuild.table import LabelledTable
from appliance.transport.payloads import FEATURE_KEYS

if TYPE_CHECKING:
    from appliance.modelbuild.training import TrainedMlp

LABELS = ("fine", "normal", "coarse")
# Typical magnitudes of each feature, so normalisation inside the graph matters.
SCALES = np.array(
    [90, 75, 150, 0.02, 6, 12, 0.08, 45, 0.3, 50, 60, 10, 15, 30, 20, 0.05], dtype=np.float32
)


def make_table(rows: int = 600, seed: int = 0, noise: float = 0.1) -> LabelledTable:
    """Features at realistic scales; the grade follows hill density over furrow width."""
    rng = np.random.default_rng(seed)
    features = (rng.lognormal(0.0, 0.35, (rows, len(FEATURE_KEYS))) * SCALES).astype(np.float32)
    score = np.log(features[:, 5]) - np.log(features[:, 7]) + rng.normal(0.0, noise, rows)
    low, high = np.quantile(score, [1 / 3, 2 / 3])
    labels = tuple("coarse" if s < low else "normal" if s < high else "fine" for s in score)
    shares = {"train": 0.6, "calibration": 0.1, "validation": 0.1}
    splits = [name for name, share in shares.items() for _ in range(int(rows * share))]
    splits += ["test"] * (rows - len(splits))
    return LabelledTable(
        FEATURE_KEYS, features, labels, tuple(splits), tuple([""] * rows), "test table"
    )


def contract(version: str = "1.0.0", **changes: object) -> ModelContract:
    """A valid contract for the test models."""
    base = ModelContract(
        name="skin-texture-grade", version=version, feature_names=FEATURE_KEYS, labels=LABELS,
        trained_on="unit-test table", created_at="2026-11-26T00:00:00Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def train_tiny(table: LabelledTable, epochs: int = 40) -> TrainedMlp:
    """A small MLP trained for a few seconds at most."""
    from appliance.modelbuild.training import train_mlp

    return train_mlp(table.rows("train"), LABELS, (32, 32), epochs, seed=0)


def write_float(path: Path, model: TrainedMlp, model_contract: ModelContract) -> Path:
    """The float ONNX file of ``model`` with ``model_contract`` as metadata."""
    from appliance.modelbuild import export

    return export.save(export.build_graph(model, model_contract), path)


def write_int8(path: Path, float_path: Path, table: LabelledTable) -> Path:
    """A QDQ per-channel INT8 version of ``float_path`` calibrated on the calibration split."""
    from appliance.modelbuild import quantize

    scheme = quantize.Scheme("QDQ", per_channel=True)
    return quantize.quantize(float_path, path, table.rows("calibration").features, scheme)
