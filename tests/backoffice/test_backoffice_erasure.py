"""Erasure on request: a subject's results, or one result, go with every copy in the store, an
audit record stays, and a re-sent result is not stored again; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import pwd
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.erasure import Selector, os_user
from appliance.backoffice.schema import dead_letter, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.console.views import CohortCache
from appliance.edge.testing import wait_until
from appliance.logsafe import escape_controls
from appliance.synthetic import fleet
from appliance.transport.payloads import Result, Subject
from tests.store_helpers import BACKENDS, PG_URL, fresh_store

RECEIVED = "2026-11-26T00:00:00.000000Z"
KEEP = (1000, 2**40)  # dead-letter bounds no test reaches


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_erasure", open_store) as opened:
        yield opened


def _results(subject: str | None, count: int, seed: int, device: str = "kiosk-1"
             ) -> list[Result]:
    rng = random.Random(seed)
    return [fleet.sample_result(rng, "lab", device, seed * 100 + i, subject)
            for i in range(count)]


def _row(result: Result) -> tuple[Any, ...]:
    return result_row(result, RECEIVED, result.to_json().decode())


def _store(store: Store, results: list[Result]) -> list[str]:
    return store.write_batch(Batch(results=[_row(r) for r in results]), *KEEP)


def _stored_ids(store: Store) -> set[str]:
    return {str(row[0]) for row in store.select_results(["measurement_id"])}


def _refused(result: Result, reason: str = "refused") -> Any:
    """``result`` as a dead letter kept whole on its result topic."""
    return dead_letter(RECEIVED, f"appliance/lab/{result.device_id}/result", reason,
                       result.to_json())


def test_erasing_a_subject_removes_its_results_and_letters_and_records_counts_only(
    store: Store,
) -> None:
    gone, other = _results("subj-7", 3, 1), _results("subj-8", 2, 2)
    _store(store, gone + other)
    # a copy of a stored result with other content, a refused one of the subject, and
    # another subject's refused result: only the first two hold the subject's data
    changed = json.loads(gone[0].to_json())
    changed["features"]["kime_score"] = 1.0
    conflict = Result.model_validate(changed)
    extra = _results("subj-7", 1, 3)[0]
    store.write_batch(Batch(results=[_row(conflict)], dead_letters=[
        _refused(extra), _refused(other[0])]), *KEEP)
    assert len(store.dead_letters()) == 3
    assert store.erasure_preview(Selector("subject", "subj-7")) == (3, 2)

    done = store.erase(Selector("subject", "subj-7"), "alice")

    assert (done.results, done.dead_letters, done.os_user) == (3, 2, "alice")
    assert _stored_ids(store) == {r.measurement_id for r in other}
    letters = store.dead_letters()
    assert [json.loads(d.payload)["measurement_id"] for d in letters] == [
        other[0].measurement_id]
    before, counted = store.recount_letter_totals()  # the running totals were kept right
    assert before == counted
    assert counted[0] == 1
    audit = store.query("SELECT os_user, kind, selector, results, dead_letters, erased_at "
                        "FROM erasures")
    assert [row[:5] for row in audit] == [("alice", "subject", "subj-7", 3, 2)]
    # the audit holds no measurement: nothing of the erased payloads is left anywhere
    assert all(gone[0].measurement_id not in str(row) for row in audit)
    assert store.erasure_mark() == done.erasure_id


def test_a_letter_nested_too_deep_to_decode_stops_no_erasure(store: Store) -> None:
    """A result topic's message of 5,000 nested arrays, kept as a dead letter ("JSON nested
    too deeply"), ended every erasure in a RecursionError: no one's results could be erased
    until someone removed that letter by hand."""
    held = _results("subj-4", 1, 16)[0]
    _store(store, [held])
    store.write_batch(Batch(dead_letters=[dead_letter(
        RECEIVED, "appliance/lab/kiosk-1/result", "JSON nested too deeply",
        b"[" * 5000 + b"]" * 5000), _refused(_results("subj-4", 1, 17)[0])]), *KEEP)
    selector = Selector("subject", "subj-4")
    assert store.erasure_preview(selector) == (1, 1)

    done = store.erase(selector, "alice")

    assert (done.results, done.dead_letters) == (1, 1)
    assert [letter.reason for letter in store.dead_letters()] == ["JSON nested too deeply"]


@pytest.mark.parametrize("kind", ["subject", "result"])
def test_a_letter_with_a_byte_that_is_not_utf8_goes_with_the_result_it_holds(
    store: Store, kind: str
) -> None:
    """A kiosk's result refused for a stray byte (here in its software version) is kept
    whole as a dead letter: it still holds the person's measurement and must be erased."""
    held = _results("subj-9", 1, 15)[0]
    raw = held.to_json().replace(held.software_version.encode(), b"1.0\xff", 1)
    store.write_batch(Batch(results=[], dead_letters=[
        dead_letter(RECEIVED, f"appliance/lab/{held.device_id}/result", "not UTF-8", raw)]),
        *KEEP)
    selector = Selector(kind, "subj-9" if kind == "subject" else held.measurement_id)
    assert store.erasure_preview(selector) == (0, 1)

    done = store.erase(selector, "alice")

    assert (done.results, done.dead_letters) == (0, 1)
    assert store.dead_letters() == []
    assert store.query("SELECT measurement_id FROM erased_results") == [(held.measurement_id,)]


def test_an_erased_result_sent_again_is_confirmed_but_not_stored(store: Store) -> None:
    one, kept = _results(None, 2, 4)
    _store(store, [one, kept])
    store.erase(Selector("result", one.measurement_id), "bob")
    assert _stored_ids(store) == {kept.measurement_id}

    fresh = _store(store, [one, kept])  # a kiosk re-sends what it had not had confirmed

    assert fresh == []
    assert _stored_ids(store) == {kept.measurement_id}


def test_a_retry_of_the_dead_letters_does_not_bring_an_erased_result_back(
    store: Store,
) -> None:
    result = _results("subj-3", 1, 7)[0]
    store.write_batch(Batch(dead_letters=[_refused(result)]), *KEEP)
    store.erase(Selector("result", result.measurement_id), "dave")
    assert store.dead_letters() == []
    # as if a letter of it were kept again after the erasure (a re-send refused again)
    store.write_batch(Batch(dead_letters=[_refused(result, "again")]), *KEEP)

    taken = store.retry_dead_letters(lambda topic, payload: [_row(result)])

    assert taken == (0, 0)
    assert _stored_ids(store) == set()
    assert store.dead_letters() == []


def test_the_console_cohort_figures_are_computed_again_after_an_erasure(store: Store) -> None:
    _store(store, _results("subj-4", 3, 8) + _results("subj-5", 2, 9))
    cache = CohortCache(max_age_s=3600)
    assert {row["subject_id"] for row in cache.get(store).repeats} == {"subj-4", "subj-5"}

    store.erase(Selector("subject", "subj-4"), "erin")

    assert {row["subject_id"] for row in cache.get(store).repeats} == {"subj-5"}


def _cli_store(tmp_path: Path) -> tuple[str, list[Result]]:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    results = _results("subj-1", 2, 10) + _results("subj-2", 1, 11)
    _store(store, results)
    store.close()
    return url, results


def test_the_erase_command_prints_counts_and_records_the_os_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, results = _cli_store(tmp_path)
    monkeypatch.setenv("LOGNAME", "frank")  # anyone sets these: not who ran it
    monkeypatch.setenv("USER", "frank")
    monkeypatch.delenv("SUDO_USER", raising=False)
    who = pwd.getpwuid(os.getuid()).pw_name

    assert main(["results", "erase", "--store", url, "--subject", "subj-1", "--yes"]) == 0

    out = capsys.readouterr().out
    assert "erased 2 result(s) and 0 dead letter(s) of subject subj-1" in out
    assert f"by {who})" in out
    assert "frank" not in out
    assert "outside the store" in out
    assert results[0].to_json().decode() not in out
    store = open_store(url)
    assert _stored_ids(store) == {results[2].measurement_id}
    assert store.query("SELECT os_user, selector FROM erasures") == [(who, "subj-1")]
    store.close()


def test_an_os_user_name_that_is_not_utf8_is_recorded_escaped(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(store, _results("subj-1", 1, 10))
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", os.fsdecode(b"fr\xffnk"))  # set so by a non-UTF-8 shell

    done = store.erase(Selector("subject", "subj-1"), os_user())

    root = pwd.getpwuid(0).pw_name
    assert (done.results, done.os_user) == (1, f"{root} (sudo by fr\\xffnk)")
    assert store.query("SELECT os_user FROM erasures") == [(f"{root} (sudo by fr\\xffnk)",)]
    assert _stored_ids(store) == set()


def test_the_erase_command_asks_on_a_terminal_and_refuses_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, results = _cli_store(tmp_path)
    argv = ["results", "erase", "--store", url, "--result", results[0].measurement_id]

    assert main(argv) == 2  # pytest's standard input is no terminal
    assert "add --yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda question: next(answers))
    assert main(argv) == 1  # answered no
    store = open_store(url)
    assert len(_stored_ids(store)) == 3
    store.close()
    assert main(argv) == 0
    store = open_store(url)
    assert results[0].measurement_id not in _stored_ids(store)
    store.close()


@pytest.mark.parametrize("selector", [["--subject", ""], ["--subject", "x" * 65],
                                      ["--subject", os.fsdecode(b"a\xffb")],
                                      ["--result", "../etc"]])
def test_a_bad_id_exits_2_and_erases_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], selector: list[str]
) -> None:
    url, _ = _cli_store(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["results", "erase", "--store", url, *selector, "--yes"])
    assert exited.value.code == 2
    assert "subject id" in capsys.readouterr().err or selector[0] == "--result"
    store = open_store(url)
    assert len(_stored_ids(store)) == 3
    assert store.query("SELECT COUNT(*) FROM erasures") == [(0,)]
    store.close()


def test_a_result_id_no_result_can_have_and_no_letter_names_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upper-cased measurement id names no stored result (their ids are lower-case
    UUIDv7s): erasing it would record an erasure of nothing and a tombstone matching nothing."""
    url, results = _cli_store(tmp_path)

    code = main(["results", "erase", "--store", url, "--result",
                 results[0].measurement_id.upper(), "--yes"])

    assert code == 2
    assert "a measurement id is a UUIDv7 in lower case" in capsys.readouterr().err
    store = open_store(url)
    assert len(_stored_ids(store)) == 3
    assert store.query("SELECT COUNT(*) FROM erasures") == [(0,)]
    assert store.query("SELECT COUNT(*) FROM erased_results") == [(0,)]
    store.close()


def test_a_letter_naming_an_id_no_result_can_have_is_erased_without_a_tombstone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kiosk's result refused for its upper-cased id is kept whole as a dead letter: that
    id is taken so the letter can be erased, and no tombstone is kept, as no stored result
    can have it."""
    url, _ = _cli_store(tmp_path)
    held = _results(None, 1, 17)[0]
    named = held.measurement_id.upper()
    raw = held.to_json().replace(held.measurement_id.encode(), named.encode(), 1)
    store = open_store(url)
    store.write_batch(Batch(dead_letters=[dead_letter(
        RECEIVED, f"appliance/lab/{held.device_id}/result", "refused", raw)]), *KEEP)
    store.close()

    assert main(["results", "erase", "--store", url, "--result", named, "--yes"]) == 0

    assert "erased 0 result(s) and 1 dead letter(s)" in capsys.readouterr().out
    store = open_store(url)
    assert store.dead_letters() == []
    assert store.query("SELECT COUNT(*) FROM erased_results") == [(0,)]
    assert len(_stored_ids(store)) == 3
    store.close()


def test_erasing_a_subject_nothing_carries_says_so_and_still_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--subject subj-44` (a typo of subj-4), or an id copied as the console shows it
    ("ab\\u202ecd"), said "erased 0 result(s) ..." like any other erasure, and nothing else."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    _store(store, _results("subj-4", 2, 15))
    store.close()

    assert main(["results", "erase", "--store", url, "--subject", "subj-44", "--yes"]) == 0
    captured = capsys.readouterr()
    assert "erased 0 result(s) and 0 dead letter(s) of subject subj-44" in captured.out
    assert ("results erase: note: no stored result or dead letter carries subject subj-44; "
            "the erasure is recorded") in captured.err
    assert main(["results", "erase", "--store", url, "--subject", "subj-4", "--yes"]) == 0
    captured = capsys.readouterr()
    assert "erased 2 result(s)" in captured.out
    assert "note" not in captured.err
    store = open_store(url)
    assert store.query("SELECT selector FROM erasures ORDER BY id") == [("subj-44",), ("subj-4",)]
    store.close()


@pytest.mark.parametrize("subject", ["a\tb", "anna\u00a0b", "x\u200dy", "\x1b[2Jz"])
def test_a_subject_id_with_controls_or_unprintables_can_be_erased_and_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subject: str
) -> None:
    """Results carried a kiosk's free text as the subject id (the contract now refuses one
    holding what draws nothing): each stored one must be erasable, and the terminal sees its
    controls escaped."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    stored_before = [result.model_copy(update={"subject": Subject.model_construct(
        subject_id=subject, age_band=None, consent=None)}) for result in _results("s", 2, 13)]
    _store(store, stored_before + _results("other", 1, 14))
    store.close()

    assert main(["results", "erase", "--store", url, "--subject", subject, "--yes"]) == 0

    out = capsys.readouterr().out
    assert "erased 2 result(s)" in out
    assert "\x1b" not in out
    assert "\t" not in out
    assert f"of subject {escape_controls(subject)} (erasure 1" in out
    store = open_store(url)
    assert store.query("SELECT COUNT(*), MIN(subject_id) FROM results") == [(1, "other")]
    assert store.query("SELECT selector FROM erasures") == [(subject,)]
    store.close()


@pytest.mark.postgres
def test_an_erasure_during_an_ingest_commit_on_postgresql_waits_and_erases_what_it_stored(
) -> None:
    """The ingest transaction has stored the result, not yet committed; the erasure waits for
    it (its table lock) instead of missing the uncommitted row and leaving it stored."""
    result = _results(None, 1, 12)[0]
    with fresh_store("postgres", Path("."), "test_erasure_race", open_store) as ingest:
        schema = ingest.query("SELECT current_schema()")[0][0]
        eraser, watcher = open_store(PG_URL, pg_schema=schema), open_store(PG_URL, schema)
        pid = eraser.query("SELECT pg_backend_pid()")[0][0]
        done: list[Any] = []
        try:
            with ingest._transaction() as cur:  # noqa: SLF001  (held open between two steps)
                assert ingest._insert_fresh(cur, [_row(result)])[0]  # noqa: SLF001
                thread = threading.Thread(target=lambda: done.append(
                    eraser.erase(Selector("result", result.measurement_id), "gina")))
                thread.start()
                assert _waits_for_a_lock(watcher, pid)
            thread.join(10)
            assert done[0].results == 1
            assert _stored_ids(ingest) == set()
        finally:
            eraser.close()
            watcher.close()


@pytest.mark.postgres
def test_an_erasure_deadlocked_by_an_ingest_late_conflict_on_postgresql_is_tried_again(
) -> None:
    """An ingest batch holds the results it inserted and then meets a late id conflict, so it
    takes the dead-letter totals row out of the lock order, while the erasure holds that row
    and waits for the results table: PostgreSQL ends the erasure as deadlocked, and it is
    tried again once the batch committed, instead of failing."""
    result, late = _results(None, 2, 16)
    with fresh_store("postgres", Path("."), "test_erasure_deadlock", open_store) as ingest:
        schema = ingest.query("SELECT current_schema()")[0][0]
        eraser, watcher = open_store(PG_URL, pg_schema=schema), open_store(PG_URL, schema)
        pid = eraser.query("SELECT pg_backend_pid()")[0][0]
        done: list[Any] = []
        try:
            # the erasure's side is the one that finds the deadlock (after 1 s, its default)
            ingest.write("SET deadlock_timeout = '60s'", [()])
            with ingest._transaction() as cur:  # noqa: SLF001  (held open between two steps)
                assert ingest._insert_fresh(cur, [_row(result)])[0]  # noqa: SLF001
                thread = threading.Thread(target=lambda: done.append(
                    eraser.erase(Selector("result", result.measurement_id), "kim")))
                thread.start()
                assert _waits_for_a_lock(watcher, pid)  # holds the totals row
                ingest._add_to_letter_totals(cur, 0, 0)  # noqa: SLF001  (a late conflict's)
                ingest._insert_fresh(cur, [_row(late)])  # noqa: SLF001
            thread.join(10)
            assert [erased.results for erased in done] == [1]
            assert _stored_ids(ingest) == {late.measurement_id}
        finally:
            eraser.close()
            watcher.close()


def _waits_for_a_lock(watcher: Store, pid: int) -> bool:
    """Whether the backend ``pid`` is seen waiting for a lock within 10 s."""
    def waiting() -> bool:
        rows = watcher.query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
                             (pid,))
        return bool(rows) and rows[0][0] == "Lock"

    return wait_until(waiting, 10)


def test_letters_kept_or_pruned_while_an_erasure_reads_them_first_are_counted_right(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The letters are read before the erasure's transaction; one kept between that read and
    the transaction goes too, and one pruned meanwhile is not counted as erased."""
    early, pruned, late = _results("subj-6", 3, 13)
    store.write_batch(Batch(dead_letters=[_refused(early), _refused(pruned)]), *KEEP)
    read = store._letter_names  # noqa: SLF001  (an ingest batch and a prune come in between)

    def then_ingest_and_prune(cur: Any, after: int) -> Any:
        names = read(cur, after)
        if after == 0:  # the read before the transaction
            store.write_batch(Batch(dead_letters=[_refused(late)]), *KEEP)
            with store._transaction() as writing:  # noqa: SLF001
                store._add_to_letter_totals(writing, 0, 0)  # noqa: SLF001
                store._remove_letters(writing, "id = ?", (names[1][0],))  # noqa: SLF001
        return names

    monkeypatch.setattr(store, "_letter_names", then_ingest_and_prune)
    done = store.erase(Selector("subject", "subj-6"), "hana")

    assert done.dead_letters == 2  # early and late; pruned was gone already
    assert store.dead_letters() == []
    assert store.query("SELECT dead_letters FROM erasures") == [(2,)]
    counted = store.recount_letter_totals()
    assert counted[0] == counted[1]


def test_the_audit_lists_erasures_and_retention_runs_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, results = _cli_store(tmp_path)
    assert main(["results", "erasures", "--store", url]) == 0
    assert capsys.readouterr().out == "no erasures recorded\n"
    store = open_store(url)
    store.erase(Selector("subject", "subj-1"), "ivan")
    store.erase(Selector("result", results[2].measurement_id), "judy\x1b[31m")
    store.close()

    assert main(["results", "erasures", "--store", url, "--limit", "5"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ERASED_AT", "BY", "KIND", "SELECTOR", "RESULTS",
                                "DEAD_LETTERS", "MODEL_REPORTS"]
    assert lines[1].split()[1:] == ["judy\\x1b[31m", "result", results[2].measurement_id,
                                    "1", "0", "0"]
    assert lines[2].split()[1:] == ["ivan", "subject", "subj-1", "2", "0", "0"]
    assert lines[3] == "2 erasure(s) shown, of 2 recorded"
