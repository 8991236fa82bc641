"""`results dead-letters` and `report cohort` select by site and device as `results
query|export` do: `--site S`, `--device DEVICE` (every site's kiosk of that id) or `--device
SITE/DEVICE` (one kiosk). Dead letters are chosen by the topic they came on under the fleet's
prefix, exactly (a device id that is another kiosk's site, another prefix, another case: not
chosen); the cohort report reads only the chosen results and says which. The store's reads on
SQLite and PostgreSQL, the commands on SQLite. Before, neither command took either option."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.queries import LetterFilter, ResultFilter
from appliance.backoffice.schema import dead_letter, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.synthetic import fleet
from tests.store_helpers import BACKENDS, fresh_store

RECEIVED = "2026-11-26T00:00:00.000000Z"
PREFIX = "appliance"
# letters a topic; the last three are no letter of lab, of k1 or of lab/k1 under "appliance"
LETTERS = {
    "appliance/lab/k1/result": 3,
    "appliance/clinic/k1/result": 2,
    "appliance/clinic/k1/model/state": 1,
    "appliance/clinic/k2/status": 1,
    "appliance/k1/lab/result": 1,  # site k1, device lab
    "other/lab/k1/result": 1,  # another prefix
    "appliance/LAB/k1/result": 1,  # another site: ids are case-sensitive
}
# results a kiosk, each subject measured twice at its kiosk (the cohort's repeats)
KIOSK_RESULTS = {("lab", "k1"): 6, ("clinic", "k1"): 4, ("clinic", "k2"): 2}


def _fill(store: Store) -> None:
    letters = [dead_letter(RECEIVED, topic, "refused for the test", f"{topic} {i}".encode())
               for topic, count in LETTERS.items() for i in range(count)]
    rng = random.Random(6)
    results = [fleet.sample_result(rng, site, device, i, subject_id=f"{site}-{device}-{i // 2}")
               for (site, device), count in KIOSK_RESULTS.items() for i in range(count)]
    store.write_batch(Batch(results=[result_row(r, RECEIVED, r.to_json().decode())
                                     for r in results], dead_letters=letters), 1000)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The letters and results in a fresh store of each backend."""
    with fresh_store(request.param, tmp_path, "test_site_letters", open_store) as opened:
        _fill(opened)
        yield opened


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The letters and results in a SQLite store."""
    url = f"sqlite:///{tmp_path / 'letters.sqlite3'}"
    store = open_store(url)
    try:
        _fill(store)
    finally:
        store.close()
    return url


CHOSEN_LETTERS = [
    (LetterFilter(PREFIX, site="lab"), {"appliance/lab/k1/result": 3}),
    (LetterFilter(PREFIX, site="clinic"), {"appliance/clinic/k1/result": 2,
                                           "appliance/clinic/k1/model/state": 1,
                                           "appliance/clinic/k2/status": 1}),
    (LetterFilter(PREFIX, device_id="k1"), {"appliance/lab/k1/result": 3,
                                            "appliance/clinic/k1/result": 2,
                                            "appliance/clinic/k1/model/state": 1,
                                            "appliance/LAB/k1/result": 1}),
    (LetterFilter(PREFIX, site="clinic", device_id="k1"), {
        "appliance/clinic/k1/result": 2, "appliance/clinic/k1/model/state": 1}),
    (LetterFilter("other", site="lab", device_id="k1"), {"other/lab/k1/result": 1}),
    (LetterFilter(PREFIX, site="annex"), {}),
    (LetterFilter(PREFIX, device_id="k9"), {}),
]


@pytest.mark.parametrize(("chosen", "expected"), CHOSEN_LETTERS)
def test_the_store_chooses_dead_letters_by_the_topic_of_a_site_a_device_or_a_kiosk(
    store: Store, chosen: LetterFilter, expected: dict[str, int],
) -> None:
    listed = store.dead_letters(100, chosen)
    assert Counter(letter.topic for letter in listed) == Counter(expected)
    assert store.count_dead_letters(chosen) == sum(expected.values())
    assert store.count_dead_letters() == sum(LETTERS.values())


def test_the_store_reads_a_site_s_results_for_the_cohort_and_its_repeats(store: Store) -> None:
    from appliance.backoffice.cohort import load_cohort, repeats

    clinic = ResultFilter(site="clinic")
    assert load_cohort(store, clinic).count == 6
    assert load_cohort(store, ResultFilter(site="clinic", device_id="k1")).count == 4
    assert load_cohort(store).count == 12
    chosen = repeats(store, where=ResultFilter(device_id="k1"))
    assert sorted(rep.subject_id for rep in chosen) == [
        "clinic-k1-0", "clinic-k1-1", "lab-k1-0", "lab-k1-1", "lab-k1-2"]
    assert store.covered_period(ResultFilter(site="annex")).captured_from is None
    assert store.covered_period(clinic).captured_from is not None


def _letters_listed(capsys: pytest.CaptureFixture[str], url: str, *chosen: str) -> list[str]:
    """The topics `results dead-letters` lists for ``chosen``, and its last line."""
    assert main(["results", "dead-letters", "--store", url, "--limit", "100", *chosen]) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line.split()[1] for line in lines if line.startswith("2026-")] + lines[-1:]


@pytest.mark.parametrize(("chosen", "listed"), [
    (["--site", "lab"], [*["appliance/lab/k1/result"] * 3,
                         "3 dead letter(s) shown, of 3 kept from site 'lab'"]),
    (["--device", "clinic/k1"], ["appliance/clinic/k1/model/state",
                                 *["appliance/clinic/k1/result"] * 2,
                                 "3 dead letter(s) shown, of 3 kept from kiosk 'k1' of site "
                                 "'clinic'"]),
    (["--site", "clinic", "--device", "k2"], [
        "appliance/clinic/k2/status",
        "1 dead letter(s) shown, of 1 kept from kiosk 'k2' of site 'clinic'"]),
    (["--device", "k2"], ["appliance/clinic/k2/status",
                          "1 dead letter(s) shown, of 1 kept from device 'k2' (of any site)"]),
    (["--site", "annex"], ["no dead letters from site 'annex'; 10 kept in all, their topics "
                           "read under the prefix appliance (mqtt.topic_prefix of the config)"]),
    (["--device", "k9"], ["no dead letters from device 'k9' (of any site); 10 kept in all, "
                          "their topics read under the prefix appliance (mqtt.topic_prefix of "
                          "the config)"]),
])
def test_results_dead_letters_lists_a_site_s_or_a_kiosk_s_letters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str,
    chosen: list[str], listed: list[str],
) -> None:
    monkeypatch.chdir(Path(url.removeprefix("sqlite:///")).parent)  # no config.yaml: the
    shown = _letters_listed(capsys, url, *chosen)  # built-in prefix, "appliance"
    assert sorted(shown[:-1]) + shown[-1:] == listed


def test_results_dead_letters_reads_the_topics_under_the_config_s_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str,
) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("mqtt:\n  topic_prefix: other\n", encoding="utf-8")
    assert _letters_listed(capsys, url, "--config", str(config), "--site", "lab") == [
        "other/lab/k1/result", "1 dead letter(s) shown, of 1 kept from site 'lab'"]


@pytest.mark.parametrize("command", [
    ["results", "dead-letters"], ["report", "cohort", "--out", "report"]])
def test_two_sites_named_at_once_are_refused_before_the_store_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "none.sqlite3"
    assert main([*command, "--store", f"sqlite:///{missing}", "--site", "lab", "--device",
                 "clinic/k1"]) == 2
    assert capsys.readouterr().err == (
        f"{' '.join(command[:2])}: --site lab and --device clinic/k1 name two sites; give the "
        "site once (--device clinic/k1, or --site lab --device k1)\n")
    assert not missing.exists()
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(("chosen", "expected"), [
    (["--site", "clinic"], (6, "Only the results from site 'clinic'.")),
    (["--device", "lab/k1"], (6, "Only the results from kiosk 'k1' of site 'lab'.")),
    (["--device", "k1"], (10, "Only the results from device 'k1' (of any site).")),
    ([], (12, None)),
])
def test_report_cohort_reports_on_the_chosen_results_and_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, chosen: list[str],
    expected: tuple[int, str | None],
) -> None:
    results, said = expected
    out = tmp_path / "report"
    assert main(["report", "cohort", "--store", url, "--out", str(out), *chosen]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["results_with_age_band"] == results
    site, _, device = (chosen[-1].rpartition("/") if chosen[:1] == ["--device"]
                       else (chosen[-1] if chosen else None, "", None))
    assert summary["selection"] == {"site": site or None, "device_id": device}
    assert {rep["devices"] for rep in summary["repeated_subjects"]} == {1}
    page = (out / "index.html").read_text(encoding="utf-8")
    assert (said is None and "id='selection'" not in page) or (
        f"<p id='selection'>{said.replace(chr(39), '&#x27;')}</p>" in page)


@pytest.mark.parametrize(("chosen", "why"), [
    (["--site", "lab2"], "no stored result comes from site 'lab2'"),
    (["--device", "lab/k2"], "no stored result comes from device 'k2' at site 'lab'"),
])
def test_report_cohort_refuses_a_site_or_kiosk_the_store_does_not_know_writing_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, chosen: list[str],
    why: str,
) -> None:
    out = tmp_path / "report"
    assert main(["report", "cohort", "--store", url, "--out", str(out), *chosen]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"report cohort: {why}")
    assert err.endswith("; nothing written\n")
    assert not out.exists()
