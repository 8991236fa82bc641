"""Labelled feature tables (CSV or Parquet): one row per measurement, feature columns + label.

Columns: every feature the model uses (named as in FEATURE_KEYS), ``label`` (the expert's grade,
a string), optionally ``split`` (train / calibration / validation / test) and provenance columns
(``source``), which are carried along but never fed to a model. A Parquet table also carries a
description of where its rows came from, which a build copies into the model's ``trained_on``.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.boundedread import what_is_there
from appliance.modelbuild.table_splits import SPLIT_SHARES, SPLITS
from appliance.outfile import replaced_when_complete
from appliance.transport.payloads import FEATURE_KEYS

log = logging.getLogger(__name__)

KNOWN_COLUMNS = ("label", "split", "source")
MAX_TABLE_BYTES = 200 * 1024 * 1024
# a row is a measured frame (`models skin-table`: about 0.3 CPU s each): far above any table
# made, and what it holds once read (a few hundred MB) bounded
MAX_TABLE_ROWS = 200_000
MAX_TEXT_CHARS = 256  # a Parquet table's label, split or source value
DESCRIPTION_KEY = b"appliance.description"


# `appliance results export` writes the feature columns and `label`, the grade the kiosk's own
# model gave (`model_name`, `model_version`): read as an expert's grade, a build learns that
# model's answers and `models evaluate` scores the model against itself (accuracy 1.0000)
_EXPORT_REFUSAL = (
    "{file}: a results export (its model_name column): its label column is the grade the "
    "kiosk's model gave, not an expert's, so a build would learn that model's answers and "
    "an evaluation would score the model against itself; put the expert's grades in label "
    "and remove the model_name column"
)


class TableError(ValueError):
    """A labelled table that cannot be used; the message names the file, column or row."""


@dataclass(frozen=True)
class LabelledTable:
    """Feature matrix [rows, features] with labels and splits, in memory."""

    feature_names: tuple[str, ...]
    features: npt.NDArray[np.float32]
    labels: tuple[str, ...]
    splits: tuple[str, ...]
    sources: tuple[str, ...]
    description: str = ""  # where the rows came from (stored in Parquet metadata)

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, split: str) -> LabelledTable:
        """Only the rows of one split ("all" keeps every row)."""
        if split == "all":
            return self
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return LabelledTable(
            self.feature_names,
            self.features[keep],
            tuple(self.labels[i] for i in keep),
            tuple(self.splits[i] for i in keep),
            tuple(self.sources[i] for i in keep),
            self.description,
        )

    def label_set(self, order: Sequence[str] = ()) -> tuple[str, ...]:
        """Distinct labels: those in ``order`` first (in that order), then the rest sorted."""
        present = set(self.labels)
        return tuple(x for x in order if x in present) + tuple(sorted(present - set(order)))


def _check_table_file(path: Path) -> None:
    """Refuse what is no table file, saying what it is: a pipe there would wait for a writer
    for ever, a link to a device never end."""
    if (what := what_is_there(path, "table file", missing="table")) is not None:
        raise TableError(f"{path}: {what} (make one with `appliance models skin-table`)")


def _columns(path: Path) -> tuple[dict[str, list[str]], str]:
    _check_table_file(path)
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise TableError(f"{path}: larger than {MAX_TABLE_BYTES} bytes; split the table")
    if path.suffix == ".parquet":
        return _parquet_columns(path)
    if path.suffix != ".csv":
        raise TableError(f"{path}: unknown table format; use .csv or .parquet")
    # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte order mark, which would
    # otherwise become part of the first column's name
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            records = list(itertools.islice(reader, MAX_TABLE_ROWS + 1))
            _check_rows(path, len(records))
            names = reader.fieldnames or []
        except UnicodeDecodeError as exc:  # a spreadsheet's plain "CSV": its local code page
            raise TableError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                             "save it as CSV UTF-8") from exc
        except csv.Error as exc:  # a field over the csv module's limit (128 KiB)
            line = reader.line_num + 1  # the reader counts the lines it finished
            raise TableError(f"{path}:{line}: not readable as CSV ({exc})") from exc
    return {name: [r.get(name) or "" for r in records] for name in names}, ""


def _check_rows(path: Path, rows: int) -> None:
    if rows > MAX_TABLE_ROWS:
        raise TableError(f"{path}: more than {MAX_TABLE_ROWS} rows; split the table")


def _parquet_columns(path: Path) -> tuple[dict[str, list[str]], str]:
    """A Parquet table's columns as text and its description. Its size is checked before
    anything is decoded (a 300 KB file may hold 4 million rows of one value, 8 GB once read):
    rows and pages' unpacked bytes from the file's metadata, then the longest of each text
    column's distinct values, which its rows may repeat."""
    import pyarrow.compute as pc  # noqa: PLC0415  (the train extra; CSV needs none)
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        found = pq.ParquetFile(path)
        _check_rows(path, found.metadata.num_rows)
        _check_unpacked(path, found.metadata)
        texts = [field.name for field in found.schema_arrow if str(field.type) == "string"]
        arrow = pq.read_table(path, read_dictionary=texts)  # each distinct text once
    except TableError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise TableError(f"{path}: not a readable Parquet file: {exc}") from exc
    for name in texts:
        longest = max((pc.max(pc.utf8_length(chunk.dictionary)).as_py() or 0
                       for chunk in arrow.column(name).chunks), default=0)
        if longest > MAX_TEXT_CHARS:
            raise TableError(f"{path}: column {name!r} holds a value of {longest} characters; "
                             f"at most {MAX_TEXT_CHARS}")
    meta = arrow.schema.metadata or {}
    description = meta.get(DESCRIPTION_KEY, b"").decode("utf-8", "replace")
    columns = {
        name: ["" if v is None else str(v) for v in col]
        for name, col in arrow.to_pydict().items()
    }
    return columns, description


def _check_unpacked(path: Path, metadata: Any) -> None:
    """Refuse a Parquet file whose pages unpack to more than a table file may hold."""
    unpacked = sum(metadata.row_group(group).column(column).total_uncompressed_size
                   for group in range(metadata.num_row_groups)
                   for column in range(metadata.num_columns))
    if unpacked > MAX_TABLE_BYTES:
        raise TableError(f"{path}: its pages unpack to {unpacked} bytes; a table holds at most "
                         f"{MAX_TABLE_BYTES}; split the table")


def _feature_matrix(
    path: Path, columns: dict[str, list[str]], names: Sequence[str]
) -> npt.NDArray[np.float32]:
    matrix = np.empty((len(columns["label"]), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        for i, raw in enumerate(columns[name]):
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise TableError(f"{path}: row {i + 2}, column {name!r}: {raw!r} is not a number")
            matrix[i, j] = value
    return matrix


def read_table(path: str | Path, feature_names: Sequence[str] = FEATURE_KEYS) -> LabelledTable:
    """Read a labelled CSV/Parquet table; TableError names a missing column or a bad cell."""
    file = Path(path)
    columns, description = _columns(file)
    missing = [name for name in (*feature_names, "label") if name not in columns]
    if missing:
        raise TableError(
            f"{file}: missing column(s) {', '.join(missing)}; the table has {sorted(columns)}"
        )
    if "model_name" in columns:
        raise TableError(_EXPORT_REFUSAL.format(file=file))
    ignored = sorted(set(columns) - set(feature_names) - set(KNOWN_COLUMNS))
    if ignored:
        log.warning("%s: columns not used as model inputs: %s", file, ", ".join(ignored))
    rows = len(columns["label"])
    if rows == 0:
        raise TableError(f"{file}: the table has no rows")
    splits = columns.get("split", ["train"] * rows)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise TableError(f"{file}: unknown split value(s) {unknown}; use {list(SPLITS)}")
    return LabelledTable(
        feature_names=tuple(feature_names),
        features=_feature_matrix(file, columns, feature_names),
        labels=tuple(columns["label"]),
        splits=tuple(splits),
        sources=tuple(columns.get("source", [""] * rows)),
        description=description,
    )


def assign_splits(rows: int, seed: int) -> tuple[str, ...]:
    """A shuffled train / calibration / validation / test assignment of ``rows`` rows."""
    counts = [round(rows * SPLIT_SHARES[name]) for name in SPLITS[1:]]
    names = [name for name, n in zip(SPLITS[1:], counts, strict=True) for _ in range(n)]
    names = ["train"] * (rows - len(names)) + names
    order = np.random.default_rng([seed, 99]).permutation(rows)
    return tuple(names[i] for i in order)


def write_table(path: str | Path, table: LabelledTable) -> Path:
    """Write a table as Parquet (float32 features, zstd) or CSV, picked by the file suffix."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_complete(file) as temp:  # a full disk leaves the old file or none
        _write_table_to(temp, file.suffix, table)
    return file


def _write_table_to(file: Path, suffix: str, table: LabelledTable) -> None:
    if suffix == ".parquet":
        import pyarrow as pa  # noqa: PLC0415  (the train extra; CSV needs none)
        import pyarrow.parquet as pq  # noqa: PLC0415

        data = {name: pa.array(table.features[:, j]) for j, name in enumerate(table.feature_names)}
        data.update(label=table.labels, split=table.splits, source=table.sources)
        arrow = pa.table(data).replace_schema_metadata({DESCRIPTION_KEY: table.description})
        pq.write_table(arrow, file, compression="zstd")
        return
    with file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*table.feature_names, "label", "split", "source"])
        for i in range(len(table)):
            row = [f"{v:.6g}" for v in table.features[i]]
            writer.writerow([*row, table.labels[i], table.splits[i], table.sources[i]])
