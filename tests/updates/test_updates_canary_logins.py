"""A canary's report forged by its stolen login: a rollout that asks for more canaries rests
on as many kiosks, says whose reports it rested on, and (--canary-results) halts where the
store's results of a canary contradict its report."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from updates_helpers import Fleet

from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.config import config_from_mapping
from appliance.synthetic import fleet as simulated
from appliance.transport import payloads
from appliance.transport.topics import device_topic
from appliance.updates.fleetwatch import FleetWatcher
from appliance.updates.manifest import ModelManifest
from appliance.updates.operations import assignments
from appliance.updates.rollout import Rollout, RolloutOutcome, RolloutPlan

pytestmark = pytest.mark.broker
MODEL = "skin-texture-grade"


def _publish(fleet: Fleet, topic: str, body: bytes) -> None:
    """Publish, retained, as a kiosk's login may."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(fleet.broker.host, fleet.broker.port)
    client.loop_start()
    try:
        client.publish(topic, body, qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _forge_installed(fleet: Fleet, device: str, release: ModelManifest, rollout: str) -> Any:
    """What k1's stolen login can publish while k1 is off: installed and healthy."""
    model = payloads.ModelInfo(name=release.name, version=release.version)
    state = payloads.ModelState(device_id=device, site=fleet.site, state="installed",
                                at=payloads.utc_now(), model=model, running=model,
                                healthy=True, reason="healthy (forged)", rollout=rollout)
    _publish(fleet, device_topic(fleet.prefix, fleet.site, device, "model/state"),
             state.to_json())
    return state.at


def _results(url: str, fleet: Fleet, device: str, version: str, after: Any, *,
             count: int) -> None:
    """``count`` results of ``device`` classified by ``version``, captured after ``after``,
    stored as the back-office ingest stores them: through a connection of its own, as the
    ingest's is (the rollout's store is in use on the rollout's thread meanwhile)."""
    rng = random.Random(5)
    rows = []
    for index in range(count):
        sample = simulated.sample_result(rng, fleet.site, device, index)
        assert sample.classification is not None
        result = sample.model_copy(update={
            "captured_at": after + timedelta(seconds=1 + index),
            "classification": sample.classification.model_copy(
                update={"model": MODEL, "version": version})})
        rows.append(result_row(result, "2026-12-06T00:00:00.000000Z", result.to_json().decode()))
    store = open_store(url)
    try:
        store.write_batch(Batch(results=rows), 100, 2**30)
    finally:
        store.close()


def _watcher(fleet: Fleet) -> FleetWatcher:
    mqtt_config = {"host": fleet.broker.host, "port": fleet.broker.port,
                   "topic_prefix": fleet.prefix}
    config = config_from_mapping({"mqtt": mqtt_config}, "test", environ={})
    return FleetWatcher(config.mqtt, f"w-{fleet.prefix[-20:]}")


def _rollout(fleet: Fleet, devices: list[str], stored_version: str | None) -> RolloutOutcome:
    """A rollout of 1.2.0 with k1 the canary and --canary-results 2, k1's report forged; the
    store holds 3 results of k1 since, classified by ``stored_version`` (None: none)."""
    release = fleet.release("1.2.0")
    watcher = _watcher(fleet)
    url = f"sqlite:///{fleet.tmp / 'backoffice.sqlite3'}"
    store = open_store(url)
    try:
        plan = RolloutPlan(release, [(fleet.site, d) for d in devices], canaries=1,
                           timeout_s=3, canary_results=2)
        rollout = Rollout(fleet.repo, watcher, store, plan)
        outcome: list[RolloutOutcome] = []
        running = threading.Thread(target=lambda: outcome.append(rollout.run()))
        running.start()
        at = _forge_installed(fleet, "k1", release, rollout.rollout_id)
        if stored_version is not None:
            _results(url, fleet, "k1", stored_version, at, count=3)
        running.join(30)
        assert outcome, "the rollout did not end"
        return outcome[0]
    finally:
        watcher.close()
        store.close()


def test_a_forged_canary_report_contradicted_by_its_stored_results_halts_before_any_wave(
    fleet: Fleet
) -> None:
    outcome = _rollout(fleet, ["k1", "k2"], "1.1.0")  # k1 really serves 1.1.0
    assert outcome.state == "halted"
    assert f"{fleet.site}/k1 unconfirmed" in outcome.reason
    assert "results of it captured since are classified 3 by skin-texture-grade 1.1.0" \
        in outcome.reason
    assert "it does not serve what its report says" in outcome.reason
    assert (fleet.site, "k2") not in assignments(fleet.repo)  # no wave was assigned


def test_a_forged_canary_report_with_no_results_of_it_in_the_store_halts(fleet: Fleet) -> None:
    outcome = _rollout(fleet, ["k1", "k2"], None)  # k1 is off
    assert outcome.state == "halted"
    assert "holds 0 of the 2 result(s) of it classified by it since" in outcome.reason
    assert (fleet.site, "k2") not in assignments(fleet.repo)


def test_a_complete_rollout_names_the_kiosks_whose_reports_it_rested_on(fleet: Fleet) -> None:
    outcome = _rollout(fleet, ["k1"], "1.2.0")
    assert outcome.state == "complete", outcome.reason
    assert (f"on the reports of 1 kiosk(s), each its own login: canaries {fleet.site}/k1 (each "
            "with at least 2 result(s) in the store classified by 1.2.0 since)") in outcome.reason


def test_more_canaries_than_the_rollout_has_kiosks_is_refused_before_anything_is_signed(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``--canary 2`` asked for two kiosks' reports: one device named twice was one canary
    awaited once (one login's report completed the rollout), and one device was all."""
    fleet.release("1.2.0")
    online = payloads.Status(device_id="k1", site=fleet.site, state="online",
                             at=payloads.utc_now())
    _publish(fleet, device_topic(fleet.prefix, fleet.site, "k1", "status"), online.to_json())
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    for devices, said in (("k1,k1", "name one device"),
                          (f"{fleet.site}/k1,k1", "name one device"),
                          ("k1", "--canary 2, and the rollout takes 1 device(s)")):
        code = main(["models", "deploy", MODEL, "1.2.0", "--repo", str(fleet.repo.dir),
                     "--devices", devices, "--canary", "2", "--timeout-s", "1",
                     "--store", store])
        assert code == 2, devices
        assert said in capsys.readouterr().err
    assert assignments(fleet.repo) == {}
