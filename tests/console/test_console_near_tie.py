"""A near-tie (edge/grade_margin.py) is said as between its two grades on the console's results
list and result page and in the API, from the probabilities stored with each result."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from console_helpers import Console, get_with, login_cookie, make_result, running_console

from appliance.backoffice.export import stored_between
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import GRADE_PROBABILITIES, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.console.views import CSV_COLUMNS
from appliance.modelbuild.table import TableError, read_table
from appliance.transport import payloads

TIED = {"fine": 0.44, "normal": 0.46, "coarse": 0.10}  # normal by 0.02: a near-tie
CLEAR = {"fine": 0.20, "normal": 0.70, "coarse": 0.10}


def _store_graded(console: Console) -> dict[str, str]:
    """Two results of kiosk-tie graded normal, one a near-tie; their ids by name."""
    graded = {}
    for index, (name, probabilities) in enumerate((("tied", TIED), ("clear", CLEAR))):
        result = make_result(index, "osaka", "kiosk-tie", "30-39").model_copy(update={
            "measurement_id": payloads.new_measurement_id(),
            "classification": payloads.Classification(
                model="skin-texture-grade", version="1", label="normal",
                probabilities=probabilities)})
        graded[name] = result
    store = open_store(console.store_url)
    try:
        now = iso_utc(datetime.now(UTC))
        store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                         for r in graded.values()]), 100)
    finally:
        store.close()
    return {name: result.measurement_id for name, result in graded.items()}


def _grade_cells(text: str) -> dict[str, str]:
    """The grade cell of each result on a results page, by measurement id."""
    rows = re.findall(r'<a href="/results/([0-9a-f-]+)">.*?<td class="grade">(.*?)</td>', text,
                      re.DOTALL)
    return dict(rows)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, dict[str, str]]]:
    """A console whose store holds a near-tie and a clear grade of kiosk-tie; their ids."""
    with running_console(tmp_path_factory.mktemp("near-tie")) as console:
        yield console, _store_graded(console)


def test_the_results_list_says_a_near_tie_between_its_two_grades(
    graded: tuple[Console, dict[str, str]],
) -> None:
    console, ids = graded
    status, _, body = get_with(console, "/results?device=kiosk-tie", login_cookie(console)[0])
    assert status == 200
    cells = _grade_cells(body.decode())
    assert cells[ids["clear"]] == "normal"
    assert re.fullmatch(r'<abbr class="near-tie" title="a near-tie: [^"]*less than 0.15 '
                        r'apart[^"]*">between fine and normal</abbr>', cells[ids["tied"]])


def test_a_result_s_page_says_its_near_tie(graded: tuple[Console, dict[str, str]]) -> None:
    console, ids = graded
    cookie, _ = login_cookie(console)
    status, _, body = get_with(console, f"/results/{ids['tied']}", cookie)
    assert status == 200
    assert re.search(r'<p id="near-tie">Shown as <abbr[^>]*>between fine and normal</abbr>',
                     body.decode())
    status, _, body = get_with(console, f"/results/{ids['clear']}", cookie)
    assert status == 200
    assert 'id="near-tie"' not in body.decode()


def test_the_api_names_a_near_tie_s_two_grades(graded: tuple[Console, dict[str, str]]) -> None:
    console, ids = graded
    listed = json.loads(console.get("/api/v1/results?device=kiosk-tie", console.token)[2])
    assert {r["measurement_id"]: r["grade_between"] for r in listed["results"]} == {
        ids["tied"]: ["fine", "normal"], ids["clear"]: None}
    for name, between in (("tied", ["fine", "normal"]), ("clear", None)):
        one = json.loads(console.get(f"/api/v1/results/{ids[name]}", console.token)[2])
        assert (one["classification"]["label"], one["grade_between"]) == ("normal", between)


def test_the_csv_download_names_a_near_tie_s_two_grades_in_a_last_column(
    graded: tuple[Console, dict[str, str]], tmp_path: Path,
) -> None:
    """The CSV carried the raw label alone ("normal" for both); its ``grade_between`` column,
    after the columns it had, says "fine,normal" as `results export` does, and the file is
    still refused as a training table (its label is the kiosk model's grade)."""
    console, ids = graded
    status, _, body = get_with(console, "/results.csv?device=kiosk-tie", login_cookie(console)[0])
    assert status == 200
    header, *rows = list(csv.reader(io.StringIO(body.decode())))
    assert header[-2:] == ["placed_at", "grade_between"]
    assert header == list(CSV_COLUMNS)
    assert {row[0]: (row[header.index("label")], row[-1]) for row in rows} == {
        ids["tied"]: ("normal", "fine,normal"), ids["clear"]: ("normal", "")}
    download = tmp_path / "results.csv"
    download.write_bytes(body)
    with pytest.raises(TableError, match="a results export"):
        read_table(download)


def test_the_exports_read_a_result_s_grade_probabilities_on_each_backend(store: Store) -> None:
    """The exports read the probabilities with the result's columns (picked out of its payload
    by the database, as the list's are), in the console's pages and the command line's
    stream alike: the near-tie they tell is the one the API says."""
    results = [make_result(index, "osaka", "kiosk-tie", "30-39").model_copy(update={
        "classification": payloads.Classification(model="skin-texture-grade", version="1",
                                                  label="normal", probabilities=odds)})
        for index, odds in enumerate((TIED, CLEAR))]
    now = iso_utc(datetime.now(UTC))
    store.write_batch(Batch(results=[result_row(r, now, r.to_json().decode())
                                     for r in results]), 100)
    columns = ("measurement_id", GRADE_PROBABILITIES)
    paged = store.page_results(columns, ResultFilter(), None, 10)
    streamed = list(store.select_results(columns))
    expected = {results[0].measurement_id: ["fine", "normal"], results[1].measurement_id: None}
    for rows in (paged, streamed):
        assert {key: stored_between(odds) for key, odds in rows} == expected
