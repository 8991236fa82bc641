"""A halted rollout takes no kiosk back: one that serves the release (still in its health
check, installed after its wave gave up on it, or after the halt's last look) keeps it, the
others get their older assignment back and are told at once; real kiosks on the shared broker,
the rollout recorded in SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from updates_helpers import Fleet, unmarked

from appliance.backoffice.store import Store, open_store
from appliance.config import config_from_mapping
from appliance.edge.testing import wait_until
from appliance.updates.fleetdevices import fleet_status
from appliance.updates.fleetwatch import DeviceView, FleetWatcher
from appliance.updates.halting import request_halt
from appliance.updates.manifest import Device
from appliance.updates.operations import assignments
from appliance.updates.rollout import Rollout, RolloutOutcome, RolloutPlan
from appliance.updates.testing import ModelEvents
from tests.store_helpers import BACKENDS, fresh_store

pytestmark = pytest.mark.broker

MODEL = "skin-texture-grade"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "halt_keeps", open_store) as opened:
        yield opened


@pytest.fixture
def watcher(fleet: Fleet) -> Iterator[FleetWatcher]:
    """The deploy's view of the fleet, on the fleet's broker."""
    mqtt = {"host": fleet.broker.host, "port": fleet.broker.port, "topic_prefix": fleet.prefix}
    opened = FleetWatcher(config_from_mapping({"mqtt": mqtt}, "test", environ={}).mqtt,
                          f"w-{fleet.prefix[-20:]}")
    yield opened
    opened.close()


class _Partly:
    """The fleet as the deploy sees it, but for ``lost``, whose notice is lost (it installs at
    its next check), and ``unheard``, whose model reports do not reach the deploy in time."""

    def __init__(self, watcher: FleetWatcher, lost: Device | None = None,
                 unheard: Device | None = None) -> None:
        self.watcher, self.lost, self.unheard = watcher, lost, unheard
        self.told: list[Device] = []

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        self.told.append((site, device_id))
        if (site, device_id) != self.lost or self.told.count((site, device_id)) > 1:
            self.watcher.notify(site, device_id, rollout_id)

    def devices(self) -> dict[Device, DeviceView]:
        views = self.watcher.devices()
        if self.unheard in views:
            views[self.unheard] = DeviceView(*self.unheard, status=views[self.unheard].status)
        return views


def _serves(events: ModelEvents, device_id: str, state: str, version: str,
            healthy: bool | None = None) -> bool:
    last = events.last_state(device_id)
    return (last is not None and last.state == state and last.healthy is healthy
            and last.model is not None and last.model.version == version)


def _checked(fleet: Fleet, *device_ids: str) -> bool:
    return all(fleet.daemons[d].updater is not None and fleet.daemons[d].updater.checks >= 1
               for d in device_ids)


def test_a_kiosk_in_its_health_check_keeps_the_release_and_the_others_are_told_at_once(
    fleet: Fleet, events: ModelEvents, watcher: FleetWatcher, store: Store,
) -> None:
    """k1 installed 1.1.0 and its health check still runs when the wave times out; k2 refused
    1.1.0 (not its device type). The halt put back the 1.0.5 both were assigned before: k1,
    once its check passed, refused it as a downgrade (undocumented), and k2 learnt of it only
    at its next check, an hour later by default. Now k1 keeps 1.1.0 and its assignment,
    recorded `kept`, and k2 is told at once and installs 1.0.5."""
    k1, k2 = (fleet.site, "k1"), (fleet.site, "k2")
    fleet.kiosk("k1", health_measurements=100_000, health_window_s=3600)
    fleet.kiosk("k2", device_type="other-kiosk")
    assert events.wait_until(lambda: _checked(fleet, "k1", "k2"), 60)
    fleet.assign(fleet.release("1.0.5", device_types=["skin-kiosk", "other-kiosk"]),
                 ["k1", "k2"])  # not looked at yet: no notice, no check due
    before = assignments(fleet.repo)
    plan = RolloutPlan(fleet.release("1.1.0"), [k1, k2], canaries=0, timeout_s=8)
    outcome = Rollout(fleet.repo, watcher, store, plan).run()
    assert outcome.state == "halted", outcome.reason
    assert outcome.outcomes[k1][0] == "kept", outcome.outcomes
    assert outcome.outcomes[k2][0] == "rejected", outcome.outcomes
    assert outcome.serving() == [k1]
    now = assignments(fleet.repo)
    assert now[k1].version == "1.1.0"  # kept, not put back
    assert unmarked(now)[k2] == before[k2]  # put back
    assert events.wait_until(lambda: _serves(events, "k2", "installed", "1.0.5", True), 30)
    assert fleet.daemons["k1"].classifier is not None
    assert fleet.daemons["k1"].classifier.version == "1.1.0"
    [(state, reason)] = store.query("SELECT state, reason FROM rollout_devices WHERE device_id "
                                    "= 'k1'", [])
    assert state == "kept"
    assert reason.startswith("serving it, its health check still running as the rollout "
                             "halted: keeps skin-texture-grade 1.1.0"), reason
    shown = {row["device_id"]: row for row in fleet_status(fleet.repo, watcher, store)}
    assert (shown["k1"]["rollout_state"], shown["k1"]["rollout_device_state"]) == (
        "halted", "kept")


def _run(rollout: Rollout, ended: list[RolloutOutcome]) -> threading.Thread:
    thread = threading.Thread(target=lambda: ended.append(rollout.run()), daemon=True)
    thread.start()
    return thread


def test_a_kiosk_that_installed_after_its_wave_timed_out_keeps_the_release_through_a_halt(
    fleet: Fleet, events: ModelEvents, watcher: FleetWatcher, store: Store,
) -> None:
    """k1's notice was lost: its wave timed out (allowed: --max-failures 1) and the next wave
    waited for mute; k1 then installed 1.1.0 at its own check, healthy, and the operator
    halted. The halt kept k1's `timeout` record and put back the 1.0.5 it had before, which k1
    refused as a downgrade. Now k1 keeps the release, recorded `kept`."""
    k1, mute = (fleet.site, "k1"), (fleet.site, "mute")
    kiosk = fleet.kiosk("k1")
    assert events.wait_until(lambda: _checked(fleet, "k1"), 60)
    fleet.assign(fleet.release("1.0.5"), ["k1", "mute"])
    before = assignments(fleet.repo)
    plan = RolloutPlan(fleet.release("1.1.0"), [k1, mute], canaries=0, wave_size=1,
                       timeout_s=10, max_failures=1)
    rollout = Rollout(fleet.repo, _Partly(watcher, lost=k1), store, plan)
    ended: list[RolloutOutcome] = []
    thread = _run(rollout, ended)
    assert wait_until(lambda: rollout.outcomes.get(k1, ("",))[0] == "timeout", 60)
    assert kiosk.updater is not None
    kiosk.updater.notify()  # its own check, after its wave gave up on it
    assert events.wait_until(lambda: _serves(events, "k1", "installed", "1.1.0", True), 30)
    request_halt(fleet.repo, rollout.rollout_id, "halted by the operator")
    thread.join(60)
    [outcome] = ended
    assert outcome.state == "halted"
    assert outcome.outcomes[k1][0] == "kept", outcome.outcomes
    now = assignments(fleet.repo)
    assert now[k1].version == "1.1.0"  # kept, not put back
    assert unmarked(now)[mute] == before[mute]  # put back
    assert dict(store.query("SELECT device_id, state FROM rollout_devices", [])) == {
        "k1": "kept", "mute": "halted"}
    checked = kiosk.updater.checks
    kiosk.updater.notify()
    assert events.wait_until(lambda: kiosk.updater is not None
                             and kiosk.updater.checks > checked, 30)
    assert _serves(events, "k1", "installed", "1.1.0", True)  # nothing refused


def test_a_kiosk_that_installs_after_the_halt_s_last_look_keeps_the_release(
    fleet: Fleet, events: ModelEvents, watcher: FleetWatcher, store: Store,
) -> None:
    """k1 installed 1.1.0, healthy, but its reports had not reached the deploy when the wave
    timed out and the halt took its last look: the halt put back k1's assignment from before,
    a signed rollback to 1.0.5, and k1 carried it out, a downgrade no operator asked for. The
    assignment put back names the halted release now: k1, serving it, keeps it and says so
    once, retained, which status shows."""
    k1 = (fleet.site, "k1")
    kiosk = fleet.kiosk("k1")
    assert events.wait_until(lambda: _checked(fleet, "k1"), 60)
    fleet.assign(fleet.release("1.0.5"), ["k1"], decision="rollback")
    plan = RolloutPlan(fleet.release("1.1.0"), [k1], canaries=0, timeout_s=6)
    outcome = Rollout(fleet.repo, _Partly(watcher, unheard=k1), store, plan).run()
    assert outcome.state == "halted"
    assert outcome.outcomes[k1][0] == "timeout"  # it did not hear k1
    put_back = assignments(fleet.repo)[k1]
    assert (put_back.version, put_back.decision) == ("1.0.5", "rollback")
    assert kiosk.updater is not None
    kiosk.updater.notify()  # its next check, if the halt's notice did not come first
    assert events.wait_until(lambda: _serves(events, "k1", "rejected", "1.0.5")
                             or _serves(events, "k1", "installed", "1.0.5", True), 30)
    assert kiosk.classifier is not None
    assert kiosk.classifier.version == "1.1.0"  # not taken back to 1.0.5
    state = events.last_state("k1")
    assert state is not None
    assert state.state == "rejected"
    assert state.reason is not None
    assert state.reason.startswith("keeps skin-texture-grade 1.1.0: the assignment of "
                                   f"skin-texture-grade 1.0.5 was put back by the halt of "
                                   f"rollout {outcome.rollout_id}"), state.reason
    checked = kiosk.updater.checks
    for more in (1, 2):  # as every check_interval_s does: said once
        kiosk.updater.notify()
        assert events.wait_until(lambda n=more: kiosk.updater is not None
                                 and kiosk.updater.checks >= checked + n, 30)
    refusals = [s for s in events.states["k1"] if s.state == "rejected"]
    assert len(refusals) == 1
    [row] = [row for row in fleet_status(fleet.repo, watcher, store) if row["device_id"] == "k1"]
    assert (row["running"], row["targeted"], row["state"]) == (
        "1.1.0", f"{MODEL} 1.0.5", "rejected")
    assert row["reason"] == state.reason
