"""`results query|export` select by site as well as by device: `--site S`, `--device
SITE/DEVICE` (or both options), so a device id two sites use selects one kiosk; ids that are
no ids, and two sites named at once, are refused before the store is read. The store's filter
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice import export
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import device_row, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.synthetic import fleet
from tests.store_helpers import BACKENDS, fresh_store

RECEIVED = "2026-11-26T00:00:00.000000Z"
# kiosk k1 at two sites; k2 at one; a kiosk at annex that has sent a status, no result yet
KIOSK_RESULTS = {("lab", "k1"): 3, ("clinic", "k1"): 2, ("clinic", "k2"): 1}
STATUS_ONLY = ("annex", "k9")
CLINIC_K1 = {("clinic", "k1"): 2}
LISTS_THE_FLEET = "`appliance fleet` lists the devices with their sites and states)"


def _fill(store: Store) -> None:
    rng = random.Random(4)
    results = [fleet.sample_result(rng, site, device, index)
               for (site, device), count in KIOSK_RESULTS.items() for index in range(count)]
    store.write_batch(Batch(
        results=[result_row(r, RECEIVED, r.to_json().decode()) for r in results],
        statuses=[device_row(fleet.online_status(*STATUS_ONLY), RECEIVED)]), 10)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store holding KIOSK_RESULTS and the STATUS_ONLY kiosk's status."""
    url = f"sqlite:///{tmp_path / 'sites.sqlite3'}"
    store = open_store(url)
    try:
        _fill(store)
    finally:
        store.close()
    return url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same results in a fresh store of each backend (PostgreSQL: a throw-away schema)."""
    with fresh_store(request.param, tmp_path, "test_results_site", open_store) as opened:
        _fill(opened)
        yield opened


def _queried(capsys: pytest.CaptureFixture[str], url: str,
             *selection: str) -> Counter[tuple[str, str]]:
    """The (site, device) of each row `results query` prints for ``selection``."""
    assert main(["results", "query", "--store", url, *selection]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    at_site, at_device = header.index("SITE"), header.index("DEVICE_ID")
    rows = [line.split() for line in lines[1:] if re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T", line)]
    assert f"{len(rows)} result(s), newest first" in lines
    return Counter((row[at_site], row[at_device]) for row in rows)


def _exported(tmp_path: Path, url: str, *selection: str) -> Counter[tuple[str, str]]:
    """The (site, device) of each row `results export` writes for ``selection``."""
    out = tmp_path / "picked.csv"
    assert main(["results", "export", "--store", url, "--out", str(out), "--force",
                 *selection]) == 0
    with out.open(newline="") as stream:
        return Counter((row["site"], row["device_id"]) for row in csv.DictReader(stream))


@pytest.mark.parametrize(("selection", "expected"), [
    (["--device", "k1"], {("lab", "k1"): 3, ("clinic", "k1"): 2}),
    (["--site", "clinic"], {("clinic", "k1"): 2, ("clinic", "k2"): 1}),
    (["--device", "clinic/k1"], CLINIC_K1),
    (["--site", "clinic", "--device", "k1"], CLINIC_K1),
    (["--site", "clinic", "--device", "clinic/k1"], CLINIC_K1),
], ids=["device of two sites", "site", "site/device", "site and device", "site said twice"])
def test_a_site_selects_its_results_and_a_device_of_a_site_only_that_kiosk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, selection: list[str],
    expected: dict[tuple[str, str], int],
) -> None:
    """`--device k1` selects k1 of every site (the id is the site's own); a site, alone or
    with the device, narrows it to one site's kiosks, as the console's site field does."""
    assert _queried(capsys, url, *selection) == expected
    assert _exported(tmp_path, url, *selection) == expected


@pytest.mark.parametrize("command", [["results", "query"], ["results", "export"]])
@pytest.mark.parametrize("site", ["", "\udcff", "../lab", "l" * 65, "lab/k1", "lab;"])
def test_a_site_that_is_no_site_id_is_refused_naming_it_before_the_store_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], site: str
) -> None:
    missing = tmp_path / "none.sqlite3"  # read, it would be refused as no store
    with pytest.raises(SystemExit) as refused:
        main([*command, "--store", f"sqlite:///{missing}", "--site", site])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"--site: {site!r}: not a site id (letters, digits, '.', '_' and '-'" in err
    assert "no store" not in err
    assert not missing.exists()


@pytest.mark.parametrize(("device", "part"), [
    ("bad site/k1", "'bad site' is no site id"),
    ("/k1", "'' is no site id"),
    ("lab/../k1", "'../k1' is no device id"),
    ("lab/k1/x", "'k1/x' is no device id"),
    ("lab/", "'' is no device id"),
])
@pytest.mark.parametrize("command", [["results", "query"], ["results", "export"]])
def test_a_device_that_is_neither_an_id_nor_site_device_names_the_part_that_is_no_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], device: str,
    part: str,
) -> None:
    """The refusal keeps saying what a device is, and names the half of SITE/DEVICE at fault."""
    missing = tmp_path / "none.sqlite3"
    with pytest.raises(SystemExit) as refused:
        main([*command, "--store", f"sqlite:///{missing}", "--device", device])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert (f"--device: {device!r}: not a device id nor SITE/DEVICE ({part}: letters, digits"
            ) in err
    assert "no store" not in err
    assert not missing.exists()


@pytest.mark.parametrize("command", [["results", "query"], ["results", "export"]])
def test_two_sites_named_at_once_are_refused_before_the_store_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "none.sqlite3"
    assert main([*command, "--store", f"sqlite:///{missing}", "--site", "lab",
                 "--device", "clinic/k1"]) == 2
    err = capsys.readouterr().err
    assert (f"{' '.join(command)}: --site lab and --device clinic/k1 name two sites; give the "
            "site once (--device clinic/k1, or --site lab --device k1)") in err
    assert "no store" not in err
    assert not missing.exists()


def test_a_query_for_a_site_or_a_kiosk_no_result_comes_from_names_what_the_store_knows(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """A mistyped site read as "no results match", as a site whose kiosks sent nothing."""
    for selection, said in (
        (["--site", "nowhere"], "no stored result comes from site 'nowhere' (the sites the "
         f"store knows: annex, clinic, lab; {LISTS_THE_FLEET}"),
        (["--device", "lab/k2"], "no stored result comes from device 'k2' at site 'lab' (the "
         f"fleet has it at clinic; {LISTS_THE_FLEET}"),
        (["--site", "lab", "--device", "k2"], "no stored result comes from device 'k2' at "
         f"site 'lab' (the fleet has it at clinic; {LISTS_THE_FLEET}"),
    ):
        assert main(["results", "query", "--store", url, *selection]) == 0
        assert capsys.readouterr().out == f"no results match: {said}\n", selection
    assert main(["results", "query", "--store", url, "--site", "clinic", "--since",
                 "2100-01-01"]) == 0
    assert capsys.readouterr().out == "no results match\n"


def test_an_export_of_a_site_or_kiosk_the_fleet_does_not_hold_is_refused_writing_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """An empty file would read as a site that sent nothing; a site of the fleet that has
    sent no result yet (a status only) is no typo, and its export holds no rows."""
    out = tmp_path / "picked.csv"
    for selection in (["--site", "nowhere"], ["--device", "lab/k2"], ["--device", "annex/k1"]):
        assert main(["results", "export", "--store", url, "--out", str(out), *selection]) == 2
        err = capsys.readouterr().err
        assert "results export: no stored result comes from " in err, selection
        assert err.rstrip().endswith("; nothing written"), err
        assert not out.exists()
    assert _exported(tmp_path, url, "--site", "annex") == {}
    assert _exported(tmp_path, url, "--device", "annex/k9") == {}


def test_the_store_selects_by_site_by_device_and_by_both(store: Store) -> None:
    def picked(where: ResultFilter) -> Counter[tuple[str, str]]:
        return Counter(store.select_results(("site", "device_id"), where))

    assert picked(ResultFilter(device_id="k1")) == {("lab", "k1"): 3, ("clinic", "k1"): 2}
    assert picked(ResultFilter(site="clinic")) == {("clinic", "k1"): 2, ("clinic", "k2"): 1}
    assert picked(ResultFilter(site="clinic", device_id="k1")) == CLINIC_K1
    assert store.count_matching(ResultFilter(site="clinic", device_id="k1")) == 2
    assert store.count_matching(ResultFilter(site="lab")) == 3
    assert store.has_results(ResultFilter(site="lab", device_id="k1"))
    assert not store.has_results(ResultFilter(site="lab", device_id="k2"))


def test_the_store_names_a_kiosk_of_another_site_and_refuses_its_export(store: Store) -> None:
    lab_k2 = ResultFilter(site="lab", device_id="k2")
    said = export.query_table(store, lab_k2, 50)
    assert said == ("no results match: no stored result comes from device 'k2' at site 'lab' "
                    f"(the fleet has it at clinic; {LISTS_THE_FLEET}")
    assert export.unknown_selection(store, lab_k2) == said.removeprefix("no results match: ")
    assert export.unknown_selection(store, ResultFilter(site="annex")) is None
    assert "2 result(s), newest first" in export.query_table(
        store, ResultFilter(site="clinic", device_id="k1"), 50)
