"""Cohort statistics (Fisher-z intervals, bands, repeats) and the report files."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.backoffice import report
from appliance.backoffice.agebands import Correlation, age_axis, band_midpoint_years
from appliance.backoffice.cohort import correlations, load_cohort, repeats, summary
from appliance.backoffice.report import feature_figure, write_cohort_report
from appliance.backoffice.schema import device_row, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.synthetic import fleet
from appliance.transport import payloads
from appliance.transport.payloads import new_measurement_id
from tests.store_helpers import BACKENDS, fresh_store


def _store(tmp_path: Path, count: int, subjects: int) -> Store:
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    rng = random.Random(5)
    rows = []
    for i in range(count):
        result = fleet.sample_result(rng, "lab", f"k{i % 3}", i, subject_id=f"s{i % subjects}")
        rows.append(result_row(result, "2026-11-26T00:00:00.000000Z", result.to_json().decode()))
    store.write_batch(Batch(results=rows), 10)
    return store


def test_age_bands_sit_at_their_midpoints() -> None:
    assert band_midpoint_years("40-49") == 44.5
    assert band_midpoint_years("80+") == 85.0
    with pytest.raises(ValueError, match="age band 'old'"):
        band_midpoint_years("old")


def test_pearson_interval_is_fisher_z_and_spearman_is_wider() -> None:
    rng = np.random.default_rng(1)
    ages = rng.uniform(20, 70, 103)
    feature = -0.5 * (ages - ages.mean()) / ages.std() + rng.normal(0, 1, 103)
    pearson, spearman = correlations(list(ages), feature)
    half = 1.959963984540054 / math.sqrt(100)
    assert pearson.low == pytest.approx(math.tanh(math.atanh(pearson.r) - half))
    assert pearson.high == pytest.approx(math.tanh(math.atanh(pearson.r) + half))
    assert pearson.low < pearson.r < pearson.high < 0
    assert spearman.high - spearman.low > pearson.high - pearson.low - 0.01
    assert pearson.n == 103


def test_too_few_or_constant_values_give_no_correlation() -> None:
    pearson, _ = correlations([20, 30], [1.0, 2.0])
    assert math.isnan(pearson.r)
    pearson, _ = correlations([20, 30, 40, 50], [1.0, 1.0, 1.0, 1.0])
    assert math.isnan(pearson.r)


def test_repeats_list_only_subjects_measured_more_than_once(tmp_path: Path) -> None:
    repeated = repeats(_store(tmp_path, 30, subjects=20))
    assert {rep.subject_id for rep in repeated} == {f"s{i}" for i in range(10)}
    first = repeated[0]
    assert first.count == 2
    assert first.cv_percent["kime_score"] == pytest.approx(
        100 * first.sd["kime_score"] / first.mean["kime_score"]
    )


@pytest.mark.slow
def test_report_writes_a_figure_per_feature_a_page_and_a_summary(tmp_path: Path) -> None:
    page = write_cohort_report(_store(tmp_path, 200, subjects=150), tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "hill_density_per_mm2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(out.glob("*.png"))) == 10
    text = page.read_text()
    assert "Repeat measurements of the same subject" in text
    assert 'src="furrow_anisotropy.png"' in text
    summary = json.loads((out / "summary.json").read_text())
    hills = summary["correlation_with_age"]["hill_density_per_mm2"]["pearson"]
    assert hills["r"] < -0.5  # the simulated fleet coarsens with age
    assert hills["ci95"][0] < hills["r"] < hills["ci95"][1]


def test_a_report_figure_is_drawn_once_into_its_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """savefig drew every figure of a report twice: tight_layout left a placeholder layout
    engine behind, for which savefig laid the whole figure out again before drawing it into
    its file (a third of a report's CPU; the PNG's bytes are the same either way)."""
    from matplotlib.figure import Figure

    drawn: list[int] = []
    draw = Figure.draw

    def counted(figure: Figure, renderer: Any) -> None:
        drawn.append(id(figure))
        draw(figure, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    cohort = load_cohort(_store(tmp_path, 20, subjects=20))
    report.draw_feature(cohort, "pore_count", summary(cohort)["pore_count"],
                        tmp_path / "pore_count.png")
    assert (tmp_path / "pore_count.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(drawn) == 1


def test_a_band_without_results_keeps_its_place_on_the_report_s_axis(tmp_path: Path) -> None:
    """The box plots left bands without results off the axis and spaced the rest evenly:
    with nobody aged 40-49 stored, 30-39 and 50-59 stood side by side."""
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    rng = random.Random(5)
    rows = []
    for i in range(40):
        result = fleet.sample_result(rng, "lab", "k0", i)
        band = ("30-39", "50-59", "80+")[i % 3]
        subject = payloads.Subject(age_band=band, consent=True)
        result = result.model_copy(update={"subject": subject})
        rows.append(result_row(result, "2026-11-26T00:00:00.000000Z", result.to_json().decode()))
    store.write_batch(Batch(results=rows), 10)
    cohort = load_cohort(store)
    figure = feature_figure(cohort, "pore_count", summary(cohort)["pore_count"])
    try:
        (axes,) = figure.axes
        ticks = [label.get_text() for label in axes.get_xticklabels()]
        assert ticks == ["30-39\n(n=14)", "40-49\n(n=0)", "50-59\n(n=13)", "60-69\n(n=0)",
                         "70-79\n(n=0)", "80+\n(n=13)"]
        assert list(axes.get_xticks()) == [1, 2, 3, 4, 5, 6]
        medians = [line.get_xdata() for line in axes.lines if line.get_color() == "C1"]
        assert [(left + right) / 2 for left, right in medians] == [1, 3, 6]  # boxes at bands
    finally:
        figure.clf()
    write_cohort_report(store, tmp_path / "out")  # the figures are written as before
    assert (tmp_path / "out" / "pore_count.png").read_bytes()[:4] == b"\x89PNG"


def test_a_first_report_on_a_machine_says_only_what_it_wrote(tmp_path: Path) -> None:
    """With no font cache yet (a fresh machine, a new user) the command printed matplotlib's
    "INFO matplotlib.font_manager: generated new fontManager" on stderr before its own line."""
    _store(tmp_path, 20, subjects=20).close()
    fresh_cache = tmp_path / "matplotlib"
    fresh_cache.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "report", "cohort", "--store",
         f"sqlite:///{tmp_path / 'r.sqlite3'}", "--out", str(tmp_path / "out")],
        env={**os.environ, "MPLCONFIGDIR": str(fresh_cache)}, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert any(fresh_cache.iterdir())  # matplotlib did build its cache in this run
    assert done.stderr == ""
    assert done.stdout.startswith(f"wrote {tmp_path / 'out' / 'index.html'} (figures and ")


def test_report_without_age_bands_says_so(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(ValueError, match="no stored result has an age band"):
        write_cohort_report(store, tmp_path / "out")


def test_report_out_that_is_a_file_is_refused_naming_it_before_the_store_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was refused (exit 1) only once the whole cohort had been read, minutes on a large
    store; a usage error, as `results export --out FOLDER` is, exit 2, before anything."""
    _store(tmp_path, 20, subjects=20).close()
    taken = tmp_path / "report"
    taken.write_text("a file, not a folder")
    for store in (f"sqlite:///{tmp_path / 'r.sqlite3'}", f"sqlite:///{tmp_path / 'none'}"):
        assert main(["report", "cohort", "--store", store, "--out", str(taken)]) == 2
        assert capsys.readouterr().err == (f"report cohort: --out {taken}: not a folder; name "
                                           "the folder to write (e.g. report)\n")
    assert taken.read_text() == "a file, not a folder"


def test_report_names_an_out_folder_with_control_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The success line echoed --out raw: a newline forged a second line, an ANSI escape
    drove the terminal."""
    _store(tmp_path, 40, subjects=40).close()
    out = tmp_path / "rep\x1b[31m\nort"
    assert main(["report", "cohort", "--store", f"sqlite:///{tmp_path / 'r.sqlite3'}",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {tmp_path}/rep\\x1b[31m\\nort/index.html (figures and ")
    assert said.count("\n") == 1
    assert "\x1b" not in said
    assert (out / "index.html").is_file()


def test_report_out_that_is_empty_is_refused_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script's `--out "$DIR"` with DIR unset: not the working folder, whose index.html and
    summary.json it would replace."""
    _store(tmp_path, 20, subjects=20).close()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    assert main(["report", "cohort", "--store", store, "--out", ""]) == 2
    assert capsys.readouterr().err == ("report cohort: --out: empty folder name; name the folder "
                                       "to write (e.g. report)\n")
    assert list(work.iterdir()) == []


def test_report_leaves_out_values_not_measured_and_says_how_many(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    rng = random.Random(5)
    rows = []
    for i in range(40):
        result = fleet.sample_result(rng, "lab", f"k{i % 3}", i, subject_id=f"s{i % 20}")
        if i % 4 == 0:  # hills too large: kime not measured, and a number far off the trend
            features = result.features.model_copy(update={"kime_score": 1000.0})
            result = result.model_copy(update={"features": features,
                                               "not_validated": ["kime_score"]})
        # furrow anisotropy outside the range everywhere: a feature with no measured value
        result = result.model_copy(update={"not_validated": [*result.not_validated,
                                                             "furrow_anisotropy"]})
        rows.append(result_row(result, "2026-11-26T00:00:00.000000Z", result.to_json().decode()))
    store.write_batch(Batch(results=rows), 10)
    cohort = load_cohort(store)
    assert cohort.not_measured("kime_score") == 10
    means = [rep.mean["kime_score"] for rep in repeats(store)]
    assert sum(math.isnan(m) for m in means) == 5  # subjects measured only outside the range
    assert all(m < 100 for m in means if not math.isnan(m))  # 1000 left out
    page = write_cohort_report(store, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["not_measured_left_out"]["kime_score"] == 10
    assert summary["not_measured_left_out"]["furrow_anisotropy"] == 40
    assert summary["not_measured_left_out"]["pore_count"] == 0
    assert summary["correlation_with_age"]["kime_score"]["pearson"]["n"] == 30
    assert summary["correlation_with_age"]["furrow_anisotropy"]["pearson"]["r"] is None
    text = page.read_text()
    assert "<p id='left-out'>50 values left out of every figure: not measured" in text
    assert "<tr><td>kime_score</td>" in text
    assert (tmp_path / "out" / "furrow_anisotropy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("band", ["\u0664\u0660-\u0664\u0669", "49-40"])
def test_a_stored_band_of_other_digits_or_out_of_order_is_left_out_of_the_report(
    tmp_path: Path, band: str,
) -> None:
    """A store may hold '٤٠-٤٩' (Arabic-Indic digits) from before the payload took ASCII
    digits only, or '49-40' from before it took bands in order only (shown as a band of its
    own beside 40-49): the report is made without it, as the console's cohort page is."""
    store = _store(tmp_path, 20, subjects=20)
    banded = load_cohort(store).count
    with sqlite3.connect(tmp_path / "r.sqlite3") as db:
        db.execute("UPDATE results SET age_band = ? WHERE rowid = "
                   "(SELECT MIN(rowid) FROM results WHERE age_band IS NOT NULL)", (band,))
    write_cohort_report(store, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["results_with_age_band"] == banded - 1


def _many_results(store: Store, count: int, subjects: int) -> None:
    """``count`` stored results (100 drawn ones again under new ids), subjects s0..s{n-1}."""
    rng = random.Random(8)
    drawn = [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode())
             for r in (fleet.sample_result(rng, "lab", f"k{i % 3}", i) for i in range(100))]
    rows = [(new_measurement_id(1_780_000_000_000 + i), *drawn[i % 100][1:10],
             f"s{i % subjects}", *drawn[i % 100][11:]) for i in range(count)]
    store.write_batch(Batch(results=rows), 10)


def test_reading_the_cohort_holds_a_few_numbers_a_result_not_the_stored_rows(
        tmp_path: Path) -> None:
    """The report kept every stored row as Python objects until the figures were drawn: some
    700 bytes a result in Python objects alone (200,000 results: 345 MB resident). Now a band
    index and one number a feature, and one chunk of rows at a time while they are read."""
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    _many_results(store, 20_000, subjects=18_000)
    tracemalloc.start()
    try:
        cohort = load_cohort(store)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cohort.count == sum(1 for row in store.select_results(("age_band",)) if row[0])
    assert peak_bytes < 300 * 20_000
    store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_stored_while_the_cohort_is_read_are_in_it(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The columns are made as long as the store is when the reading starts; results stored
    meanwhile make them longer, and none is left out."""
    with fresh_store(backend, tmp_path, "report_cohort", open_store) as store:
        _many_results(store, 3000, subjects=2500)
        whole = load_cohort(store)
        monkeypatch.setattr(store, "count_results", lambda: 10)  # as if 2,990 came since
        grown = load_cohort(store)
        assert grown.count == whole.count > 2000
        assert grown.bands == whole.bands
        assert np.array_equal(grown.band_index, whole.band_index)
        for key, values in whole.values.items():
            assert np.array_equal(grown.values[key], values, equal_nan=True), key
        banded = Counter(row[0] for row in store.select_results(("subject_id", "age_band"))
                         if row[1])
        repeated = repeats(store)
        assert {rep.subject_id: rep.count for rep in repeated} == {
            subject: n for subject, n in banded.items() if n > 1}
        assert len(repeated) > 300


def test_an_earlier_report_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report cohort --out DIR` wrote over the report in DIR without a word (`results export`
    refuses and names --force): last month's figures were lost to this month's run. An earlier
    report's file is refused before the store is read (one that is not there is not named),
    other files in DIR are no report's and do not count, and --force replaces the report."""
    _store(tmp_path, 40, subjects=40).close()
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["report", "cohort", "--store", store, "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    (out / "kime_score.png").write_bytes(b"last month's figure")
    capsys.readouterr()
    for given in (store, f"sqlite:///{tmp_path / 'none.sqlite3'}"):
        assert main(["report", "cohort", "--store", given, "--out", str(out)]) == 2
        assert capsys.readouterr() == ("", (
            f"report cohort: --out {out} holds an earlier report: {out / 'index.html'} and 11 "
            "more of the files it would write exist; pass --force to replace them\n"))
    assert (out / "kime_score.png").read_bytes() == b"last month's figure"
    (out / "index.html").unlink()
    (out / "summary.json").unlink()
    for figure in out.glob("*.png"):
        if figure.name != "kime_score.png":
            figure.unlink()
    assert main(["report", "cohort", "--store", store, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"report cohort: --out {out} holds an earlier report: {out / 'kime_score.png'} exists; "
        "pass --force to replace it\n")
    assert main(["report", "cohort", "--store", store, "--out", str(out), "--force"]) == 0
    assert (out / "index.html").read_text() == page
    assert (out / "kime_score.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "notes.txt").read_text() == "mine"


def test_a_store_failing_on_the_way_leaves_the_last_report_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repeat measurements are read after the cohort: they must be read before the first
    figure is replaced, or a store failing there leaves new figures beside the old page. Here
    one repeated subject's device id is no UTF-8 text (a damaged file)."""
    _store(tmp_path, 30, subjects=20).close()
    with sqlite3.connect(tmp_path / "r.sqlite3") as db:
        db.execute("UPDATE results SET device_id = CAST(x'6bff31' AS TEXT) WHERE subject_id = "
                   "'s1' AND rowid = (SELECT MIN(rowid) FROM results WHERE subject_id = 's1')")
    out = tmp_path / "report"
    out.mkdir()
    (out / "kime_score.png").write_bytes(b"last week's figure")
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    assert main(["report", "cohort", "--store", store, "--out", str(out), "--force"]) == 1
    assert capsys.readouterr().err.startswith(
        f"report cohort: the SQLite store {tmp_path / 'r.sqlite3'} failed: Could not decode")
    assert [p.name for p in out.iterdir()] == ["kime_score.png"]
    assert (out / "kime_score.png").read_bytes() == b"last week's figure"


def _disk_full_at_file(monkeypatch: pytest.MonkeyPatch, third: int) -> None:
    """The report's ``third``-th file write fails as a full disk fails it, once it has
    written its bytes (the write's own error handling runs as on a real full disk)."""
    real = report.replaced_when_complete
    written: list[Path] = []

    @contextmanager
    def filling(path: Path) -> Iterator[Path]:
        with real(path) as temp:
            yield temp
            written.append(path)
            if len(written) == third:
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "replaced_when_complete", filling)


def test_a_disk_filling_midway_leaves_the_report_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Figures were written in place one by one: a disk full at the third left two, which the
    next run refused as "an earlier report" (--force needed to write a first one), and with
    --force it left new figures beside the earlier report's page."""
    _store(tmp_path, 40, subjects=40).close()
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    out = tmp_path / "report"
    _disk_full_at_file(monkeypatch, 3)
    assert main(["report", "cohort", "--store", store, "--out", str(out)]) == 1
    third = out / f"{report.REPORT_FEATURES[2]}.png"
    assert capsys.readouterr().err == (
        f"report cohort: {third}: could not write it (No space left on device); no file of "
        f"this report was put in {out}, what was there is as it was\n")
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    assert main(["report", "cohort", "--store", store, "--out", str(out)]) == 0
    earlier = {path.name: f"last month's {path.name}".encode() for path in out.iterdir()}
    assert len(earlier) == 12
    for name, text in earlier.items():
        (out / name).write_bytes(text)
    _disk_full_at_file(monkeypatch, 12)  # the page, the last file written
    assert main(["report", "cohort", "--store", store, "--out", str(out), "--force"]) == 1
    assert {path.name: path.read_bytes() for path in out.iterdir()} == earlier


def test_a_subject_id_with_control_characters_is_shown_escaped_in_the_report(
        tmp_path: Path) -> None:
    """A kiosk's free-text subject id, stored before the payload refused what draws nothing,
    may hold bidirectional-text controls (shown in another order than it has) or terminal
    escapes: the page shows them as escapes, as the console's cohort page does."""
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    rng = random.Random(5)
    hostile = "s\u202e1-tcejbus\x1b[2J"
    rows = []
    for i in range(60):
        result = fleet.sample_result(rng, "lab", f"k{i % 3}", i, subject_id=f"s{i}")
        if i < 3:
            assert result.subject is not None
            result = result.model_copy(update={"subject": payloads.Subject.model_construct(
                subject_id=hostile, age_band=result.subject.age_band, consent=None)})
        rows.append(result_row(result, "2026-11-26T00:00:00.000000Z", result.to_json().decode()))
    store.write_batch(Batch(results=rows), 10)
    text = write_cohort_report(store, tmp_path / "out").read_text()
    assert "\u202e" not in text  # on main: the control itself, reversing what follows
    assert "\x1b" not in text
    assert "<td>s\\u202e1-tcejbus\\x1b[2J</td><td>3</td>" in text


def test_the_age_axis_fills_the_years_between_bands_with_decades() -> None:
    assert age_axis(["50-59", "20-29", "50-59"]) == ["20-29", "30-39", "40-49", "50-59"]
    assert age_axis(["40-44", "60-69", "80+"]) == ["40-44", "45-49", "50-59", "60-69", "70-79",
                                                   "80+"]
    assert age_axis(["30-39", "40-49"]) == ["30-39", "40-49"]
    assert age_axis([]) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_subject_s_repeat_measurements_come_in_the_order_the_back_office_places_them(
    tmp_path: Path, backend: str,
) -> None:
    """The store gave a subject's results by their kiosk's clock (captured_at), where every
    list, filter, export and the report's period go by the capture as the back office places
    it (placed_at): a measurement on a kiosk whose clock a dead CMOS battery put at 2000
    came before the subject's measurement an hour earlier on a kiosk whose clock was right."""
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(8)
    right, reset = (fleet.sample_result(rng, "lab", device, i, subject_id="s-repeat")
                    for i, device in enumerate(("k-right", "k-2000")))
    right = right.model_copy(update={"captured_at": now - timedelta(hours=1)})
    reset = reset.model_copy(update={"captured_at": datetime(2000, 1, 1, tzinfo=UTC)})
    ahead_s = (reset.captured_at - now).total_seconds()  # as its live status read it just now
    read = fleet.online_status("lab", "k-2000").model_copy(update={"at": reset.captured_at})
    with fresh_store(backend, tmp_path, "report_repeat_order", open_store) as store:
        store.write_batch(Batch(results=[result_row(right, iso_utc(right.captured_at),
                                                    right.to_json().decode())]), 10)
        store.write_batch(Batch(
            results=[result_row(reset, iso_utc(now), reset.to_json().decode())],
            statuses=[device_row(read, iso_utc(now), iso_utc(now))],
            clock_readings=[("lab", "k-2000", ahead_s, iso_utc(now), None, None)]), 10)
        placed = dict(store.query("SELECT device_id, placed_at FROM results"))
        listed = [row[0] for row in store.select_repeated_subjects(("device_id",))]
        (repeat,) = repeats(store)
    assert placed["k-right"] < placed["k-2000"]  # placed as measured: an hour apart
    assert listed == ["k-right", "k-2000"]  # on main: k-2000 first, by its clock's 2000
    assert (repeat.subject_id, repeat.count, repeat.devices) == ("s-repeat", 2, 2)


def test_a_demo_s_three_results_give_r_without_an_interval_not_nan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default demo stores 3 results with an age band: too few for a Fisher-z interval,
    and the report's table and figure titles showed each r as ``-0.99 [+nan, +nan]``."""
    import matplotlib.pyplot as plt

    store = _store(tmp_path, 3, subjects=3)
    monkeypatch.setattr(report, "draw_feature",  # one figure below, not ten
                        lambda cohort, key, corr, out: out.write_bytes(b""))
    text = write_cohort_report(store, tmp_path / "out").read_text()
    assert "nan" not in text.lower()
    cells = re.findall(r"<td>([+-]\d\.\d\d[^<]*)</td>", text)
    assert len(cells) == 20  # Pearson and Spearman of each of the 10 features
    assert all(cell.endswith(" (n=3, too few for a 95% CI)") for cell in cells)
    cohort = load_cohort(store)
    pearson, spearman = correlations(cohort.ages(), cohort.values["kime_score"])
    fig = feature_figure(cohort, "kime_score", {"pearson": pearson, "spearman": spearman})
    try:
        title = fig.axes[0].get_title()
    finally:
        plt.close(fig)
    assert "nan" not in title.lower()
    assert f"Pearson {pearson.r:+.2f} (n=3, too few for a 95% CI)" in title
    assert Correlation(math.nan, math.nan, math.nan, math.nan, 2).text() == "n/a"
