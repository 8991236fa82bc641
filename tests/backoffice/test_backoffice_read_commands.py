"""Back-office read commands never create a store, need no config file, show the newest results
with the total, refuse a negative --limit, and keep an existing export file unless --force."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import appliance.backoffice.store as store_module
from appliance.backoffice.schema import device_row, iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.synthetic import fleet as fleetsim


def _store_with_results(folder: Path, count: int) -> str:
    url = f"sqlite:///{folder / 'filled.sqlite3'}"
    store = open_store(url)
    rng = random.Random(3)
    results = [fleetsim.sample_result(rng, "lab", "k1", i) for i in range(count)]
    rows = [result_row(r, "2026-11-26T00:00:00.000000Z", r.to_json().decode()) for r in results]
    store.write_batch(Batch(results=rows), 10)
    store.close()
    return url


def test_a_typo_in_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "stat" / "backofice.sqlite3"
    for command in (["fleet"], ["results", "query"], ["results", "dead-letters"],
                    ["report", "cohort", "--out", str(tmp_path / "r")]):
        assert main([*command, "--store", f"sqlite:///{typo}"]) == 2
        assert f"no store at {typo}" in capsys.readouterr().err
    assert not typo.parent.exists()


def test_a_relative_store_path_is_named_in_full_with_how_an_absolute_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--store sqlite:///tmp/x.sqlite3` names ./tmp/x.sqlite3 (SQLAlchemy's rule): the refusal
    said 'no store at tmp/x.sqlite3', which reads as the /tmp/x.sqlite3 that is there."""
    real = Path(_store_with_results(tmp_path, 1).removeprefix("sqlite:///"))
    typed = str(real).lstrip("/")  # three slashes: the absolute path as a newcomer types it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["fleet", "--store", f"sqlite:///{typed}"]) == 2
    assert (f"no store at {elsewhere / typed} (the path after sqlite:/// is relative to the "
            f"working folder; sqlite:////{typed} names {real}): nothing was ever stored "
            "there") in capsys.readouterr().err
    assert main(["fleet", "--store", f"sqlite:////{typed}"]) == 0
    assert list(elsewhere.iterdir()) == []


def test_a_store_url_naming_a_folder_says_it_is_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["fleet"], ["results", "query"], ["results", "dead-letters"]):
        assert main([*command, "--store", f"sqlite:///{tmp_path}"]) == 2
        assert (f"{tmp_path} is a folder, not a store file: name the SQLite file in it "
                f"(sqlite:///{tmp_path / 'backoffice.sqlite3'}, say)") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_store_alone_works_without_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store_with_results(tmp_path, 3)
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    assert main(["results", "query", "--store", url]) == 0
    assert "3 result(s), newest first" in capsys.readouterr().out


def test_query_shows_the_newest_first_and_how_many_there_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store_with_results(tmp_path, 60)
    assert main(["results", "query", "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    times = [line.split()[0] for line in lines[1:-1]]
    assert len(times) == 50
    assert times == sorted(times, reverse=True)
    assert lines[-1] == "the newest 50 of 60 result(s), newest first"
    newest = max(r[0] for r in open_store(url).select_results(["captured_at"]))
    assert times[0] == newest


@pytest.mark.parametrize("command", [["results", "query"], ["results", "dead-letters"]])
@pytest.mark.parametrize("limit", ["-1", "0", "many", str(2**63)])
def test_limit_must_be_one_or_more_and_a_number_a_database_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str, command: list[str]
) -> None:
    """2**63 and beyond no database column holds: SQLite said 'datatype mismatch', blamed on
    the store, or its driver raised OverflowError, a traceback."""
    url = _store_with_results(tmp_path, 2)
    with pytest.raises(SystemExit) as refused:
        main([*command, "--store", url, "--limit", limit])
    assert refused.value.code == 2
    assert "--limit" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["results", "query"], ["results", "export"]])
@pytest.mark.parametrize("device", ["\udcff", "../k1", "k" * 65])
def test_a_device_that_is_no_device_id_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, command: list[str]
) -> None:
    """'\\udcff' is how Python reads a byte the locale cannot decode (--device $'\\xff'):
    the store's driver cannot encode it, which was a traceback."""
    url = _store_with_results(tmp_path, 2)
    with pytest.raises(SystemExit) as refused:
        main([*command, "--store", url, "--device", device])
    assert refused.value.code == 2
    assert f"--device: {device!r}: not a device id" in capsys.readouterr().err


def test_export_keeps_an_existing_file_unless_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store_with_results(tmp_path, 2)
    out = tmp_path / "results.csv"
    out.write_text("last week's export\n")
    assert main(["results", "export", "--store", url, "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "last week's export\n"
    assert main(["results", "export", "--store", url, "--out", str(out), "--force"]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_fleet_says_an_offline_kiosk_s_camera_is_what_it_last_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    at = datetime.now(UTC) - timedelta(hours=2)
    last = fleetsim.online_status("lab", "k1").model_copy(
        update={"state": "offline", "at": at, "camera": "online"})
    store.write_batch(Batch(statuses=[device_row(last, iso_utc(at))]), 10)
    store.close()
    assert main(["fleet", "--store", url]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "offline" in row
    assert "last said online, 2h ago" in row  # as the console says it, not a plain "online"


def test_fleet_shows_how_long_results_wait_and_how_many_were_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what the console's fleet page and the README promise: the oldest un-sent result's age
    # and the dropped results, in the table and in --json
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    status = fleetsim.online_status("lab", "k1", outbox_depth=12).model_copy(
        update={"dropped": 3, "outbox_oldest_age_s": 7260.0})
    store.write_batch(Batch(statuses=[device_row(status, iso_utc(status.at))]), 10)
    store.close()
    assert main(["fleet", "--store", url]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[-2:] == ["OLDEST_UNSENT", "DROPPED"]
    assert row.split()[-2:] == ["2h", "3"]
    assert main(["fleet", "--store", url, "--json"]) == 0
    device = json.loads(capsys.readouterr().out)[0]
    assert (device["dropped"], device["outbox_oldest_age_s"]) == (3, 7260.0)


def test_a_store_another_program_holds_locked_is_one_line_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _store_with_results(tmp_path, 3)
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = Path(url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None)  # a program that keeps the file to itself
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM results WHERE 0")
        for command in (["fleet"], ["results", "query"], ["results", "dead-letters"],
                        ["report", "cohort", "--out", str(tmp_path / "r")]):
            assert main([*command, "--store", url]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert "Traceback" not in err
            assert f"SQLite store {path}: database is locked" in err  # on main: no more than this
            assert "another program held it locked longer than the busy timeout" in err, err
    finally:
        holder.close()
    assert main(["results", "query", "--store", url]) == 0
    assert not (tmp_path / "r").exists()
