"""The kiosks' model reports kept as history (model_reports.py): an ingest worker on the real
mosquitto stores each report a kiosk sends on ``.../model/state`` once (a retained one replayed
at a new worker's subscribe adds nothing), dead-letters a hostile one, and ``models status``
shows what the store holds with ``--history`` and when the broker cannot be reached. SQLite and
PostgreSQL. Before, a kiosk's install, refusal or rollback lived only in its retained report
on the broker, which keeps the newest one alone."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.metrics import serve_metrics
from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import free_port
from appliance.transport.payloads import MAX_PAYLOAD_BYTES, ModelInfo, ModelState
from appliance.updates.operations import init_repository
from tests.fleet_broker import Probe, provisioned_broker
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_model_reports", open_store) as opened:
        yield opened


def _report(device: str, state: str, model: str | None, running: str | None,
            reason: str | None = None, *, at: datetime | None = None,
            **fields: Any) -> ModelState:
    """A report of kiosk lab/``device`` about ``model`` (a version of "skin"), ``running``
    serving after it, as appliance/updates/kiosk.py sends it."""
    return ModelState(
        device_id=device, site="lab", state=state, at=at or datetime.now(UTC),  # type: ignore[arg-type]
        model=ModelInfo(name="skin", version=model) if model else None,
        running=ModelInfo(name="skin", version=running) if running else None,
        reason=reason, **fields)


def _story(device: str) -> list[ModelState]:
    """A kiosk installs 1.1.0, refuses 1.2.0, and goes back from 1.1.0 to 1.0.0."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    return [
        _report(device, "installed", "1.1.0", "1.1.0", at=start, healthy=True, rollout="r1"),
        _report(device, "rejected", "1.2.0", "1.1.0", "self-test failed: label mismatch",
                at=start + timedelta(minutes=1), rollout="r2"),
        _report(device, "rolled_back", "1.1.0", "1.0.0", "health check: 12 errors",
                at=start + timedelta(minutes=2), healthy=False),
    ]


def _worker(prefix: str, state_dir: Path, store: Store,
            **settings: float) -> tuple[IngestWorker, Store]:
    """A started ingest worker of its own client id (and backoffice ``settings``) on
    ``store``'s database, with its own connection to it (as a worker process has), and that
    connection."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": prefix},
        "state_dir": str(state_dir),
        "backoffice": {"client_id": f"reports-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
                       **settings},
    }, environ={})
    own = open_store(store.url, store._pg_schema)  # noqa: SLF001  (the test's schema)
    worker = IngestWorker(config, own)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    return worker, own


@pytest.mark.broker
def test_a_flood_of_reports_keeps_its_kiosk_s_status_burst_and_no_more(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    """A stolen kiosk login sending valid reports of its own: each would be a row kept for
    good; beyond the kiosk's status bound they are acknowledged and not kept."""
    worker = _worker(topic_prefix, tmp_path, store, kiosk_statuses_per_s=0.001,
                     kiosk_statuses_burst=3)
    start = datetime.now(UTC) - timedelta(minutes=1)
    flood = [(f"{topic_prefix}/lab/kiosk-1/model/state",
              _report("kiosk-1", "rejected", "1.0.0", None, f"#{i}",
                      at=start + timedelta(seconds=i)).to_json()) for i in range(10)]
    metrics_port = free_port()
    metrics = serve_metrics(worker[0], metrics_port)
    try:
        fleet.publish_messages("127.0.0.1", 1883, flood)
        assert wait_until(lambda: worker[0].stats.received >= len(flood), 20), worker[0].stats
        assert [row["reason"] for row in store.model_reports("kiosk-1")] == ["#2", "#1", "#0"]
        assert worker[0].stats.model_reports_over_rate == len(flood) - 3
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            exposition = reply.read().decode()
        assert "appliance_backoffice_model_reports_total 3.0" in exposition
        assert "appliance_backoffice_model_reports_over_rate_total 7.0" in exposition
    finally:
        assert metrics is not None
        metrics.close()
        _stop(worker)


def _stop(worker: tuple[IngestWorker, Store]) -> None:
    worker[0].stop()
    worker[1].close()


def _states(store: Store, device: str) -> list[str]:
    return [row["state"] for row in store.model_reports(device, "lab")]


@pytest.mark.broker
def test_a_kiosk_s_install_refusal_and_rollback_are_three_rows_and_a_replay_adds_none(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    topic = f"{topic_prefix}/lab/kiosk-1/model/state"
    worker = _worker(topic_prefix, tmp_path, store)
    try:
        for report in _story("kiosk-1"):  # retained, one after the other, as a kiosk sends
            fleet.publish_messages("127.0.0.1", 1883, [(topic, report.to_json())], retain=True)
        assert wait_until(lambda: len(_states(store, "kiosk-1")) == 3, 20)
        newest = store.model_reports("kiosk-1", "lab")
        assert [row["state"] for row in newest] == ["rolled_back", "rejected", "installed"]
        assert [(row["model_version"], row["running_version"]) for row in newest] == [
            ("1.1.0", "1.0.0"), ("1.2.0", "1.1.0"), ("1.1.0", "1.1.0")]
        assert newest[1]["reason"] == "self-test failed: label mismatch"
        assert (newest[0]["healthy"], newest[2]["healthy"], newest[2]["rollout"]) == (
            False, True, "r1")
        assert newest[0]["reported_at"] < newest[0]["received_at"]  # the kiosk's time, kept
        _stop(worker)
        # a new worker gets the broker's retained copy of the newest report at its subscribe;
        # another kiosk's report published after it marks it handled
        worker = _worker(topic_prefix, tmp_path, store)
        marker = _report("kiosk-2", "installed", "1.0.0", "1.0.0")
        fleet.publish_messages("127.0.0.1", 1883, [
            (f"{topic_prefix}/lab/kiosk-2/model/state", marker.to_json())])
        assert wait_until(lambda: _states(store, "kiosk-2") == ["installed"], 20)
        # the replay was written, before the marker (the worker counts a batch just after its
        # commit, which the store shows a moment before)
        assert wait_until(lambda: worker[0].stats.model_reports >= 2, 20), worker[0].stats
        assert _states(store, "kiosk-1") == ["rolled_back", "rejected", "installed"]
    finally:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"")], retain=True)
        _stop(worker)


@pytest.mark.broker
def test_a_hostile_report_is_dead_lettered_and_stores_no_row(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store: Store,
) -> None:
    topic = f"{topic_prefix}/lab/kiosk-1/model/state"
    forged = _report("kiosk-9", "installed", "6.6.6", "6.6.6")  # another kiosk's, on this topic
    worker = _worker(topic_prefix, tmp_path, store)
    try:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, forged.to_json())])
        assert wait_until(lambda: store.count_dead_letters() == 1, 20)
        (letter,) = store.dead_letters()
        assert letter.topic == topic
        assert letter.reason == ("payload says device lab/kiosk-9 but came on the topic of "
                                 "lab/kiosk-1")
        assert store.model_reports("kiosk-9") == store.model_reports("kiosk-1") == []
    finally:
        _stop(worker)


@pytest.mark.broker
def test_the_shipped_acls_let_a_worker_read_the_kiosks_reports_and_a_kiosk_send_only_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/mosquitto/provision.py: the back-office role subscribes to every kiosk's
    ``model/state``, a kiosk publishes on its own only (TLS, dynamic security)."""
    args = ["--device=shop-1/kiosk-a", "--device=shop-1/kiosk-b", "--worker", "backoffice-1"]
    with provisioned_broker(args) as broker:
        monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", broker.password("backoffice-1"))
        config = config_from_mapping({
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "backoffice-1",
                     "tls": {"enabled": True, "ca_file": str(broker.folder / "certs/ca.crt")}},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": "backoffice-1"},
        }, environ={})
        store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        worker = IngestWorker(config, store)
        worker.start()
        kiosk = Probe(broker, "kiosk-a", "edge-shop-1-kiosk-a")
        own, other = (f"appliance/shop-1/{device}/model/state" for device in ("kiosk-a", "kiosk-b"))
        try:
            assert worker.subscribed.wait(10), worker.failed  # model/state granted with the rest
            report = _report("kiosk-a", "installed", "1.0.0", "1.0.0").model_copy(
                update={"site": "shop-1"})
            assert kiosk.publish(other, report.to_json()) == 0x87  # not its own: refused
            assert kiosk.publish(own, report.to_json(), retain=True) == 0
            assert wait_until(lambda: store.model_reports("kiosk-a", "shop-1") != [], 20)
            assert store.model_reports("kiosk-b") == []
            assert store.count_dead_letters() == 0
        finally:
            kiosk.publish(own, b"", retain=True)
            kiosk.close()
            worker.stop()
            store.close()


def _sorted(*messages: Inbound) -> Any:
    return Triage("appliance", 2**20).sort(list(messages))[0]


def _edited(**fields: Any) -> bytes:
    """A valid report of lab/k1 with ``fields`` put in (or taken out, given None)."""
    data = json.loads(_report("k1", "installed", "1.0.0", "1.0.0").to_json())
    data.update(fields)
    return json.dumps({key: value for key, value in data.items() if value is not None}).encode()


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not JSON"),
    (_edited(state="exploded"), "state: "),
    (_edited(reason="x" * 1025), "reason: "),
    (_edited(at=(datetime.now(UTC) + timedelta(days=1)).isoformat()), "at: "),
    (_edited(at="2026-12-05T10:00:00"), "no time zone"),
    (_edited(device_id="k2"), "payload says device lab/k2"),
    (_edited(model={"name": "skin", "version": "1", "extra": 1}), "model.extra"),
    (_edited(reason="a\u0000b"), "NUL"),
    (_edited(pad="x" * MAX_PAYLOAD_BYTES), f"exceeds {MAX_PAYLOAD_BYTES}"),
])
def test_triage_dead_letters_a_report_it_cannot_trust(payload: bytes, reason: str) -> None:
    batch = _sorted(Inbound("appliance/lab/k1/model/state", payload, 1, 1))
    assert batch.model_reports == []
    (letter,) = batch.dead_letters
    assert reason in letter.reason


def test_an_empty_retained_report_clears_the_topic_and_stores_nothing() -> None:
    batch = _sorted(Inbound("appliance/lab/k1/model/state", b"", 1, 1, True))
    assert (batch.model_reports, batch.dead_letters) == ([], [])


def test_a_report_received_twice_or_by_two_workers_is_one_row(store: Store) -> None:
    raw = _report("k1", "installed", "1.0.0", "1.0.0").to_json()
    message = Inbound("appliance/lab/k1/model/state", raw, 1, 1)
    store.write_batch(_sorted(message, message), *KEEP)  # twice in one batch
    store.write_batch(_sorted(Inbound(message.topic, raw, 2, 1, True)), *KEEP)  # replayed
    store.write_batch(_sorted(message), *KEEP)  # another worker's
    assert _states(store, "k1") == ["installed"]


@pytest.fixture
def told_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A SQLite store holding kiosk lab/k1's install, refusal and rollback (and lab/k2's
    install), a model repository, and no config: the broker from APPLIANCE__ variables."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    stored = open_store(url)
    reports = [*_story("k1"), _report("k2", "installed", "1.0.0", "1.0.0")]
    for report in reports:
        topic = f"appliance/lab/{report.device_id}/model/state"
        stored.write_batch(_sorted(Inbound(topic, report.to_json(), 1, 1)), *KEEP)
    stored.close()
    return url, init_repository(tmp_path / "repo").dir


def test_models_status_history_shows_a_kiosk_s_stored_reports_newest_first(
    told_story: tuple[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    url, repo = told_story
    base = ["models", "status", "--repo", str(repo), "--store", url, "--history"]
    assert main([*base, "lab/k1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RECEIVED", "KIOSK", "TIME"]
    assert [line.split()[2] for line in lines[1:]] == ["rolled_back", "rejected", "installed"]
    assert "skin 1.1.0" in lines[1]
    assert "skin 1.0.0" in lines[1]
    assert lines[2].endswith("self-test failed: label mismatch")
    assert lines[3].endswith("skin 1.1.0")  # no reason: the line ends at the model
    assert main([*base, "k1", "--limit", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [row["state"] for row in shown["reports"]] == ["rolled_back"]
    assert main([*base, "lab/k3"]) == 0
    assert "no model report of lab/k3 is stored" in capsys.readouterr().out


def test_models_status_history_needs_no_repository(
    told_story: tuple[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = told_story
    assert main(["models", "status", "--store", url, "--history", "lab/k2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["installed"]
    assert main(["models", "status", "--store", url]) == 2  # the live status reads releases
    assert capsys.readouterr().err == ("models status: --repo DIR is needed (the model repository "
                                       "folder); only --history DEVICE reads no repository\n")


def test_models_status_history_neither_reads_nor_judges_the_password_file(
    told_story: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--history`` reads the store alone and logs in to no broker, yet the rollout login's
    password file was read and judged: a script that always passes it was refused (exit 2,
    "everyone may read it") where nothing needed it."""
    url, _ = told_story
    monkeypatch.setenv("APPLIANCE__MQTT__USERNAME", "rollout")
    shared = tmp_path / "rollout.password"
    shared.write_text("s3cret\n")
    shared.chmod(0o644)
    for password_file in (shared, tmp_path / "no-such.password"):
        assert main(["models", "status", "--store", url, "--history", "lab/k2",
                     "--password-file", str(password_file)]) == 0
        shown = capsys.readouterr()
        assert [line.split()[2] for line in shown.out.splitlines()[1:]] == ["installed"]
        assert shown.err == ("models status: --password-file is not read with --history (it "
                             "shows what the store holds and logs in to no broker)\n")


def test_models_status_without_the_broker_shows_each_kiosk_s_newest_stored_report(
    told_story: tuple[str, Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, repo = told_story
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(free_port()))  # nothing listens there
    assert main(["models", "status", "--repo", str(repo), "--store", url]) == 1
    captured = capsys.readouterr()
    assert "models status: broker 127.0.0.1:" in captured.err
    assert "the broker cannot be reached: each kiosk's newest model report" in captured.err
    rows = [line.split() for line in captured.out.splitlines()[1:]]
    assert [(row[0], row[3]) for row in rows] == [("lab/k1", "rolled_back"),
                                                  ("lab/k2", "installed")]
