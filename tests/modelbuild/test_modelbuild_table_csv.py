"""A labelled table as an expert's spreadsheet saves it: `appliance models evaluate|build-skin
--data grades.csv` reads "CSV UTF-8" (with its byte order mark) and refuses other encodings by
name and line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.modelbuild.table import TableError, read_table
from appliance.shipped import SKIN_MODEL, shipped_path
from appliance.synthetic import fleet
from appliance.transport.payloads import FEATURE_KEYS


def _text(label: str = "fine") -> str:
    header = ",".join((*FEATURE_KEYS, "label"))
    row = ",".join(["1.5"] * len(FEATURE_KEYS) + [label])
    return f"{header}\n{row}\n"


def test_a_table_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    table = tmp_path / "grades.csv"
    table.write_bytes(b"\xef\xbb\xbf" + _text().encode())
    read = read_table(table)
    assert read.feature_names[0] == "pore_count"
    assert read.labels == ("fine",)


def test_a_table_not_in_utf8_is_refused_by_name(tmp_path: Path) -> None:
    """A spreadsheet's plain "CSV" (Latin-1 here): TableError, which the commands print with
    exit 2, not a UnicodeDecodeError traceback."""
    table = tmp_path / "grades.csv"
    table.write_bytes(_text(label="fïne").encode("latin-1"))
    with pytest.raises(TableError, match=r"grades\.csv: not UTF-8 text \(byte 0xef\)"):
        read_table(table)


def test_a_table_with_a_huge_cell_is_refused_by_name_and_line(tmp_path: Path) -> None:
    table = tmp_path / "grades.csv"
    table.write_text(_text() + _text().splitlines()[1] + "x" * 200_000 + "\n")
    with pytest.raises(TableError, match=r"grades\.csv:3: not readable as CSV \(field larger"):
        read_table(table)


def test_a_folder_a_pipe_or_a_link_to_a_device_given_as_a_table_is_called_what_it_is(
    tmp_path: Path,
) -> None:
    """All three exist, so "table not found" sent the user looking for a file that is there."""
    import os

    pipe, zero = tmp_path / "pipe.csv", tmp_path / "zero.csv"
    os.mkfifo(pipe)
    zero.symlink_to("/dev/zero")
    for path, what in ((tmp_path, "a folder, not a table file"),
                       (pipe, "not a regular file (a pipe, socket or device), not a table file"),
                       (zero, "not a regular file (a pipe, socket or device), not a table file"),
                       (tmp_path / "typo.csv", "table not found")):
        with pytest.raises(TableError) as refused:
            read_table(path)
        assert str(refused.value).startswith(f"{path}: {what} (make one with `appliance models "
                                             "skin-table`)")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_results_export_is_refused_as_a_table_naming_its_model_graded_label(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results export` writes every feature column and `label`, the grade the kiosk's own
    model gave: `models evaluate` on it printed accuracy 1.0000 for the shipped model, its
    answers scored against themselves, and `build-skin` would learn them as an expert's."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    rng = random.Random(3)
    results = [fleet.sample_result(rng, "lab", "k1", i) for i in range(8)]
    store = open_store(url)
    store.write_batch(Batch(results=[
        result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode()) for r in results
    ]), 10)
    store.close()
    export = tmp_path / f"results.{fmt}"
    assert main(["results", "export", "--store", url, "--format", fmt, "--out", str(export)]) == 0
    capsys.readouterr()
    assert main(["models", "evaluate", str(shipped_path(SKIN_MODEL)), "--data", str(export)]) == 2
    assert capsys.readouterr().err == (
        f"models evaluate: {export}: a results export (its model_name column): its label column is "
        "the grade the kiosk's model gave, not an expert's, so a build would learn that "
        "model's answers and an evaluation would score the model against itself; put the "
        "expert's grades in label and remove the model_name column\n")
