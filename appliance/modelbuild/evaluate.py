"""Validation report of a model on a labelled table: accuracy, per-class precision/recall,
confusion matrix, how far its probabilities can be taken at their word (``reliability.py``),
and how often the INT8 model agrees with the float model it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.inference.contract import ModelError
from appliance.inference.runner import OnnxRunner
from appliance.logsafe import escape_controls
from appliance.modelbuild.reliability import chance_ece, reliability
from appliance.modelbuild.table import LabelledTable, TableError, read_table
from appliance.modelbuild.table_splits import SPLITS

FLOAT_MODEL_KEY = "float_model"


@dataclass(frozen=True)
class ClassFigures:
    """Precision, recall and support of one label."""

    precision: float
    recall: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """What ``appliance models evaluate`` reports."""

    model: str
    version: str
    rows: int
    split: str  # which rows of the table: train/calibration/validation/test, or all
    labels: tuple[str, ...]
    accuracy: float
    per_class: dict[str, ClassFigures]
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    # the top label's mean probability, ECE, Brier score and NLL, and the ECE a calibrated
    # model shows by chance on these rows (median): reliability.py
    confidence: dict[str, float] | None = None
    float_model: str | None = None
    float_accuracy: float | None = None
    agreement_with_float: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping."""
        return asdict(self)


def confusion_matrix(
    truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], n_labels: int
) -> npt.NDArray[np.int64]:
    """Counts [true, predicted] over label indices 0..n_labels-1."""
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def per_class_figures(
    matrix: npt.NDArray[np.int64], labels: Sequence[str]
) -> dict[str, ClassFigures]:
    """Precision and recall per label from a confusion matrix (0 where undefined)."""
    figures = {}
    for i, label in enumerate(labels):
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        figures[label] = ClassFigures(
            precision=float(matrix[i, i] / predicted) if predicted else 0.0,
            recall=float(matrix[i, i] / actual) if actual else 0.0,
            support=actual,
        )
    return figures


def _true_indices(
    table: LabelledTable, labels: Sequence[str], model: Path
) -> npt.NDArray[np.int64]:
    position = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(table.labels) - set(position))
    if unknown:
        raise ModelError(
            f"{model}: the table has label(s) {unknown} that the model does not know; "
            f"model side: {list(labels)}"
        )
    return np.asarray([position[label] for label in table.labels], dtype=np.int64)


def find_float_model(runner: OnnxRunner) -> Path | None:
    """The float model named in an INT8 model's metadata, if that file exists beside it."""
    name = runner.contract.extra.get(FLOAT_MODEL_KEY)
    if not name:
        return None
    candidate = runner.path.parent / Path(name).name
    return candidate if candidate.is_file() else None


def _held_out(runner: OnnxRunner, table_path: str | Path, split: str) -> tuple[LabelledTable, str]:
    """The rows of ``split``; every row of a table without a split column (all held-out data,
    the report says "all"); TableError when the table's splits have no such rows (scoring its
    training rows instead would flatter the model)."""
    table = read_table(table_path, runner.contract.feature_names)
    if split == "all" or split in table.splits:
        return table.rows(split), split
    if set(table.splits) == {"train"}:  # no split column (read_table's default)
        return table, "all"
    present = ", ".join(name for name in SPLITS if name in table.splits)
    raise TableError(f"{table_path}: no {split} rows (its splits: {present}); name one with "
                     f"--split, or --split all for every row")


def _float_figures(
    runner: OnnxRunner, reference: Path | None, features: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64],
) -> tuple[float | None, float | None]:
    """(float accuracy, INT8/float label agreement), or (None, None) without a float model."""
    if reference is None:
        return None, None
    float_runner = OnnxRunner(reference)
    _check_same_contract(runner, float_runner)
    float_predicted = np.argmax(float_runner.probabilities(features), axis=1)
    return float(np.mean(float_predicted == truth)), float(np.mean(float_predicted == predicted))


def _check_same_contract(runner: OnnxRunner, reference: OnnxRunner) -> None:
    """Refuse a float model that reads other features, or answers other labels, than the model
    it is compared with: its answers would be compared column by column all the same."""
    ours, theirs = runner.contract, reference.contract
    for what, mine, its in (("features", ours.feature_names, theirs.feature_names),
                            ("labels", ours.labels, theirs.labels)):
        if tuple(mine) != tuple(its):
            raise ModelError(
                f"{reference.path}: the float model's {what} are {list(its)}, {runner.path}'s "
                f"are {list(mine)} (in that order); compare the two models of one build"
            )


def evaluate(
    model_path: str | Path, table_path: str | Path, split: str = "test",
    float_path: str | Path | None = None,
) -> Evaluation:
    """Score the model on the table's ``split`` rows ("all": every row) and compare to float."""
    runner = OnnxRunner(model_path)
    table, split = _held_out(runner, table_path, split)
    labels = runner.contract.labels
    truth = _true_indices(table, labels, runner.path)
    probabilities = runner.probabilities(table.features)
    predicted = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(truth, predicted, len(labels))
    reference = Path(float_path) if float_path else find_float_model(runner)
    float_accuracy, agreement = _float_figures(runner, reference, table.features, truth,
                                               predicted)
    return Evaluation(
        model=runner.contract.name, version=runner.contract.version, rows=len(table), split=split,
        labels=labels, accuracy=float(np.mean(predicted == truth)),
        per_class=per_class_figures(matrix, labels), confusion=matrix.tolist(),
        confidence=_confidence(probabilities, truth),
        float_model=str(reference) if reference else None,
        float_accuracy=float_accuracy, agreement_with_float=agreement,
    )


def _confidence(probabilities: npt.NDArray[np.float32],
                truth: npt.NDArray[np.int64]) -> dict[str, float]:
    figures = reliability(probabilities, truth)
    return {key: figures[key] for key in ("mean_confidence", "ece", "brier", "nll")} | {
        "ece_by_chance": chance_ece(probabilities, draws=200)["median"]}


def _confidence_lines(report: Evaluation) -> list[str]:
    figures = report.confidence
    if figures is None:
        return []
    return [f"confidence {figures['mean_confidence']:.4f} on average for accuracy "
            f"{report.accuracy:.4f}, Brier {figures['brier']:.4f}, NLL {figures['nll']:.4f}",
            f"ECE {figures['ece']:.4f} (10 bins, top label; a calibrated model shows about "
            f"{figures['ece_by_chance']:.4f} on as many rows)"]


def format_report(report: Evaluation) -> str:
    """The report as text for a terminal, each line escaped: the model's name, version and
    labels come from its file."""
    lines = [
        f"model {report.model} {report.version} on {report.rows} rows (split {report.split})",
        f"accuracy {report.accuracy:.4f}",
        "label        precision  recall  support",
    ]
    for label, figures in report.per_class.items():
        lines.append(
            f"{label:<12} {figures.precision:9.4f} {figures.recall:7.4f} {figures.support:8d}"
        )
    width = max(len(label) for label in report.labels) + 2
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * width + "".join(f"{label:>{width}}" for label in report.labels))
    for label, row in zip(report.labels, report.confusion, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"{count:>{width}d}" for count in row))
    lines += _confidence_lines(report)
    if report.agreement_with_float is None:
        lines.append("float model: none found (pass --float FILE to compare INT8 with float)")
    else:
        lines.append(
            f"float model {report.float_model}: accuracy {report.float_accuracy:.4f}, "
            f"INT8/float label agreement {report.agreement_with_float:.4f}"
        )
    return "\n".join(escape_controls(line) for line in lines)
