"""``appliance results query|export`` and ``appliance fleet`` on a filled store."""

from __future__ import annotations

import csv
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from appliance.backoffice import export
from appliance.backoffice.export import EXPORT_COLUMNS
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import DeadLetter, device_row, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.edge.reasons import not_graded_reason
from appliance.modelbuild.table import TableError, read_table
from appliance.synthetic import fleet

OUTSIDE = ["pore_count", "kime_score"]  # one result's features outside the validated range


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite store with 12 results from 3 kiosks and one kiosk's birth message."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    store = open_store(url)
    rng = random.Random(9)
    results = [fleet.sample_result(rng, "lab", f"k{i % 3}", i) for i in range(12)]
    results[10] = results[10].model_copy(update={"not_validated": OUTSIDE})  # k1, 2nd newest
    withheld = results[7].quality.model_copy(
        update={"reasons": [not_graded_reason(["pore_count"])]})
    results[7] = results[7].model_copy(update={"classification": None, "quality": withheld})
    results[4] = results[4].model_copy(update={"classification": None})  # k1: no model ran
    rows = [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode()) for r in results]
    birth = device_row(fleet.online_status("lab", "k1", 4), "2026-11-26T00:00:01.000000Z")
    junk = DeadLetter("2026-11-26T00:00:02.000000Z", "appliance/lab/k1/result",
                      "not UTF-8 JSON: Expecting value", 9, b"garbage\xff!", None)
    store.write_batch(Batch(results=rows, statuses=[birth], dead_letters=[junk]), 10)
    store.close()
    return url


def _cli(*args: str) -> int:
    return main(list(args))


def test_export_csv_and_jsonl_hold_every_result_with_all_columns(
    store_url: str, tmp_path: Path
) -> None:
    assert _cli("results", "export", "--store", store_url, "--out", str(tmp_path / "r.csv")) == 0
    with (tmp_path / "r.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 12
    assert tuple(rows[0]) == EXPORT_COLUMNS
    jsonl = tmp_path / "r.jsonl"
    assert _cli("results", "export", "--store", store_url, "--format", "jsonl",
                "--device", "k2", "--out", str(jsonl)) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 4
    assert {r["device_id"] for r in records} == {"k2"}


def test_export_names_an_out_file_with_control_characters_escaped(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The success line echoed --out raw: a newline in the name forged a second line, an ANSI
    escape drove the terminal."""
    out = tmp_path / "r\x1b[2J\nexported 0.csv"
    assert _cli("results", "export", "--store", store_url, "--out", str(out)) == 0
    said = capsys.readouterr().err
    assert said.startswith(f"exported 12 result(s) as csv to {tmp_path}/r\\x1b[2J\\nexported "
                           "0.csv from the SQLite store ")
    assert said.count("\n") == 1
    assert "\x1b" not in said
    assert len(out.read_text().splitlines()) == 13  # the file keeps its name as given


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_to_a_folder_is_refused_at_once_naming_a_file_to_write(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], force: list[str]
) -> None:
    """It said "exists; pass --force to replace it", and with --force exported every result
    only to fail at the end ("Is a directory")."""
    folder = tmp_path / "exports"
    (folder / "kept").mkdir(parents=True)
    assert _cli("results", "export", "--store", store_url, "--format", "jsonl", "--out",
                str(folder), *force) == 2
    assert capsys.readouterr().err == ("results export: "
                                       f"--out {folder}: a folder; name the file to "
                                       f"write (e.g. {folder / 'results.jsonl'})\n")
    assert sorted(path.name for path in folder.iterdir()) == ["kept"]


def test_export_over_a_link_to_nothing_is_refused_unless_forced(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A results.csv link whose target is gone (or a link loop) was replaced by the export
    without --force, the link lost, where every other file there is refused."""
    out = tmp_path / "results.csv"
    out.symlink_to(tmp_path / "archive" / "results.csv")
    assert _cli("results", "export", "--store", store_url, "--out", str(out)) == 2
    assert capsys.readouterr().err == ("results export: "
                                       f"{out} exists; pass --force to replace it\n")
    assert out.is_symlink()
    assert _cli("results", "export", "--store", store_url, "--out", str(out), "--force") == 0
    assert len(out.read_text().splitlines()) == 13


def test_export_into_a_folder_that_is_not_there_is_refused_naming_it(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report cohort` makes its folder, an export did not: it read the store, then failed
    with exit 1 and "could not write it (No such file or directory)". An export makes no
    folder (a mistyped path would hide the results): refused at once, naming the folder."""
    missing = tmp_path / "nodir" / "deeper"
    assert _cli("results", "export", "--store", store_url, "--out", str(missing / "x.csv")) == 2
    assert capsys.readouterr().err == ("results export: "
                                       f"--out {missing}/x.csv: no folder {missing}; "
                                       "make it first, or name a file in a folder that exists\n")
    (tmp_path / "afile").write_text("kept")
    assert _cli("results", "export", "--store", f"sqlite:///{tmp_path / 'none'}",
                "--out", str(tmp_path / "afile" / "x.csv")) == 2  # before the store is opened
    assert capsys.readouterr().err == ("results export: "
                                       f"--out {tmp_path}/afile/x.csv: {tmp_path}/afile "
                                       "is not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "r.sqlite3"]


def test_export_to_an_empty_file_name_says_so_not_that_it_is_a_folder(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script's --out "$FILE" with FILE unset said "--out : a folder; ... (e.g. results.csv)"
    (the empty name read as the working folder)."""
    assert _cli("results", "export", "--store", store_url, "--out", "") == 2
    assert capsys.readouterr().err == ("results export: "
                                       "--out: empty file name; name the file to write "
                                       "(e.g. results.csv, or - for standard output)\n")


def test_export_as_parquet_without_out_is_refused_as_an_option_naming_what_to_give(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results export --format parquet` (standard output is --out's default) said "export
    failed: parquet is binary: give --out FILE", exit 1, as if the store had failed, and only
    after the store was opened and read."""
    assert _cli("results", "export", "--store", store_url, "--format", "parquet") == 2
    assert capsys.readouterr().err == (
        "results export: --format parquet is binary, for a file: name it with --out (e.g. "
        "results.parquet); standard output takes csv or jsonl\n")


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_out_that_is_a_pipe_or_device_is_refused_and_left_as_it_is(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], force: list[str]
) -> None:
    """The export is renamed over --out: --out /dev/null --force, as root, replaced the
    system's /dev/null with a regular file holding the export (a pipe stands in for it here).
    Without --force it is refused alike: --force would not help."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert _cli("results", "export", "--store", store_url, "--out", str(pipe), *force) == 2
    assert capsys.readouterr().err == (
        "results export: "
        f"--out {pipe}: not a regular file (a device, a pipe or a socket), which an "
        "export would replace; name a file to write, or - for standard output\n")
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "r.sqlite3"]


def test_export_parquet_keeps_types(store_url: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "r.parquet"
    assert _cli("results", "export", "--store", store_url, "--format", "parquet",
                "--out", str(out)) == 0
    table = pq.read_table(out)
    assert table.num_rows == 12
    assert str(table.schema.field("pore_count").type) == "int64"
    assert str(table.schema.field("kime_score").type) == "double"


def test_query_filters_by_time_and_rejects_bad_times(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("results", "query", "--store", store_url, "--since", "2026-11-01T09:06:00Z") == 0
    out = capsys.readouterr().out
    assert "6 result(s)" in out
    assert _cli("results", "query", "--store", store_url, "--since", "yesterday") == 2
    assert "not an ISO date" in capsys.readouterr().err


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_time_whose_utc_falls_outside_the_calendar_is_refused_naming_it(
    store_url: str, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["results", "query"], ["results", "export", "--out", "-"]):
        assert _cli(*command, "--store", store_url, "--since", since) == 2
        err = capsys.readouterr().err
        assert f"--since {since!r}: in UTC before the year 1 or after 9999" in err


def test_fleet_lists_devices_with_state(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("fleet", "--store", store_url, "--json") == 0
    devices = {d["device_id"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(devices) == {"k0", "k1", "k2"}
    assert devices["k1"]["state"] == "online"
    assert devices["k1"]["outbox_depth"] == 4
    assert devices["k0"]["state"] == "unknown"
    assert _cli("fleet", "--store", store_url) == 0
    assert "3 device(s), 1 online" in capsys.readouterr().out


def test_dead_letters_show_topic_reason_and_payload(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("results", "dead-letters", "--store", store_url) == 0
    out = capsys.readouterr().out
    assert "appliance/lab/k1/result  9 bytes" in out
    assert "reason: not UTF-8 JSON: Expecting value" in out
    assert "payload: garbage" in out
    assert "1 dead letter(s) shown, of 1 kept" in out


def test_every_export_carries_the_features_not_measured(store_url: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for fmt in ("csv", "jsonl", "parquet"):
        assert _cli("results", "export", "--store", store_url, "--format", fmt,
                    "--out", str(tmp_path / f"r.{fmt}")) == 0
    with (tmp_path / "r.csv").open() as stream:
        csv_rows = list(csv.DictReader(stream))
    assert [r["not_validated"] for r in csv_rows if r["not_validated"]] == [",".join(OUTSIDE)]
    assert sum(r["not_validated"] == "" for r in csv_rows) == 11
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["not_validated"] for r in records if r["not_validated"]] == [OUTSIDE]
    assert all(r["not_validated"] in ([], OUTSIDE) for r in records)
    table = pq.read_table(tmp_path / "r.parquet")
    assert str(table.schema.field("not_validated").type) == "list<element: string>"
    flagged = [v for v in table.column("not_validated").to_pylist() if v]
    assert flagged == [OUTSIDE]


def test_query_marks_the_cells_not_measured(store_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("results", "query", "--store", store_url, "--device", "k1") == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    rows = [line.split() for line in lines[1:5]]
    kime, pores = header.index("KIME_SCORE"), header.index("PORE_COUNT")
    assert [row[kime] for row in rows].count("n/m") == 1
    marked = next(row for row in rows if row[kime] == "n/m")
    assert marked[pores] == "n/m"
    assert all(row[pores].isdigit() for row in rows if row is not marked)
    assert "n/m: not measured (outside the validated range, docs/measurement.md)" in lines[-2:]
    assert _cli("results", "query", "--store", store_url, "--device", "k0") == 0
    assert "n/m" not in capsys.readouterr().out  # no flagged result: no marks, no note


def test_query_tells_a_withheld_grade_from_no_model(store_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("results", "query", "--store", store_url, "--device", "k1") == 0
    lines = capsys.readouterr().out.splitlines()
    label_at = lines[0].index("LABEL")
    # newest first: the results made 10th, 7th, 4th and 1st of k1
    labels = [line[label_at:].split("  ")[0] for line in lines[1:5]]
    assert labels[1] == "not given"  # its reasons say the grade was withheld
    assert labels[2] == "-"  # no classification and no reason: no model ran
    assert labels[0] not in ("-", "not given")
    assert labels[3] not in ("-", "not given")
    assert lines[-1].startswith("not given: the kiosk withheld the grade")
    assert _cli("results", "query", "--store", store_url, "--device", "k0") == 0
    assert "not given" not in capsys.readouterr().out


def test_query_says_a_near_tie_between_its_two_grades(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the probabilities stored with the result (edge/grade_margin.py), as the console
    and `appliance analyze` say it."""
    url = f"sqlite:///{tmp_path / 'tie.sqlite3'}"
    store = open_store(url)
    rng = random.Random(4)
    clear, tied = (fleet.sample_result(rng, "lab", "k0", i) for i in range(2))
    assert clear.classification is not None
    assert tied.classification is not None
    tied = tied.model_copy(update={"classification": tied.classification.model_copy(update={
        "label": "normal", "probabilities": {"fine": 0.40, "normal": 0.45, "coarse": 0.15}})})
    store.write_batch(Batch(results=[result_row(r, "2026-11-26T00:00:00.000000Z",
                                                r.to_json().decode()) for r in (clear, tied)]),
                      10)
    store.close()
    assert _cli("results", "query", "--store", url) == 0
    lines = capsys.readouterr().out.splitlines()
    label_at = lines[0].index("LABEL")
    labels = {line[label_at:].split()[0] for line in lines[1:3]}
    assert labels == {clear.classification.label, "fine/normal"}
    assert lines[-1].startswith("A/B: a near-tie, between grades A and B (the model's two most "
                                "probable grades less than 0.15 apart")


def test_dead_letters_show_a_long_topic_and_reason_cut_to_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'long.sqlite3'}"
    store = open_store(url)
    topic = "appliance/lab/" + "k" * 60_000 + "\n/result"
    letter = DeadLetter("2026-11-26T00:00:02.000000Z", topic, "bad: " + "r" * 5_000, 3, b"x",
                        None)
    store.write_batch(Batch(dead_letters=[letter]), 10)
    store.close()
    assert _cli("results", "dead-letters", "--store", url) == 0
    out = capsys.readouterr().out
    assert len(out) < 1_000
    assert f"appliance/lab/{'k' * 186}... ({len(topic) - 200} more characters)  3 bytes" in out
    assert f"reason: bad: {'r' * 195}... (4805 more characters)" in out


def test_dead_letters_name_the_measurement_a_refused_result_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The payload's first 60 characters cut the id ('"measurement_id":"01a24822-16'): two
    refused results could not be told apart, nor the id found for `results release`."""
    url = f"sqlite:///{tmp_path / 'letters.sqlite3'}"
    store = open_store(url)
    result = fleet.sample_result(random.Random(3), "lab", "k1", 0)
    refused = result.to_json().replace(b'"site":"lab"', b'"site":"lab","site":"x"', 1)
    letter = DeadLetter("2026-11-26T00:00:02.000000Z", "appliance/lab/k1/result",
                        "duplicate key(s) 'site'", len(refused), refused, None)
    store.write_batch(Batch(dead_letters=[letter]), 10)
    store.close()
    assert _cli("results", "dead-letters", "--store", url) == 0
    out = capsys.readouterr().out
    assert (f"    reason: duplicate key(s) 'site'\n    measurement: {result.measurement_id}\n"
            "    payload: {") in out


def test_a_dead_letter_that_names_no_measurement_has_no_measurement_line(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("results", "dead-letters", "--store", store_url) == 0
    out = capsys.readouterr().out
    assert "reason: not UTF-8 JSON: Expecting value\n    payload: garbage" in out
    assert "measurement:" not in out


@pytest.mark.parametrize("command", [["fleet"], ["fleet", "--json"], ["results", "query"],
                                     ["results", "dead-letters"]])
def test_a_table_that_cannot_be_written_to_a_full_disk_is_one_line_saying_so(
    store_url: str, command: list[str],
) -> None:
    """`appliance fleet > fleet.txt` on a full disk (/dev/full fails every write so), run as
    a process: only the process's own standard output is watched (appliance/stdout.py)."""
    with Path("/dev/full").open("w", encoding="utf-8") as full:
        done = subprocess.run([sys.executable, "-m", "appliance", *command, "--store",
                               store_url], stdout=full, stderr=subprocess.PIPE, text=True,
                              check=False)
    assert done.returncode == 1
    assert f"{' '.join(command[:2]).removesuffix(' --json')}: cannot write to standard " \
           "output: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_export_to_standard_output_says_so(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results export --out -` said 'exported 12 result(s) as csv to - from ...'."""
    assert _cli("results", "export", "--format", "jsonl", "--out", "-", "--store", store_url) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 12
    assert printed.err.startswith("exported 12 result(s) as jsonl to standard output from the ")


def test_a_query_for_a_device_no_result_comes_from_names_the_devices_there(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results query --device nope` said only 'no results match', as for a --since after
    every result: a mistyped device id looked like a kiosk that sent nothing."""
    assert _cli("results", "query", "--store", store_url, "--device", "nope") == 0
    assert capsys.readouterr().out == (
        "no results match: no stored result comes from device 'nope' (the devices the store "
        "knows: k0, k1, k2; `appliance fleet` lists the devices with their sites and states)\n")
    assert _cli("results", "query", "--store", store_url, "--device", "k1",
                "--since", "2099-01-01T00:00:00Z") == 0
    assert capsys.readouterr().out == "no results match\n"  # k1 has results, none that late


def test_an_export_for_a_device_the_store_does_not_know_is_refused_writing_nothing(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results export --device nope --out x.csv` wrote a CSV of its header alone and said
    'exported 0 result(s)': a mistyped device id looked like a kiosk that sent nothing."""
    out = tmp_path / "x.csv"
    assert _cli("results", "export", "--store", store_url, "--device", "nope",
                "--out", str(out)) == 2  # on main: 0
    assert capsys.readouterr().err == (
        "results export: no stored result comes from device 'nope' (the devices the store "
        "knows: k0, k1, k2; `appliance fleet` lists the devices with their sites and states); "
        "nothing written\n")
    assert not out.exists()
    store = open_store(store_url)  # a kiosk of the fleet without results: an empty export
    store.write_batch(Batch(statuses=[device_row(fleet.online_status("lab", "k7", 1),
                                                 "2026-11-26T00:00:03.000000Z")]), 10)
    store.close()
    assert _cli("results", "export", "--store", store_url, "--device", "k7",
                "--out", str(out)) == 0
    assert out.read_text().splitlines() == [",".join(EXPORT_COLUMNS)]


def test_every_export_says_a_near_tie_in_a_column_after_those_it_had(tmp_path: Path) -> None:
    """The console, its API and `results query` say a near-tie as between its two grades
    (edge/grade_margin.py); the exports carried the raw label alone, so a reader of one took
    a coin flip between fine and normal for a clear "normal". ``grade_between`` comes last,
    after the columns the exports had, and a CSV export is still refused as a training table."""
    url = f"sqlite:///{tmp_path / 'tie.sqlite3'}"
    rng = random.Random(5)
    clear, tied, ungraded = (fleet.sample_result(rng, "lab", "k1", i) for i in range(3))
    assert clear.classification is not None
    tied = tied.model_copy(update={"classification": clear.classification.model_copy(update={
        "label": "normal", "probabilities": {"fine": 0.44, "normal": 0.46, "coarse": 0.10}})})
    ungraded = ungraded.model_copy(update={"classification": None})
    store = open_store(url)
    store.write_batch(Batch(results=[result_row(r, "2026-11-26T00:00:00.000000Z",
                                                r.to_json().decode())
                                     for r in (clear, tied, ungraded)]), 10)
    store.close()
    written = {fmt: tmp_path / f"r.{fmt}" for fmt in ("csv", "jsonl", "parquet")}
    for fmt, out in written.items():
        assert _cli("results", "export", "--store", url, "--format", fmt, "--out", str(out)) == 0
    with written["csv"].open() as stream:
        header, *rows = list(csv.reader(stream))
    assert header[-3:] == ["not_validated", "placed_at", "grade_between"]  # appended last
    expected = {clear.measurement_id: None, tied.measurement_id: ["fine", "normal"],
                ungraded.measurement_id: None}
    assert {row[0]: row[-1] for row in rows} == {
        key: ",".join(between or ()) for key, between in expected.items()}
    records = [json.loads(line) for line in written["jsonl"].read_text().splitlines()]
    assert {r["measurement_id"]: r["grade_between"] for r in records} == expected
    table = pq.read_table(written["parquet"]).to_pydict()
    assert dict(zip(table["measurement_id"], table["grade_between"], strict=True)) == expected
    assert tuple(table) == EXPORT_COLUMNS
    with pytest.raises(TableError, match="a results export"):
        read_table(written["csv"])


def test_a_device_no_result_comes_from_is_said_with_eight_known_devices_then_how_many_more(
    tmp_path: Path,
) -> None:
    """The refusal names QUERY_NAMED_DEVICES (8) known devices; before, a second
    NAMED_DEVICES = 10 further down export.py (the dead-letter table's) replaced its 8."""
    store = open_store(f"sqlite:///{tmp_path / 'ten.db'}")
    try:
        store.write_batch(Batch(statuses=[
            device_row(fleet.online_status("lab", f"k{index:02d}", 1), "2026-11-26T00:00:03Z")
            for index in range(10)]), 10)
        said = export.unknown_selection(store, ResultFilter(device_id="nope"))
    finally:
        store.close()
    assert said is not None
    assert "knows: k00, k01, k02, k03, k04, k05, k06, k07 and 2 more;" in said, said
