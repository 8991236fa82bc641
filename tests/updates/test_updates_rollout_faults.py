"""Rollouts on the operator's worst day: kiosks switched off, a rollback while some are away."""

from __future__ import annotations

import json
import logging
import queue
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from store_helpers import BACKENDS, fresh_store
from updates_helpers import Fleet, unmarked

from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.config import MqttConfig, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.transport import payloads
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import new_client, settings_from_config
from appliance.transport.subscriber import Subscriber
from appliance.transport.topics import device_topic
from appliance.updates import rollout as rollout_module
from appliance.updates.fleetdevices import fleet_status
from appliance.updates.fleetwatch import FleetWatcher
from appliance.updates.operations import assignments, released
from appliance.updates.rollout import Rollout, RolloutOutcome, RolloutPlan
from appliance.updates.testing import ModelEvents

pytestmark = pytest.mark.broker


def _watcher(fleet: Fleet) -> FleetWatcher:
    mqtt = {"host": fleet.broker.host, "port": fleet.broker.port, "topic_prefix": fleet.prefix}
    config = config_from_mapping({"mqtt": mqtt}, "test", environ={})
    return FleetWatcher(config.mqtt, f"w-{fleet.prefix[-20:]}")


def _online(fleet: Fleet, events: ModelEvents, names: list[str]) -> None:
    for name in names:
        fleet.kiosk(name)
    assert events.wait_until(
        lambda: all(d.updater.checks >= 1 for d in fleet.daemons.values())
        and all(events.versions[n] for n in names), 60)


def _switch_off(fleet: Fleet, events: ModelEvents, name: str) -> None:
    """Stop a kiosk cleanly and wait until its retained status says offline."""
    index = list(fleet.daemons).index(name)
    fleet.daemons[name].request_stop()
    fleet.threads[index].join(30)
    watcher = _watcher(fleet)
    try:
        assert events.wait_until(lambda: _status_of(watcher, fleet, name) == "offline", 20)
    finally:
        watcher.close()


def _status_of(watcher: FleetWatcher, fleet: Fleet, name: str) -> str | None:
    view = watcher.devices().get((fleet.site, name))
    return view.status.state if view is not None and view.status is not None else None


def _status(fleet: Fleet, store: str, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    assert main(["models", "status", "--json", "--repo", str(fleet.repo.dir),
                 "--store", store]) == 0
    return {r["device_id"]: r for r in json.loads(capsys.readouterr().out)["devices"]}


def test_a_rollback_of_the_assigned_kiosks_does_not_wait_for_one_switched_off(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """`models rollback NAME --to V` (the devices assigned NAME) waited for a kiosk switched
    off as --devices does: its wave timed out, the rollback halted, the waves after it never
    went back, and the halt withdrew the switched-off kiosk's rollback: back, it kept the
    release the operator was rolling back. It waits as --all does now."""
    names = ["k0", "k1", "k2"]
    _online(fleet, events, names)
    fleet.release("1.0.5")
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    watcher, opened = _watcher(fleet), open_store(store)
    try:
        plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, n) for n in names],
                           timeout_s=60)
        assert Rollout(fleet.repo, watcher, opened, plan).run().state == "complete"
    finally:
        watcher.close()
        opened.close()
    _switch_off(fleet, events, "k2")  # running the release about to be rolled back
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["models", "rollback", "skin-texture-grade", "--to", "1.0.5", "--wave", "2",
                 "--timeout-s", "30", "--repo", str(fleet.repo.dir), "--store", store])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"1 offline, assigned, not awaited (they install when they are back): " \
           f"{fleet.site}/k2" in out
    rolled_back = assignments(fleet.repo)
    assert {d: (a.version, a.decision) for d, a in rolled_back.items()} == {
        (fleet.site, n): ("1.0.5", "rollback") for n in names}
    rows = _status(fleet, store, capsys)
    assert (rows["k2"]["running"], rows["k2"]["targeted"], rows["k2"]["rollout_state"]) == (
        "1.1.0", "skin-texture-grade 1.0.5", "complete")
    fleet.kiosk("k2")  # back: it goes back to 1.0.5 as the others did
    assert events.wait_until(lambda: fleet.daemons["k2"].classifier.version == "1.0.5", 60)


def test_a_halt_puts_back_the_assignments_the_rollout_replaced(
    fleet: Fleet, events: ModelEvents, tmp_path: Path
) -> None:
    """A halt removed the assignment of each kiosk that had not installed: one switched off,
    assigned 1.0.5 by a complete rollout and waiting to install it when back, lost it to a
    later rollout that halted, and back, stayed on the model before 1.0.5; status showed
    nothing targeted for it, nor for a kiosk that runs 1.0.5 and refused the halted release.
    The halt now puts back what each of them was assigned before."""
    names = ["k0", "k1", "k2"]
    _online(fleet, events, names)
    _switch_off(fleet, events, "k2")
    watcher, store = _watcher(fleet), open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        good = RolloutPlan(fleet.release("1.0.5"), [(fleet.site, n) for n in names],
                           timeout_s=60, await_offline=False)
        first = Rollout(fleet.repo, watcher, store, good).run()
        assert first.not_awaited == ((fleet.site, "k2"),), first.reason
        before = assignments(fleet.repo)
        bad = RolloutPlan(fleet.release_failing_self_test("1.1.0"),
                          [(fleet.site, "k1"), (fleet.site, "k2")], canaries=0, timeout_s=60,
                          await_offline=False)
        halted = Rollout(fleet.repo, watcher, store, bad).run()
        withdrawn = store.query("SELECT reason FROM rollout_devices WHERE rollout_id = ? AND "
                                "device_id = 'k2'", [halted.rollout_id])
    finally:
        watcher.close()
        store.close()
    assert halted.state == "halted"
    assert f"{fleet.site}/k1 rejected: self-test failed" in halted.reason
    assert unmarked(assignments(fleet.repo)) == before  # as the complete rollout left them
    assert {a.rollout for a in before.values()} == {first.rollout_id}
    assert "put back its assignment from before" in withdrawn[0][0]
    fleet.kiosk("k2")  # back: it installs what the complete rollout assigned it
    assert events.wait_until(lambda: fleet.daemons["k2"].classifier.version == "1.0.5", 60)


def test_a_halt_withdraws_an_assignment_of_its_release_a_killed_deploy_made(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Put back, the killed deploy's assignment would keep the halted release assigned."""
    release = fleet.release("1.1.0")
    fleet.assign(release, ["gone"], rollout="killed000001")  # its deploy was killed
    watcher, store = _watcher(fleet), open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        plan = RolloutPlan(release, [(fleet.site, "gone")], timeout_s=2)
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "halted"
    assert assignments(fleet.repo) == {}


def test_a_halted_rollback_does_not_put_back_the_release_it_went_back_from(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A kiosk switched off that never installed the release rolled back from must not get it
    back from a rollback that halted."""
    fleet.release("1.0.5")
    fleet.assign(fleet.release("1.1.0"), ["gone"])  # a deploy's, not awaited
    watcher, store = _watcher(fleet), open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        plan = RolloutPlan(released(fleet.repo, "skin-texture-grade", "1.0.5"),
                           [(fleet.site, "gone")], canaries=0, timeout_s=2, decision="rollback")
        outcome = Rollout(fleet.repo, watcher, store, plan).run()
    finally:
        watcher.close()
        store.close()
    assert outcome.state == "halted"
    assert assignments(fleet.repo) == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_status_shows_the_newest_rollout_after_the_back_office_clock_was_set_back(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """A rollout's rows are stamped with the back office's clock and status took the newest
    stamp as the newest rollout: after the clock was set back an hour (NTP stepping a clock
    that ran ahead), status showed each device's rollout before, not the one just run."""
    release = fleet.release("1.1.0")
    watcher = _watcher(fleet)
    try:
        with fresh_store(backend, tmp_path, "test_rollout_clock", open_store) as store:
            plan = RolloutPlan(release, [(fleet.site, "gone")], timeout_s=1)
            Rollout(fleet.repo, watcher, store, plan).run()
            behind = SimpleNamespace(utc_now=lambda: payloads.utc_now() - timedelta(hours=1))
            monkeypatch.setattr(rollout_module, "payloads", behind)
            newest = Rollout(fleet.repo, watcher, store, plan).run()
            [row] = fleet_status(fleet.repo, watcher, store)
            listed = store.rollout_rows(2)
    finally:
        watcher.close()
    assert row["rollout"] == newest.rollout_id
    assert listed[0]["rollout_id"] == newest.rollout_id  # the console's list, newest first


def test_a_kiosk_switched_off_during_its_wave_is_not_awaited_either(
    fleet: Fleet, events: ModelEvents, tmp_path: Path
) -> None:
    """`deploy --all` does not wait for a kiosk switched off before its wave starts, but one
    switched off a moment after (a shop closing during the rollout) held the wave for the
    whole --timeout-s and halted the rollout as a timeout."""
    _online(fleet, events, ["k0", "k1"])
    fleet.kiosk("k2", health_measurements=10_000, health_window_s=3600)  # slow to say healthy
    assert events.wait_until(lambda: fleet.daemons["k2"].updater.checks >= 1, 60)
    watcher, store = _watcher(fleet), open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    ended: list[RolloutOutcome] = []
    plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, n) for n in ("k0", "k1", "k2")],
                       timeout_s=120, await_offline=False)
    running = threading.Thread(
        target=lambda: ended.append(Rollout(fleet.repo, watcher, store, plan).run()))
    running.start()
    try:
        assert events.wait_until(lambda: _last(events, "k2") == "installed", 60)
        _switch_off(fleet, events, "k2")  # during its health check, its wave waiting for it
        running.join(60)
    finally:
        running.join(120)
        watcher.close()
        store.close()
    assert ended, "the wave still waits for the kiosk switched off"
    assert ended[0].state == "complete", ended[0].reason
    assert ended[0].not_awaited == ((fleet.site, "k2"),)
    assert assignments(fleet.repo)[(fleet.site, "k2")].version == "1.1.0"


def test_a_refusal_naming_no_rollout_sent_while_the_broker_restarted_ends_the_wave(
    tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kiosk's refusal that names no rollout (refused before it read its assignment),
    sent while the deploy's client was away (the broker restarting), came to the deploy as
    a retained message on resubscribing and was taken for one from before the rollout: the
    wave waited for --timeout-s and halted as a timeout, without the kiosk's reason."""
    caplog.set_level(logging.INFO, logger=rollout_module.__name__)
    broker = PrivateBroker(workdir=tmp_path / "broker")
    broker.start()
    fleet = Fleet.start(tmp_path, broker, topic_prefix)
    config = MqttConfig(host=broker.host, port=broker.port, topic_prefix=topic_prefix)
    old = _refusal(fleet, "k9", "from a rollout before")  # another kiosk's, from before
    _publish_retained(config, old)
    notices: queue.Queue[bytes] = queue.Queue()
    kiosk_side = Subscriber(settings_from_config(config, f"{fleet.site}-k0"),
                            [(device_topic(topic_prefix, fleet.site, "k0", "model/update"), 1)],
                            lambda message: notices.put(bytes(message.payload)))
    kiosk_side.start()
    watcher, store = _watcher(fleet), open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    back = threading.Event()  # the deploy's client reconnects only once the refusal is there
    reconnect = watcher._link.client.reconnect  # noqa: SLF001 - the test holds its reconnect
    monkeypatch.setattr(watcher._link.client, "reconnect",  # noqa: SLF001
                        lambda: back.wait(60) and reconnect())
    ended: list[RolloutOutcome] = []
    plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k0")], timeout_s=90)
    running = threading.Thread(
        target=lambda: ended.append(Rollout(fleet.repo, watcher, store, plan).run()))
    try:
        running.start()
        notices.get(timeout=60)  # the rollout notified k0
        assert wait_until(lambda: "waiting up to" in caplog.text, 60)  # and heard its PUBACK
        broker.stop()
        assert wait_until(lambda: not watcher._link.client.is_connected(), 60)  # noqa: SLF001
        broker.start()
        refusal = _refusal(fleet, "k0", "targets metadata expired")
        _publish_retained(config, refusal)
        back.set()
        running.join(60)
    finally:
        back.set()
        running.join(120)
        kiosk_side.close()
        watcher.close()
        store.close()
        fleet.close()
        broker.close()
    assert ended, "the wave still waits for k0"
    assert ended[0].state == "halted"
    assert f"{fleet.site}/k0 rejected: targets metadata expired" in ended[0].reason
    stale = watcher.devices()[(fleet.site, "k9")]
    assert stale.state == old
    assert stale.state_heard_s is None  # replayed again on resubscribing: still old news


def _refusal(fleet: Fleet, name: str, reason: str) -> payloads.ModelState:
    return payloads.ModelState(device_id=name, site=fleet.site, state="rejected",
                               at=payloads.utc_now(), reason=reason)


def _publish_retained(config: MqttConfig, state: payloads.ModelState) -> None:
    """Retain ``state`` as its kiosk would, and wait for the broker's acknowledgement."""
    client = new_client(settings_from_config(config, f"say-{state.device_id}"))
    client.connect(config.host, config.port)
    client.loop_start()
    try:
        topic = device_topic(config.topic_prefix, state.site, state.device_id, "model/state")
        client.publish(topic, state.to_json(), qos=1, retain=True).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def _last(events: ModelEvents, name: str) -> str | None:
    state = events.last_state(name)
    return state.state if state is not None else None
