"""The retention bound: results captured (and dead letters received) before a cut-off go, a
few at a time, recorded once a run; a late re-send of one is not stored; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.model_reports import model_report_row
from appliance.backoffice.report import write_cohort_report
from appliance.backoffice.retention import Period, RetentionPruner, cut_off
from appliance.backoffice.schema import dead_letter, iso_utc, result_row
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Batch, Store, open_store
from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping
from appliance.console.views import CohortCache, cohort_json
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.payloads import ModelInfo, ModelState, Result
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_retention", open_store) as opened:
        yield opened


def _aged(days: list[float], seed: int = 1) -> list[Result]:
    """Results captured ``days`` days ago each."""
    rng, now = random.Random(seed), datetime.now(UTC)
    return [fleet.sample_result(rng, "lab", "kiosk-1", i).model_copy(
        update={"captured_at": now - timedelta(days=age)}) for i, age in enumerate(days)]


def _row(result: Result, received_at: datetime | None = None) -> tuple[Any, ...]:
    """``result`` as the ingest writes it, received a second after its capture (a kiosk whose
    clock runs right: the retention bound counts from the capture the back office places,
    never earlier than a backlog before its receipt: placed_capture.py) or at ``received_at``."""
    received = result.captured_at + timedelta(seconds=1) if received_at is None else received_at
    return result_row(result, iso_utc(received), result.to_json().decode())


def _letter(days_ago: float, n: int) -> Any:
    received = iso_utc(datetime.now(UTC) - timedelta(days=days_ago))
    return dead_letter(received, "appliance/lab/kiosk-1/result", "refused", b"junk %d" % n)


def _reported(device: str, days_ago: float, state: str, version: str) -> tuple[Any, ...]:
    """A model report of kiosk lab/``device`` (``version`` serving after it) received
    ``days_ago`` days ago, as the ingest writes it."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    report = ModelState(device_id=device, site="lab", state=state, at=at,  # type: ignore[arg-type]
                        model=ModelInfo(name="skin", version=version),
                        running=ModelInfo(name="skin", version=version))
    return model_report_row(report, iso_utc(at), report.to_json())


def _reports_kept(store: Store, device: str) -> list[tuple[str, str]]:
    return [(row["state"], row["running_version"]) for row in store.model_reports(device, "lab")]


def _ids(store: Store) -> set[str]:
    return {str(row[0]) for row in store.select_results(["measurement_id"])}


def test_pruning_removes_only_what_is_older_in_batches_and_records_one_run(
    store: Store,
) -> None:
    old, recent = _aged([40, 35, 31, 33, 50]), _aged([29, 1], seed=2)
    store.write_batch(Batch(results=[_row(r) for r in old + recent],
                            dead_letters=[_letter(40, 1), _letter(31, 2), _letter(2, 3)]), *KEEP)
    before = cut_off(30)
    assert store.prune_preview(before) == (5, 2)

    done = store.prune_before(before, "root", rows_at_once=2)  # 3 batches of results

    assert (done.results, done.dead_letters) == (5, 2)
    assert _ids(store) == {r.measurement_id for r in recent}
    assert [d.payload for d in store.dead_letters()] == [b"junk 3"]
    counted = store.recount_letter_totals()
    assert counted[0] == counted[1]  # the running totals were kept right
    assert store.query("SELECT os_user, kind, selector, results, dead_letters FROM erasures"
                       ) == [("root", "retention", before, 5, 2)]
    assert store.prune_before(before, "root").erasure_id == 0  # nothing left: not recorded
    assert store.query("SELECT COUNT(*) FROM erasures") == [(1,)]


def test_a_result_older_than_the_last_cut_off_sent_again_is_not_stored(store: Store) -> None:
    """Sent again now (its ack was lost), with its kiosk's birth status, whose outbox says
    it holds a result 45 days old."""
    late, fresh = _aged([45, 3])
    store.write_batch(Batch(results=[_row(late)]), *KEEP)
    store.prune_before(cut_off(30), "root")
    now = datetime.now(UTC)
    reading = ("lab", "kiosk-1", 0.0, iso_utc(now), (now - late.captured_at).total_seconds(), None)

    stored = store.write_batch(Batch(results=[_row(late, now), _row(fresh, now)],
                                     clock_readings=[reading]), *KEEP)

    assert stored == [fresh.measurement_id]
    assert _ids(store) == {fresh.measurement_id}


def test_the_back_office_pruner_removes_old_results_and_says_so_once_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    old, recent = _aged([400, 366, 370]), _aged([10])
    store.write_batch(Batch(results=[_row(r) for r in old + recent]), *KEEP)
    stop = threading.Event()
    pruner = RetentionPruner(url, 365, "back office bo-1", stop, every_s=3600)
    caplog.set_level(logging.INFO, "appliance.backoffice.retention")
    pruner.start()
    try:
        assert wait_until(lambda: pruner.runs == 1, 10)
    finally:
        pruner.halt(10)
    assert _ids(store) == {recent[0].measurement_id}
    said = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(said) == 1
    assert ("removed 3 result(s) captured, 0 dead letter(s) and 0 superseded model report(s) "
            "received before") in said[0]
    store.close()


def test_retention_days_is_unset_by_default_and_refused_below_one_day() -> None:
    assert config_from_mapping({}, environ={}).backoffice.retention_days is None
    assert config_from_mapping({"backoffice": {"retention_days": 1825}},
                               environ={}).backoffice.retention_days == 1825
    with pytest.raises(ConfigError, match=r"backoffice\.retention_days: got 0"):
        config_from_mapping({"backoffice": {"retention_days": 0}}, environ={})


def test_the_prune_command_says_what_it_removed_and_needs_yes_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    old, recent = _aged([20, 12]), _aged([2])
    store.write_batch(Batch(results=[_row(r) for r in old + recent]), *KEEP)
    store.close()

    assert main(["results", "prune", "--store", url, "--older-than", "10"]) == 2
    assert "add --yes" in capsys.readouterr().err
    assert main(["results", "prune", "--store", url, "--older-than", "10", "--yes"]) == 0

    assert "removed 2 result(s) captured, 0 dead letter(s) and 0 superseded model report(s)" \
        in capsys.readouterr().out
    store = open_store(url)
    assert _ids(store) == {recent[0].measurement_id}
    store.close()


def test_the_prune_command_with_nothing_to_remove_says_so_without_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It asked to confirm removing nothing, and without a terminal refused, exit 2."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    store.write_batch(Batch(results=[_row(r) for r in _aged([2])]), *KEEP)
    store.close()

    assert main(["results", "prune", "--store", url, "--older-than", "10"]) == 0

    captured = capsys.readouterr()
    assert captured.out.startswith("nothing to remove: no result captured and no dead letter "
                                   "or superseded model report received before ")
    assert captured.err == ""
    assert main(["results", "erasures", "--store", url]) == 0
    assert "no erasures recorded" in capsys.readouterr().out


def test_pruning_keeps_the_model_report_that_explains_the_oldest_results_kept(
    store: Store,
) -> None:
    """Model reports were kept for ever. A report goes once a newer one of its kiosk was also
    received before the cut-off: the newest from before it says which model measured the
    oldest results kept, so it stays, as every report received since does."""
    store.write_batch(Batch(model_reports=[
        _reported("k1", 400, "installed", "1.0.0"), _reported("k1", 300, "installed", "1.1.0"),
        _reported("k1", 100, "rolled_back", "1.0.0"), _reported("k1", 5, "installed", "1.2.0"),
        _reported("k2", 500, "installed", "1.0.0"), _reported("k2", 450, "installed", "1.1.0"),
    ]), *KEEP)
    store.write_batch(Batch(results=[_row(r) for r in _aged([250, 10])]), *KEEP)
    before = cut_off(200)
    assert store.prunable_model_reports(before) == 2

    done = store.prune_before(before, "root", rows_at_once=1)

    assert (done.results, done.model_reports) == (1, 2)
    assert _reports_kept(store, "k1") == [("installed", "1.2.0"), ("rolled_back", "1.0.0"),
                                          ("installed", "1.1.0")]  # 1.1.0 measured from -300 d
    assert _reports_kept(store, "k2") == [("installed", "1.1.0")]  # nothing newer came
    assert store.prune_before(cut_off(1), "root").model_reports == 2  # k1's -300 and -100 d
    assert _reports_kept(store, "k1") == [("installed", "1.2.0")]


def test_a_run_that_removed_model_reports_is_recorded_with_them(store: Store) -> None:
    """Before, only a run that removed results or dead letters was recorded, and the record
    had no count of the model reports: those a run removed alone left no record at all."""
    store.write_batch(Batch(model_reports=[
        _reported("k1", 40, "installed", "1.0.0"), _reported("k1", 30, "installed", "1.1.0"),
    ]), *KEEP)
    before = cut_off(10)

    done = store.prune_before(before, "root")

    assert (done.results, done.dead_letters, done.model_reports) == (0, 0, 1)
    assert done.erasure_id > 0
    assert store.query("SELECT id, os_user, kind, selector, results, dead_letters, "
                       "model_reports FROM erasures") == [
        (done.erasure_id, "root", "retention", before, 0, 0, 1)]
    store.write_batch(Batch(results=[_row(r) for r in _aged([7])], model_reports=[
        _reported("k1", 8, "installed", "1.2.0"), _reported("k1", 6, "installed", "1.3.0")]),
        *KEEP)
    later = cut_off(5)
    assert store.prune_before(later, "root").model_reports == 2  # 1.1.0 and 1.2.0
    assert store.query("SELECT selector, results, dead_letters, model_reports FROM erasures "
                       "ORDER BY id") == [(before, 0, 0, 1), (later, 1, 0, 2)]


def test_the_prune_command_counts_superseded_model_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = open_store(url)
    store.write_batch(Batch(model_reports=[_reported("k1", 40, "installed", "1.0.0"),
                                           _reported("k1", 30, "installed", "1.1.0")]), *KEEP)
    store.close()

    assert main(["results", "prune", "--store", url, "--older-than", "10", "--yes"]) == 0

    assert ("removed 0 result(s) captured, 0 dead letter(s) and 1 superseded model report(s) "
            "received before") in capsys.readouterr().out
    assert main(["results", "prune", "--store", url, "--older-than", "10"]) == 0
    assert capsys.readouterr().out.startswith("nothing to remove")
    assert main(["results", "erasures", "--store", url]) == 0
    audit = capsys.readouterr().out.splitlines()
    assert audit[0].split()[-1] == "MODEL_REPORTS"
    assert audit[1].split()[2:] == ["retention", audit[1].split()[3], "0", "0", "1"]


def test_the_cohort_report_and_console_figures_say_the_period_and_the_cut_off(
    store: Store, tmp_path: Path
) -> None:
    results = _aged([400, 200, 100, 5])
    store.write_batch(Batch(results=[_row(r) for r in results]), *KEEP)
    cache = CohortCache(max_age_s=3600)
    assert cache.get(store).period.removed_before is None
    before = cut_off(365)

    store.prune_before(before, "root")

    figures = cache.get(store)  # computed again: the prune is newer than the figures
    first = min(iso_utc(r.captured_at) for r in results[1:])
    assert figures.period == Period(first, iso_utc(results[-1].captured_at), before)
    assert cohort_json(figures)["period"]["removed_before"] == before
    write_cohort_report(store, tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["period"] == {"captured_from": first,
                                 "captured_to": iso_utc(results[-1].captured_at),
                                 "removed_before": before}
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"Results captured before {before[:19]}Z were removed" in page


@pytest.mark.broker
def test_a_back_office_with_a_retention_bound_prunes_beside_its_ingest(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    store = open_store(url)
    old, recent = _aged([800, 731]), _aged([3])
    store.write_batch(Batch(results=[_row(r) for r in old + recent]), *KEEP)
    config = config_from_mapping({
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port,
                 "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path / "state"), "store": {"url": url},
        "backoffice": {"client_id": f"bo-{topic_prefix[-12:]}", "retention_days": 730},
    }, environ={})
    stop, codes = threading.Event(), []
    worker = threading.Thread(target=lambda: codes.append(run_backoffice(config, stop)))
    worker.start()
    try:
        assert wait_until(lambda: _ids(store) == {recent[0].measurement_id}, 20)
    finally:
        stop.set()
        worker.join(20)
        store.close()
    assert codes == [0]


@pytest.mark.parametrize("days", ["36526", "1000000", str(2**63 - 1)])
def test_the_prune_command_refuses_days_beyond_the_retention_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    open_store(url).close()

    with pytest.raises(SystemExit) as ended:
        main(["results", "prune", "--store", url, "--older-than", days, "--yes"])

    assert ended.value.code == 2
    assert f"{days}: must be at most 36525" in capsys.readouterr().err
    assert main(["results", "prune", "--store", url, "--older-than", "36525", "--yes"]) == 0
