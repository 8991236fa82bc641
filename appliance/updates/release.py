"""Building a release's manifest: check the model, record its self-test on representative inputs.

The self-test inputs come from a labelled feature table (``appliance models skin-table``
writes one; CSV or Parquet), a spread of rows from its test split: the kiosk replays them and
its health check compares live labels with their label shares. Without a table, a release takes
the rows the shipped grader was tested on (package data, ``appliance/shipped/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from appliance.boundedread import NotRegularFileError, TooLargeError, read_bounded
from appliance.inference.contract import ModelContract, ModelError
from appliance.inference.loader import check_model_file
from appliance.inference.runner import (
    MAX_MODEL_BYTES,
    NAMED_MODEL_HINT,
    RUN_DEADLINE_S,
    OnnxRunner,
)
from appliance.transport.payloads import FEATURE_KEYS, PATTERN_WORDS
from appliance.updates.manifest import (
    FEATURE_SCHEMA,
    SEMVER,
    ManifestError,
    ModelManifest,
    semver_key,
)
from appliance.updates.selftest import record_self_test

if TYPE_CHECKING:
    from appliance.modelbuild.table import LabelledTable

DEFAULT_SELF_TEST_ROWS = 32


def read_once(model: Path) -> bytes:
    """The content of ``model`` in one read, for a release to load, self-test, hash and ship:
    a file replaced or rewritten while the release runs cannot part the self-test from the
    model shipped."""
    check_model_file(model, MAX_MODEL_BYTES, NAMED_MODEL_HINT)
    try:
        return read_bounded(model, MAX_MODEL_BYTES)  # a pipe put there since: not waited on
    except NotRegularFileError:
        raise ModelError(f"{model}: no longer a regular file (replaced since it was "
                         f"checked); {NAMED_MODEL_HINT}") from None
    except TooLargeError:
        raise ModelError(f"{model}: grew past {MAX_MODEL_BYTES} bytes while being read; "
                         f"{NAMED_MODEL_HINT}") from None


def load_once(model: Path) -> tuple[bytes, OnnxRunner]:
    """``model``'s content (``read_once``) and the one session loaded, checked and warmed up
    from it: what the release self-tests is what it hashes, signs and ships. Each run is
    bounded as the kiosk bounds it (``RUN_DEADLINE_S``), so a model no kiosk would install is
    refused here, before it is signed."""
    data = read_once(model)
    return data, OnnxRunner(model, NAMED_MODEL_HINT, data=data, run_deadline_s=RUN_DEADLINE_S)


def manifest_for(
    model: Path,
    version: str,
    inputs: Sequence[Sequence[float]],
    *,
    device_types: Sequence[str] = ("skin-kiosk",),
    feature_schema: str = FEATURE_SCHEMA,
    input_names: Sequence[str] = FEATURE_KEYS,
) -> ModelManifest:
    """The manifest of ``model`` released as ``version``, self-test recorded on ``inputs``:
    measured feature vectors of ``input_names`` (a feature table's rows), of which the model
    is given the features it reads, in its order, as the kiosk gives them."""
    runner = OnnxRunner(model, NAMED_MODEL_HINT, run_deadline_s=RUN_DEADLINE_S)
    return runner_manifest(runner, version, inputs,
                           device_types=device_types, feature_schema=feature_schema,
                           input_names=input_names)


def runner_manifest(
    runner: OnnxRunner,
    version: str,
    inputs: Sequence[Sequence[float]],
    *,
    device_types: Sequence[str] = ("skin-kiosk",),
    feature_schema: str = FEATURE_SCHEMA,
    input_names: Sequence[str] = FEATURE_KEYS,
) -> ModelManifest:
    """``manifest_for`` the model ``runner`` has loaded already."""
    semver_key(version)
    contract = runner.contract
    if SEMVER.match(contract.version) is None:
        raise ManifestError(
            f"{runner.path}: the model's metadata says version {contract.version!r}, which is "
            "not a semantic version like 1.2.3, so no release can carry it; rebuild the model "
            "with one (appliance models build-skin --version)")
    if contract.version != version:
        raise ManifestError(
            f"{runner.path}: the model's metadata says version {contract.version}, the release "
            f"says {version}; release it as {contract.version} or rebuild it with the new version"
        )
    try:
        return ModelManifest(
            name=contract.name,
            version=version,
            feature_schema=feature_schema,
            device_types=list(device_types),
            self_test=record_self_test(runner, model_inputs(contract, inputs, input_names)),
        )
    except ValidationError as exc:
        raise _refusal(exc, runner.path) from exc


def model_inputs(
    contract: ModelContract, measured: Sequence[Sequence[float]],
    input_names: Sequence[str] = FEATURE_KEYS,
) -> list[list[float]]:
    """Measured feature vectors (values of ``input_names``, in that order) cut to the model's
    features, in its order (a model may read a subset of the features, in any order)."""
    widths = sorted({len(row) for row in measured} - {len(input_names)})
    if widths:
        raise ManifestError(f"self-test inputs of {widths[0]} values; each is a measured feature "
                            f"vector of {len(input_names)} ({', '.join(input_names)})")
    lacking = [name for name in contract.feature_names if name not in input_names]
    if lacking:
        raise ManifestError(f"the self-test inputs lack {', '.join(lacking)}, which the model "
                            f"reads; they hold {', '.join(input_names)}")
    columns = [list(input_names).index(name) for name in contract.feature_names]
    return [[float(row[column]) for column in columns] for row in measured]


_OPTION_OF = {"device_types": "--device-types", "feature_schema": "--feature-schema"}


def _refusal(exc: ValidationError, model: Path) -> ManifestError:
    """The first thing the manifest could not hold, named as the release option that gave it
    (the name: as ``model``'s metadata, which gave it)."""
    first = exc.errors()[0]
    field = str(first["loc"][0])
    option = _OPTION_OF.get(field, field)
    if field == "device_types" and first["type"] == "too_short":
        return ManifestError(f"{option}: at least one device type (comma-separated)")
    given = repr(first["input"])
    shown = given if len(given) <= 80 else given[:80] + "..."
    words = PATTERN_WORDS.get(first.get("ctx", {}).get("pattern", ""))
    said = f"must be {words}" if words is not None else first["msg"]
    if field == "name":  # no option gives it: the model's own metadata does
        return ManifestError(f"{model}: the model's metadata 'name' {shown}: {said}; rebuild it "
                             "with a name that fits")
    return ManifestError(f"{option} {shown}: {said}")


def self_test_rows(
    table_path: Path, rows: int = DEFAULT_SELF_TEST_ROWS,
    feature_names: Sequence[str] = FEATURE_KEYS,
) -> LabelledTable:
    """``rows`` evenly spread rows of a feature table's test split (all rows if it has none),
    of the columns ``feature_names`` (the table may hold no others)."""
    from appliance.modelbuild.table import (  # noqa: PLC0415 - pyarrow for Parquet
        LabelledTable,
        read_table,
    )

    table = read_table(table_path, feature_names)
    test = table.rows("test") if "test" in table.splits else table
    if len(test) == 0:
        raise ManifestError(f"{table_path}: no rows to take self-test inputs from")
    picks = np.unique(np.linspace(0, len(test) - 1, min(rows, len(test))).astype(int))
    return LabelledTable(test.feature_names, test.features[picks],
                         tuple(test.labels[i] for i in picks), tuple(test.splits[i] for i in picks),
                         tuple(test.sources[i] for i in picks), test.description)


def table_inputs(
    table_path: Path, feature_names: Sequence[str] = FEATURE_KEYS,
    rows: int = DEFAULT_SELF_TEST_ROWS,
) -> list[list[float]]:
    """The self-test inputs of a feature table: its ``self_test_rows`` of the columns
    ``feature_names`` as plain floats."""
    chosen = self_test_rows(table_path, rows, feature_names)
    return [[float(v) for v in row] for row in chosen.features]
