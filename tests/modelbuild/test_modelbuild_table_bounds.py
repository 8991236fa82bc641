"""A labelled table read for a build, an evaluation or a release's self-test is bounded by what
it holds once read, not only by its file's bytes: Parquet stores a value repeated over many
rows in a few bytes, so a small file could ask for gigabytes (appliance/modelbuild/table.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.modelbuild import table
from appliance.modelbuild.table import MAX_TABLE_ROWS, MAX_TEXT_CHARS, TableError, read_table
from appliance.transport.payloads import FEATURE_KEYS


def _parquet(path: Path, rows: int, label: str = "fine", **options: object) -> Path:
    """A table of ``rows`` equal rows (every feature 1.0, one label), as Parquet packs it."""
    columns = {key: pa.array([1.0] * rows, pa.float64()) for key in FEATURE_KEYS}
    columns["label"] = pa.array([label] * rows)
    pq.write_table(pa.table(columns), path, compression="zstd", **options)
    return path


def test_a_small_parquet_file_of_too_many_rows_is_refused_before_it_is_read(
        tmp_path: Path) -> None:
    path = _parquet(tmp_path / "rows.parquet", MAX_TABLE_ROWS + 50_000)
    assert path.stat().st_size < 100_000  # 250,000 rows: about 500 MB once read as it was
    with pytest.raises(TableError, match=rf"rows\.parquet: more than {MAX_TABLE_ROWS} rows; "
                                         "split the table"):
        read_table(path)  # on main: read


def test_a_long_text_repeated_over_the_rows_is_refused(tmp_path: Path) -> None:
    long = "x" * 100_000  # stored once in the file; 1,000 rows: 100 MB once read
    path = _parquet(tmp_path / "text.parquet", 1000, label=long)
    assert path.stat().st_size < 100_000
    with pytest.raises(TableError, match=r"column 'label' holds a value of 100000 characters; "
                                         rf"at most {MAX_TEXT_CHARS}"):
        read_table(path)  # on main: read


def test_pages_that_unpack_to_more_than_a_table_holds_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "MAX_TABLE_BYTES", 1_000_000)
    path = _parquet(tmp_path / "pages.parquet", 20_000, use_dictionary=False)  # 2.7 MB unpacked
    assert path.stat().st_size < 1_000_000
    with pytest.raises(TableError, match=r"pages\.parquet: its pages unpack to \d+ bytes; a "
                                         "table holds at most 1000000"):
        read_table(path)


def test_a_csv_table_of_too_many_rows_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "MAX_TABLE_ROWS", 10)
    path = tmp_path / "rows.csv"
    row = ",".join(["1.0"] * len(FEATURE_KEYS)) + ",fine\n"
    path.write_text(",".join([*FEATURE_KEYS, "label"]) + "\n" + row * 11)
    with pytest.raises(TableError, match=r"rows\.csv: more than 10 rows"):
        read_table(path)
    path.write_text(",".join([*FEATURE_KEYS, "label"]) + "\n" + row * 10)
    assert len(read_table(path).labels) == 10


def test_a_table_within_the_bounds_is_read_as_written(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "fits.parquet", 1000, label="n" * MAX_TEXT_CHARS)
    read = read_table(path)
    assert read.labels == ("n" * MAX_TEXT_CHARS,) * 1000
    assert float(read.features.sum()) == 1000 * len(FEATURE_KEYS)
