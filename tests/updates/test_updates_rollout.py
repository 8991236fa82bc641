"""Staged rollouts on simulated kiosks: 20 kiosks installed, canary halt, status and the CLI."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
import yaml
from updates_helpers import Fleet, coarse_on_high_kime

from appliance.backoffice.store import Store, open_store
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.transport import payloads
from appliance.transport.topics import device_topic
from appliance.updates import rollout as rollout_module
from appliance.updates.fleetdevices import fleet_status
from appliance.updates.fleetwatch import FleetWatcher
from appliance.updates.operations import assignments, init_repository, release_model
from appliance.updates.repofiles import RepositoryError
from appliance.updates.rollout import Rollout, RolloutPlan
from appliance.updates.rolloutrecords import INTERRUPTED_REASON, latest_rollouts
from appliance.updates.testing import ModelEvents
from tests.store_helpers import PG_URL

pytestmark = pytest.mark.broker


def _watcher(fleet: Fleet) -> FleetWatcher:
    mqtt = {"host": fleet.broker.host, "port": fleet.broker.port, "topic_prefix": fleet.prefix}
    config = config_from_mapping({"mqtt": mqtt}, "test", environ={})
    return FleetWatcher(config.mqtt, f"w-{fleet.prefix[-20:]}")


def _store(tmp: Path) -> Store:
    return open_store(f"sqlite:///{tmp / 'backoffice.sqlite3'}")


def _all_online(fleet: Fleet, events: ModelEvents, count: int) -> None:
    assert events.wait_until(
        lambda: all(d.updater.checks >= 1 for d in fleet.daemons.values())
        and sum(len(v) > 0 for v in events.versions.values()) == count,
        60,
    )


@pytest.mark.slow
def test_twenty_kiosks_install_and_no_measurement_is_lost_or_split(
    fleet: Fleet, events: ModelEvents
) -> None:
    names = [f"k{i:02d}" for i in range(20)]
    for name in names:
        fleet.kiosk(name)
    _all_online(fleet, events, 20)
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, n) for n in names], canaries=2,
                           wave_size=10, timeout_s=60)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
        assert outcome.state == "complete", outcome.reason
        assert {o[0] for o in outcome.outcomes.values()} == {"installed"}
        assert events.wait_until(lambda: all(
            list(events.versions[n].values())[-1] == "1.1.0" for n in names), 30)
        rows = fleet_status(fleet.repo, watcher, store)
    finally:
        watcher.close()
        store.close()
    assert [(r["running"], r["targeted"], r["state"]) for r in rows] == [
        ("1.1.0", "skin-texture-grade 1.1.0", "installed")] * 20
    made = {name: daemon.analysis.measurements for name, daemon in fleet.daemons.items()}
    assert events.wait_until(  # every measurement made so far arrives: none lost in the swap
        lambda: all(len(events.versions[n]) >= made[n] for n in names), 30)
    fleet.close()
    for name, daemon in fleet.daemons.items():
        by_time = [events.versions[name][i] for i in sorted(events.versions[name])]
        switch = by_time.index("1.1.0")
        assert set(by_time[:switch]) == {"1.0.0"}, by_time  # one swap, between measurements
        assert set(by_time[switch:]) == {"1.1.0"}, by_time
        assert len(by_time) <= daemon.analysis.measurements  # one result per measurement


def test_canaries_that_fail_their_self_test_halt_the_rollout(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"k{i}" for i in range(5)]
    for name in names:
        fleet.kiosk(name)
    _all_online(fleet, events, 5)
    fleet.release_failing_self_test("1.1.0")
    config = fleet.tmp / "backoffice.yaml"
    config.write_text(yaml.safe_dump({
        "mqtt": {"host": fleet.broker.host, "port": fleet.broker.port,
                 "topic_prefix": fleet.prefix},
        "state_dir": str(fleet.tmp / "backoffice"),
    }))
    common = ["--repo", str(fleet.repo.dir), "--config", str(config)]
    code = main(["models", "deploy", "skin-texture-grade", "1.1.0", "--all", "--canary", "2",
                 "--timeout-s", "30", *common])
    assert code == 1
    assert "halted after canary: 2 failure(s)" in capsys.readouterr().out
    assert assignments(fleet.repo) == {}  # the halted release is assigned to nobody
    for name in names[2:]:
        assert events.last_state(name) is None  # never offered it
        assert set(events.versions[name].values()) == {"1.0.0"}
    assert main(["models", "status", "--json", *common]) == 0
    rows = {r["device_id"]: r for r in json.loads(capsys.readouterr().out)["devices"]}
    for canary in names[:2]:
        assert rows[canary]["state"] == "rejected"
        assert "self-test failed" in rows[canary]["reason"]
        assert rows[canary]["rollout_state"] == "halted"
        assert rows[canary]["running"] == "1.0.0"
    assert rows["k4"]["targeted"] is None


def test_cli_deploy_then_signed_rollback_of_every_assigned_kiosk_with_no_config_file(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["k0", "k1", "k2"]
    for name in names:
        fleet.kiosk(name)
    _all_online(fleet, events, 3)
    fleet.release("1.0.5")
    fleet.release("1.1.0")
    elsewhere = fleet.tmp / "elsewhere"  # no config.yaml: the broker from APPLIANCE__, --store
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    store = f"sqlite:///{fleet.tmp / 'backoffice' / 'store.sqlite3'}"
    common = ["--repo", str(fleet.repo.dir), "--store", store]
    assert main(["models", "deploy", "skin-texture-grade", "1.1.0", "--site", fleet.site,
                 "--canary", "1", "--timeout-s", "30", *common]) == 0
    assert "complete: 3 device(s) installed skin-texture-grade 1.1.0" in capsys.readouterr().out
    assert main(["models", "rollback", "skin-texture-grade", "--to", "1.0.5",
                 "--timeout-s", "30", *common]) == 0
    assert "complete: 3 device(s) installed skin-texture-grade 1.0.5" in capsys.readouterr().out
    assert {a.decision for a in assignments(fleet.repo).values()} == {"rollback"}
    assert events.wait_until(lambda: all(
        fleet.daemons[n].classifier.version == "1.0.5" for n in names), 30)
    assert main(["models", "status", *common]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 5
    assert all("1.0.5" in line and "installed" in line for line in table[1:4])
    assert table[4].startswith("rollout ")  # the rollback, and whose reports it rested on
    assert "complete: 3 device(s) installed skin-texture-grade 1.0.5" in table[4]
    assert "on the reports of 3 kiosk(s), each its own login; waves " in table[4]
    assert list(elsewhere.iterdir()) == []  # the store is where --store said, nothing here


def test_deploying_again_what_kiosks_already_run_completes(
    fleet: Fleet, events: ModelEvents
) -> None:
    # A deploy killed after its first wave installed, run again: those kiosks already run the
    # release healthy under the first rollout's id and have nothing new to report.
    fleet.kiosk("k0")
    _all_online(fleet, events, 1)
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k0")], canaries=1,
                           timeout_s=30)
        assert Rollout(fleet.repo, watcher, store, plan).run().state == "complete"
        again = Rollout(fleet.repo, watcher, store, replace(plan, timeout_s=5)).run()
    finally:
        watcher.close()
        store.close()
    assert again.state == "complete", again.reason
    assert [*assignments(fleet.repo)] == [(fleet.site, "k0")]  # still assigned, not withdrawn
    assert fleet.daemons["k0"].classifier.version == "1.1.0"


def test_a_kiosk_whose_clock_is_behind_the_back_office_s_is_heard(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a kiosk without NTP, 10 minutes behind: its reports on this rollout carry this rollout's
    # id, but their times are before the back office started it
    fleet.kiosk("k0")
    fleet.kiosk("k1")
    _all_online(fleet, events, 2)
    ahead = SimpleNamespace(utc_now=lambda: payloads.utc_now() + timedelta(minutes=10))
    monkeypatch.setattr(rollout_module, "payloads", ahead)
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        good = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k0")], timeout_s=20)
        installed = Rollout(fleet.repo, watcher, store, good).run()
        bad = RolloutPlan(fleet.release_failing_self_test("1.2.0"), [(fleet.site, "k1")],
                          timeout_s=20)
        refused = Rollout(fleet.repo, watcher, store, bad).run()
    finally:
        watcher.close()
        store.close()
    assert installed.state == "complete", installed.reason
    assert refused.state == "halted"
    assert "k1 rejected: self-test failed" in refused.reason  # its words, not a timeout


def test_one_rollout_at_a_time_and_a_killed_one_is_marked_interrupted(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(fleet.tmp)  # no config.yaml: the broker from APPLIANCE__
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    fleet.kiosk("k0")
    _all_online(fleet, events, 1)
    fleet.release("1.1.0")
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    with closing(open_store(store_url)) as store:  # what a deploy killed mid-wave leaves
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000001", "skin-texture-grade", "1.1.0", "deploy", "all", 1,
                      "running", None, "2026-12-01T00:00:00.000000Z",
                      "2026-12-01T00:00:00.000000Z", fleet.repo.identity())])
    deploy = ["models", "deploy", "skin-texture-grade", "1.1.0", "--all", "--timeout-s", "30",
              "--repo", str(fleet.repo.dir), "--store", store_url]
    assert main(deploy) == 0
    with closing(open_store(store_url)) as store:
        states = dict(store.query("SELECT rollout_id, state FROM rollouts"))
    assert states.pop("killed000001") == "interrupted"  # it said "running" for ever
    assert list(states.values()) == ["complete"]
    capsys.readouterr()
    with fleet.repo.rolling_out("halt"):  # a halt withdrawing: a deploy now would undo it
        assert main(deploy) == 2
    err = capsys.readouterr().err  # it named a deploy or rollback only, not the halt it was
    assert "another `appliance models deploy`, `rollback`, `halt` or `yank` is running" in err, err
    assert f"(pid {os.getpid()}: `appliance models halt`)" in err, err
    with closing(open_store(store_url)) as store:
        assert len(store.query("SELECT state FROM rollouts")) == 2  # nothing started


def test_status_shows_a_killed_deploy_s_rollout_interrupted_without_writing(
    fleet: Fleet,
) -> None:
    """It showed 'running' until the next deploy marked it interrupted."""
    fleet.release("1.1.0")
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:  # what a deploy killed mid-wave leaves
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000002", "skin-texture-grade", "1.1.0", "deploy", "all", 1,
                      "running", None, "2026-12-01T00:00:00.000000Z",
                      "2026-12-01T00:00:00.000000Z", fleet.repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000002", fleet.site, "k0", "canary", "waiting", None, None,
                      "2026-12-01T00:00:00.000000Z")])
        [killed] = fleet_status(fleet.repo, watcher, store)
        with fleet.repo.rolling_out("deploy"):  # a deploy at work: its rollout is running
            [held] = fleet_status(fleet.repo, watcher, store)
        stored = store.query("SELECT state FROM rollouts")
    finally:
        watcher.close()
        store.close()
    assert (killed["rollout_state"], killed["rollout_reason"]) == (
        "interrupted", INTERRUPTED_REASON)
    assert held["rollout_state"] == "running"
    assert [tuple(row) for row in stored] == [("running",)]  # status writes nothing


def test_plain_status_names_a_rollout_s_state_as_json_does(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table showed a device's own state and a reason, never its rollout's state: a
    rollout a killed deploy left, 'interrupted' in --json and in the README, read as nothing
    in plain `models status`, as did 'halted' for a device that never reported."""
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    fleet.release("1.1.0")
    url = f"sqlite:///{fleet.tmp / 'backoffice.sqlite3'}"
    with closing(open_store(url)) as store:  # what a deploy killed mid-wave leaves
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000003", "skin-texture-grade", "1.1.0", "deploy", "all", 1,
                      "running", None, "2026-12-01T00:00:00.000000Z",
                      "2026-12-01T00:00:00.000000Z", fleet.repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [("killed000003", fleet.site, "k0", "canary", "waiting", None, None,
                      "2026-12-01T00:00:00.000000Z")])
    status = ["models", "status", "--repo", str(fleet.repo.dir), "--store", url]
    assert main([*status, "--json"]) == 0
    [device] = json.loads(capsys.readouterr().out)["devices"]
    assert device["rollout_state"] == "interrupted"
    assert main(status) == 0
    header, row = capsys.readouterr().out.splitlines()[-2:]
    # in capitals, as `fleet` and `results query` head theirs (it was lowercase)
    assert header.split() == ["DEVICE", "RUNNING", "TARGETED", "STATE", "ROLLOUT", "WHY"]
    assert row.split()[:5] == [f"{fleet.site}/k0", "-", "-", "-", "interrupted"]
    assert row.endswith(INTERRUPTED_REASON)


def test_a_deploy_marks_interrupted_only_the_rollouts_of_its_own_repository(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two repositories (two fleets, or staging and production) record in one store: a deploy
    # on one must not call the other's rollout, running under the other's lock, interrupted.
    monkeypatch.chdir(fleet.tmp)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    fleet.kiosk("k0")
    _all_online(fleet, events, 1)
    release = fleet.release("1.1.0")
    other = init_repository(fleet.tmp / "other-repo")
    release_model(other, fleet.tmp / "model-1.1.0.onnx", release)
    store_url = f"sqlite:///{fleet.tmp / 'shared.sqlite3'}"
    watcher, store, reader = _watcher(fleet), open_store(store_url), open_store(store_url)
    elsewhere = Rollout(other, watcher, store,  # waits for a kiosk that has not answered yet
                        RolloutPlan(release, [(fleet.site, "quiet")], timeout_s=120))
    running = threading.Thread(target=elsewhere.run)
    running.start()
    try:
        assert events.wait_until(lambda: reader.rollout_rows(1, elsewhere.rollout_id), 10)
        assert main(["models", "deploy", "skin-texture-grade", "1.1.0", "--devices", "k0",
                     "--timeout-s", "30", "--repo", str(fleet.repo.dir), "--store",
                     store_url]) == 0
        states = dict(reader.query("SELECT rollout_id, state FROM rollouts"))
        assert states.pop(elsewhere.rollout_id) == "running"  # was "interrupted"
        assert list(states.values()) == ["complete"]
        for repo, device in ((fleet.repo, "k0"), (other, "quiet")):  # `models status` of each
            assert list(latest_rollouts(reader, repo)) == [(fleet.site, device)]
    finally:  # the quiet kiosk refuses: the other rollout halts and its thread ends
        _say(fleet, payloads.ModelState(device_id="quiet", site=fleet.site, state="rejected",
                                        at=payloads.utc_now(), rollout=elsewhere.rollout_id,
                                        reason="test over"))
        running.join(30)
        watcher.close()
        store.close()
        reader.close()
    assert not running.is_alive()


def test_a_model_state_without_a_time_zone_does_not_end_the_deploy_with_a_traceback(
    fleet: Fleet,
) -> None:
    # The payload schema takes "at" without a zone; compared with the rollout's start (UTC)
    # it raised TypeError out of the deploy, leaving the rollout "running".
    release = fleet.release("1.1.0")
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        zone_less = payloads.ModelState(device_id="k0", site=fleet.site, state="rejected",
                                        at=datetime.now(UTC).replace(tzinfo=None) + timedelta(
                                            seconds=5), reason="zone-less")
        # heard before the rollout starts (said again until the watcher has it: on a loaded
        # machine its subscription or the delivery can lag, and a report heard after the start
        # rightly counts)
        deadline = time.monotonic() + 20
        while (fleet.site, "k0") not in watcher.devices() and time.monotonic() < deadline:
            _say(fleet, zone_less)
            time.sleep(0.2)
        assert watcher.devices()[(fleet.site, "k0")].state.reason == "zone-less"
        plan = RolloutPlan(release, [(fleet.site, "k0")], timeout_s=2)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "halted"
    assert "timeout" in outcome.reason  # the zone-less report proves nothing about this rollout


def _say(fleet: Fleet, state: payloads.ModelState, *, retain: bool = False) -> None:
    """Publish a model state as its kiosk would (the kiosk retains its states)."""
    topic = device_topic(fleet.prefix, state.site, state.device_id, "model/state")
    _publish(fleet, topic, state.to_json(), retain=retain)


def test_deploying_a_release_a_kiosk_rolled_back_halts_with_why_not_a_timeout(
    fleet: Fleet, events: ModelEvents
) -> None:
    fleet.kiosk("k0", health_measurements=3)
    _all_online(fleet, events, 1)
    # self-test inputs say "fine"; this kiosk's measurements make the release say "coarse"
    unhealthy = fleet.release("1.1.0", weights=coarse_on_high_kime(), bias=(0, 0, -50))
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(unhealthy, [(fleet.site, "k0")], timeout_s=30)
        first = Rollout(fleet.repo, watcher, store, plan).run()
        again = Rollout(fleet.repo, watcher, store, replace(plan, timeout_s=20)).run()
    finally:
        watcher.close()
        store.close()
    assert "k0 rolled_back" in first.reason
    assert again.state == "halted"
    assert "k0 rejected: rejected on this kiosk before" in again.reason  # at once, not in 20 s


def test_a_refusal_retained_from_a_kiosk_clock_ahead_does_not_halt_the_next_rollout(
    fleet: Fleet, events: ModelEvents
) -> None:
    # An earlier refusal naming no rollout (refused before the assignment was read), retained
    # by a kiosk whose clock ran a day ahead: its time lies after the next rollout's start, so
    # that rollout halted at once with "k0 rejected", before k0 could read its assignment.
    fleet.kiosk("k0")
    _all_online(fleet, events, 1)
    _say(fleet, payloads.ModelState(device_id="k0", site=fleet.site, state="rejected",
                                    at=payloads.utc_now() + timedelta(days=1),
                                    reason="targets metadata expired"), retain=True)
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        assert watcher.devices()[(fleet.site, "k0")].state.reason == "targets metadata expired"
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k0")], timeout_s=30)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "complete", outcome.reason
    assert fleet.daemons["k0"].classifier.version == "1.1.0"


def test_a_rollout_stopped_by_an_error_is_recorded_interrupted_with_why(fleet: Fleet) -> None:
    """It stayed 'running' in the store (and in models status) until the next deploy."""
    manifest = fleet.release("1.1.0")
    (fleet.repo.keys_dir / "fleet").rename(fleet.tmp / "fleet-keys-offline")
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(manifest, [(fleet.site, "k1")], canaries=1, timeout_s=5)
        with pytest.raises(RepositoryError, match="role 'fleet'"):
            Rollout(fleet.repo, watcher, store, plan).run()
        rows = store.query("SELECT state, reason FROM rollouts", [])
    finally:
        watcher.close()
        store.close()
    assert len(rows) == 1
    state, reason = rows[0]
    assert state == "interrupted"
    assert reason.startswith("its deploy stopped: RepositoryError: ")
    assert "0 private key(s) of role 'fleet' here" in reason


def test_deploy_all_does_not_wait_for_a_kiosk_offline_at_its_wave_s_start(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kiosk switched off held its wave for the whole --timeout-s, then halted the rollout
    as a timeout; it is assigned all the same, named, and installs when it is back."""
    for name in ("k0", "k1", "k2"):
        fleet.kiosk(name)
    _all_online(fleet, events, 3)
    switched_off = fleet.threads[-1]
    fleet.daemons["k2"].request_stop()
    switched_off.join(30)
    watcher = _watcher(fleet)
    try:  # its retained status says so before the deploy looks
        assert events.wait_until(lambda: _status_of(watcher, fleet, "k2") == "offline", 20)
    finally:
        watcher.close()
    fleet.release("1.1.0")
    monkeypatch.chdir(fleet.tmp)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    common = ["--repo", str(fleet.repo.dir), "--store", f"sqlite:///{fleet.tmp / 's.sqlite3'}"]
    with caplog.at_level(logging.INFO, logger=rollout_module.__name__):
        code = main(["models", "deploy", "skin-texture-grade", "1.1.0", "--all", "--canary",
                     "1", "--timeout-s", "20", *common])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (f"complete: 2 device(s) installed skin-texture-grade 1.1.0 and are healthy; 1 "
            f"offline, assigned, not awaited (they install when they are back): "
            f"{fleet.site}/k2") in out
    assert f"offline, assigned, not awaited: {fleet.site}/k2" in caplog.text  # in its wave
    assert f"canary of skin-texture-grade 1.1.0 to 1 device(s): {fleet.site}/k0;" in caplog.text
    assert assignments(fleet.repo)[(fleet.site, "k2")].version == "1.1.0"
    assert main(["models", "status", "--json", *common]) == 0
    rows = {r["device_id"]: r for r in json.loads(capsys.readouterr().out)["devices"]}
    assert (rows["k2"]["running"], rows["k2"]["targeted"], rows["k2"]["rollout_reason"]) == (
        "1.0.0", "skin-texture-grade 1.1.0", "offline, assigned, not awaited")
    fleet.kiosk("k2")  # back: it installs its assignment and reports it
    assert events.wait_until(lambda: fleet.daemons["k2"].classifier.version == "1.1.0", 60)
    assert events.wait_until(lambda: _state_of(events, "k2") == "installed", 30)
    assert main(["models", "status", "--json", *common]) == 0
    rows = {r["device_id"]: r for r in json.loads(capsys.readouterr().out)["devices"]}
    assert [rows[n]["running"] for n in ("k0", "k1", "k2")] == ["1.1.0"] * 3


def test_a_canary_offline_is_still_awaited_and_halts_the_rollout(fleet: Fleet) -> None:
    """Only waves after the canaries skip kiosks offline: a release no kiosk installed goes
    no further, and the halt withdraws every assignment it made."""
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "gone"), (fleet.site, "off")],
                           canaries=1, timeout_s=2, await_offline=False)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "halted"
    assert f"{fleet.site}/gone timeout" in outcome.reason
    assert assignments(fleet.repo) == {}


def test_a_halt_withdraws_the_assignment_of_a_kiosk_not_awaited_too(fleet: Fleet) -> None:
    """A kiosk offline in a wave that halts must not install the halted release when back."""
    online = payloads.Status(device_id="mute", site=fleet.site, state="online",
                             at=payloads.utc_now())  # online, and never answers
    _publish(fleet, device_topic(fleet.prefix, fleet.site, "mute", "status"), online.to_json())
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        assert _status_of(watcher, fleet, "mute") == "online"
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "mute"), (fleet.site, "off")],
                           canaries=0, timeout_s=2, await_offline=False)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
        rows = dict(store.query("SELECT device_id, state FROM rollout_devices", []))
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "halted"
    assert f"{fleet.site}/mute timeout" in outcome.reason
    assert outcome.not_awaited == ((fleet.site, "off"),)
    assert assignments(fleet.repo) == {}
    assert rows == {"mute": "timeout", "off": "withdrawn"}


def test_a_wave_of_kiosks_all_offline_says_it_waits_for_none(
    fleet: Fleet, caplog: pytest.LogCaptureFixture,
) -> None:
    """Its log line read "wave 1 of M to 0 device(s): ; waiting up to 2 s for each to report
    it installed and healthy; 2 offline, assigned, not awaited: ..."."""
    watcher, store = _watcher(fleet), _store(fleet.tmp)
    try:
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "off1"), (fleet.site, "off2")],
                           canaries=0, timeout_s=2, await_offline=False)
        with caplog.at_level(logging.INFO, logger=rollout_module.__name__):
            outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "complete"
    waves = [r.getMessage() for r in caplog.records if ": wave " in r.getMessage()]
    assert len(waves) == 1
    assert waves[0].endswith(
        "wave 1 of skin-texture-grade 1.1.0: no device to wait for; 2 offline, assigned, not "
        f"awaited: {fleet.site}/off1, {fleet.site}/off2")


def _publish(fleet: Fleet, topic: str, body: bytes, *, retain: bool = True) -> None:
    """Publish on the fleet's broker as a kiosk would."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(fleet.broker.host, fleet.broker.port)
    client.loop_start()
    try:
        client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _status_of(watcher: FleetWatcher, fleet: Fleet, device_id: str) -> str | None:
    view = watcher.devices().get((fleet.site, device_id))
    return view.status.state if view is not None and view.status is not None else None


def _state_of(events: ModelEvents, device_id: str) -> str | None:
    state = events.last_state(device_id)
    return state.state if state is not None else None


@pytest.mark.postgres
def test_a_kiosk_report_holding_a_nul_is_ignored_not_a_deploy_stopped_on_postgresql(
    fleet: Fleet, caplog: pytest.LogCaptureFixture,
) -> None:
    """A kiosk (broken, or its password's holder) answers its notice with a refusal whose
    reason holds a NUL (JSON's \\u0000): PostgreSQL's text refuses it, so recording it stopped
    the deploy with psycopg's DataError, said as the store failing, before it could halt and
    withdraw the assignment; every deploy to that kiosk stopped so while the report stayed
    retained. The report is ignored now (logged, as the ingest dead-letters such results):
    the canary is awaited, times out, and the rollout halts as any unanswered one does."""
    manifest = fleet.release("1.1.0")
    prefix, site = fleet.prefix, fleet.site
    kiosk = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def answer(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        rollout_id = json.loads(message.payload)["rollout"]
        state = {"schema": "appliance.model_state/1", "device_id": "k1", "site": site,
                 "state": "rejected", "at": datetime.now(UTC).isoformat(),
                 "model": {"name": manifest.name, "version": manifest.version},
                 "reason": "self-test failed\u0000", "rollout": rollout_id}
        client.publish(device_topic(prefix, site, "k1", "model/state"),
                       json.dumps(state).encode(), qos=1, retain=True)

    kiosk.on_message = answer
    kiosk.connect(fleet.broker.host, fleet.broker.port)
    kiosk.subscribe(device_topic(prefix, site, "k1", "model/update"), qos=1)
    kiosk.loop_start()
    schema = f"test_rollout_{uuid.uuid4().hex[:12]}"
    store = open_store(PG_URL, pg_schema=schema)
    watcher = _watcher(fleet)
    try:
        plan = RolloutPlan(manifest, [(site, "k1")], canaries=1, timeout_s=3)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
        rows = store.query("SELECT state, reason FROM rollout_devices", [])
    finally:
        watcher.close()
        kiosk.publish(device_topic(prefix, site, "k1", "model/state"), b"", qos=1,
                      retain=True).wait_for_publish(5)
        kiosk.loop_stop()
        kiosk.disconnect()
        store.drop_postgres_schema(schema)
        store.close()
    assert outcome.state == "halted"
    assert rows == [("timeout", rows[0][1])]
    assert "a string holds a NUL character" in caplog.text
    assert (site, "k1") not in assignments(fleet.repo)
