"""Build a texture-grade model from a labelled table: train, export float ONNX, INT8-quantize,
validate, and write the contract with the calibration and validation figures into both files.

Splits: ``train`` fits the MLP, ``calibration`` sets the INT8 activation ranges and the
softmax temperature (``temperature.py``: the probabilities' calibration), ``validation``
picks the quantization scheme and gives the figures in the metadata; ``test`` is never touched
here (``appliance models evaluate`` and ``benchmarks/classifier.py`` use it).

Why a 16-128-128-3 MLP: on the shipped table a linear model, 32, 64x64 and 128x128 hidden units
all reach 79-86 % validation accuracy (120-240 rows, so within sampling error of each other; the
expert-noise labels cap it), and only at 128x128 do the int8 weights outweigh the graph's fixed
overhead enough for an INT8 file half the size of the float one. Gradient-boosted trees were not
tried: ONNX tree ensembles (ai.onnx.ml) have no INT8 kernels, so static quantization would not
apply to them, and no boosting library is among the project's dependencies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.inference.contract import CREATED_AT_FORMAT, ModelContract
from appliance.modelbuild import export, quantize, temperature
from appliance.modelbuild.evaluate import FLOAT_MODEL_KEY
from appliance.modelbuild.labels import GRADE_LABELS
from appliance.modelbuild.reliability import expected_calibration_error, negative_log_likelihood
from appliance.modelbuild.table import LabelledTable, TableError, assign_splits, read_table
from appliance.modelbuild.training import TrainedMlp, label_indices, train_mlp
from appliance.outfile import fsync_path
from appliance.transport.payloads import FEATURE_KEYS

log = logging.getLogger(__name__)

DEFAULT_NAME = "skin-texture-grade"
FEW_ROWS = 50  # below this, INT8 ranges and validation figures are mostly sampling noise


@dataclass(frozen=True)
class BuildSettings:
    """What to build from which table."""

    table: Path
    out_dir: Path
    trained_on: str
    name: str = DEFAULT_NAME
    version: str = "1.0.0"
    hidden: tuple[int, ...] = (128, 128)
    epochs: int = 20
    seed: int = 0
    feature_names: tuple[str, ...] = FEATURE_KEYS
    # the metadata's created_at, as CREATED_AT_FORMAT; None: when the build starts. The only
    # thing two builds of one table, code and seed on one machine differ in: pinning it makes
    # them the same bytes (a rebuild checked against a model, by `cmp`)
    created_at: str | None = None


@dataclass(frozen=True)
class BuiltModel:
    """The two files written and the figures stored in them."""

    float_path: Path
    int8_path: Path
    contract: ModelContract
    figures: dict[str, Any] = field(default_factory=dict)


def _split(table: LabelledTable, name: str) -> LabelledTable:
    rows = table.rows(name)
    if len(rows) == 0:
        raise TableError(
            f"the table has no {name!r} rows; a build needs train, calibration and validation "
            f"rows in its split column (make one with `appliance models skin-table`)"
        )
    if name in ("calibration", "validation") and len(rows) < FEW_ROWS:
        log.warning("only %d %s rows (fewer than %d): its figures are rough; label more data",
                    len(rows), name, FEW_ROWS)
    return rows


def _accuracy(probabilities: np.ndarray, table: LabelledTable, labels: Sequence[str]) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == label_indices(table.labels, labels)))


def _sha256_short(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _utc_now() -> str:
    return datetime.now(UTC).strftime(CREATED_AT_FORMAT)


def _contract(settings: BuildSettings, labels: Sequence[str], figures: dict[str, Any],
              extra: dict[str, str]) -> ModelContract:
    return ModelContract(
        name=settings.name,
        version=settings.version,
        feature_names=settings.feature_names,
        labels=tuple(labels),
        trained_on=f"{settings.trained_on} [table {settings.table.name} "
        f"sha256:{_sha256_short(settings.table)}]",
        created_at=settings.created_at or _utc_now(),
        figures=figures,
        extra=extra,
    )


def _calibrate_confidence(
    table: LabelledTable, labels: Sequence[str], paths: tuple[Path, Path]
) -> dict[str, Any]:
    """Fit the temperature on the INT8 model's calibration rows, put it in both graphs (one T,
    so the two stay comparable), and say what it did there and on the validation rows."""
    calibration, validation = _split(table, "calibration"), _split(table, "validation")
    truth = label_indices(calibration.labels, labels)
    before = quantize.predict(paths[1], calibration.features)
    value = temperature.fit_temperature(before, truth)
    if temperature.at_bound(value):
        log.warning("temperature %.2f: at the bound of its search; the %d calibration rows say "
                    "little about confidence (label more data)", value, len(calibration))
    validation_truth = label_indices(validation.labels, labels)
    validation_before = quantize.predict(paths[1], validation.features)
    for path in paths:
        temperature.set_temperature(path, value)
    after = temperature.tempered(before, value)
    return {
        "value": value, "fitted_on_rows": len(calibration),
        "nll_before": round(negative_log_likelihood(before, truth), 4),
        "nll_after": round(negative_log_likelihood(after, truth), 4),
        "validation_ece_before": round(
            expected_calibration_error(validation_before, validation_truth), 4),
        "validation_ece_after": round(expected_calibration_error(
            quantize.predict(paths[1], validation.features), validation_truth), 4),
    }


def _figures(
    model: TrainedMlp, scheme: quantize.Scheme, schemes: list[quantize.Scheme],
    table: LabelledTable, paths: tuple[Path, Path],
) -> dict[str, Any]:
    calibration, validation = _split(table, "calibration"), _split(table, "validation")
    float_p = quantize.predict(paths[0], validation.features)
    int8_p = quantize.predict(paths[1], validation.features)
    return {
        "calibration": {
            "rows": len(calibration), "method": "MinMax", "activations": "uint8",
            "weights": "int8", "chosen": asdict(scheme), "candidates": [asdict(s) for s in schemes],
        },
        "validation": {
            "rows": len(validation), "hidden_layers": list(model.hidden_sizes),
            "train_rows": len(_split(table, "train")),
            "accuracy_float": _accuracy(float_p, validation, model.labels),
            "accuracy_int8": _accuracy(int8_p, validation, model.labels),
            "agreement_int8_float": quantize.agreement(float_p, int8_p),
        },
    }


def _read(settings: BuildSettings) -> tuple[LabelledTable, BuildSettings]:
    """The table, with random 60/10/10/20 splits (said in trained_on) if it has none."""
    table = read_table(settings.table, settings.feature_names)
    if set(table.splits) != {"train"}:
        return table, settings
    log.warning("%s has no split column: assigning splits at random (seed %d)", settings.table,
                settings.seed)
    table = replace(table, splits=assign_splits(len(table), settings.seed))
    note = f"; splits assigned at random by the build (seed {settings.seed})"
    return table, replace(settings, trained_on=settings.trained_on + note)


def build_model(settings: BuildSettings) -> BuiltModel:
    """Train, export, quantize and validate; returns the written float and INT8 paths.

    Both files are made in a hidden folder inside ``out_dir`` and renamed into place only once
    both are whole: a build that fails (a full disk) leaves the models already there as they
    were, and no cut file under their names. A killed build's folder is removed by the next.
    """
    table, settings = _read(settings)
    if settings.created_at is None:  # one time for both files, whatever the build takes
        settings = replace(settings, created_at=_utc_now())
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    with _scratch(settings.out_dir) as scratch:
        staged = _build_in(scratch, settings, table)
        placed = _put_pair_in_place((staged.float_path, staged.int8_path), settings.out_dir)
    log.info("built %s (%d B) and %s (%d B)", placed[1], placed[1].stat().st_size, placed[0],
             placed[0].stat().st_size)
    return replace(staged, float_path=placed[0], int8_path=placed[1])


SCRATCH_PREFIX = ".build-"


@contextlib.contextmanager
def _scratch(out_dir: Path) -> Iterator[Path]:
    """This build's hidden folder in ``out_dir``, locked (flock) while the build runs and
    removed after; first removes the folders of killed builds (no lock held on them), leaving
    those of builds still running.

    A folder is made and locked while ``out_dir`` itself is locked, and the clean-up looks only
    while it holds that lock too: a folder just made, not locked yet, would look killed."""
    _remove_killed_builds(out_dir)
    with _holding_out_dir(out_dir, wait=True):
        folder = Path(tempfile.mkdtemp(dir=out_dir, prefix=SCRATCH_PREFIX))
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the next build removes what this cannot
        os.close(fd)


@contextlib.contextmanager
def _holding_out_dir(out_dir: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the lock on ``out_dir`` that a build holds from making its folder to locking it,
    and while it renames its two models into place; without ``wait``, yields False at once
    when another build holds it."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove_killed_builds(out_dir: Path) -> None:
    """Remove the folders no build holds; none while another build is making its folder (the
    next build looks again)."""
    with _holding_out_dir(out_dir, wait=False) as alone:
        if not alone:
            return
        for folder in out_dir.glob(f"{SCRATCH_PREFIX}*"):
            if not folder.is_dir() or folder.is_symlink():
                continue
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build at work in it
            finally:
                os.close(fd)
            shutil.rmtree(folder)
            log.info("%s removed: left by a build that was killed", folder)


def _put_pair_in_place(staged: tuple[Path, Path], out_dir: Path) -> list[Path]:
    """Rename the float and INT8 files into ``out_dir`` while holding its lock: two builds
    into one folder leave one build's pair, never one's float model beside the other's INT8
    (which names its float twin by file name and was validated against it)."""
    with _holding_out_dir(out_dir, wait=True):
        return [_put_in_place(path, out_dir) for path in staged]


def _put_in_place(staged: Path, out_dir: Path) -> Path:
    """Flush ``staged`` to disk and rename it into ``out_dir`` (the same file system)."""
    fsync_path(staged)
    final = out_dir / staged.name
    os.replace(staged, final)
    return final


def _build_in(folder: Path, settings: BuildSettings, table: LabelledTable) -> BuiltModel:
    """Train on ``table``, export, quantize and validate into ``folder``."""
    labels = table.label_set(GRADE_LABELS)
    model = train_mlp(_split(table, "train"), labels, settings.hidden, settings.epochs,
                      seed=settings.seed)
    float_path = folder / f"{settings.name}.float.onnx"
    int8_path = folder / f"{settings.name}.int8.onnx"
    float_contract = _contract(settings, labels, {}, {"precision": "float32"})
    export.save(export.build_graph(model, float_contract), float_path)
    scheme, schemes = quantize.choose_and_quantize(
        float_path, int8_path, _split(table, "calibration").features,
        _split(table, "validation").features, len(model.layers),
    )
    confidence = _calibrate_confidence(table, labels, (float_path, int8_path))
    figures = _figures(model, scheme, schemes, table, (float_path, int8_path))
    figures["calibration"]["temperature"] = confidence
    float_contract = _contract(settings, labels, figures, {"precision": "float32"})
    export.rewrite_metadata(float_path, float_contract)
    contract = _contract(
        settings, labels, figures, {"precision": "int8", FLOAT_MODEL_KEY: float_path.name}
    )
    export.rewrite_metadata(int8_path, contract)
    return BuiltModel(float_path, int8_path, contract, figures)


def compare_architectures(
    table_path: Path, candidates: Sequence[tuple[int, ...]], epochs: int = 20, seed: int = 0
) -> list[dict[str, Any]]:
    """Validation accuracy and parameter count of float models of each hidden-layer shape."""
    table = read_table(table_path)
    labels = table.label_set(GRADE_LABELS)
    validation = _split(table, "validation")
    rows = []
    for hidden in candidates:
        model = train_mlp(_split(table, "train"), labels, hidden, epochs, seed=seed)
        logits = model.logits(validation.features)
        rows.append({
            "hidden_layers": list(hidden),
            "parameters": int(sum(w.size + b.size for w, b in model.layers)),
            "validation_accuracy": _accuracy(logits, validation, labels),
        })
    return rows
