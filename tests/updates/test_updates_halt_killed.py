"""`appliance models halt` of a rollout whose deploy is gone takes the last look a running
deploy's halt takes: a kiosk that installed the release after its deploy stopped keeps it."""

from __future__ import annotations

import json
from contextlib import closing

import pytest
from updates_helpers import Fleet

from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.transport.broker import free_port
from appliance.updates.fleetwatch import DeviceView
from appliance.updates.operations import assignments
from appliance.updates.rollout import Rollout, RolloutPlan
from appliance.updates.testing import ModelEvents

pytestmark = pytest.mark.broker

MODEL = "skin-texture-grade"


class _Stopped(BaseException):
    """The deploy stopped (killed) once its wave was signed."""


class _GoneAtFirstLook:
    """The deploy's view of the fleet, gone (the deploy with it) at its first look."""

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        """No kiosk is told: each finds its assignment at its own check."""

    def devices(self) -> dict[tuple[str, str], DeviceView]:
        raise _Stopped


def _broker_env(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fleet.tmp)  # no config.yaml: the broker from APPLIANCE__
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)


def _installed(events: ModelEvents, device_id: str, version: str) -> bool:
    state = events.last_state(device_id)
    return (state is not None and state.state == "installed" and state.healthy is True
            and state.running is not None and state.running.version == version)


@pytest.mark.parametrize("before", ["deploy", "rollback"])
def test_a_kiosk_that_installed_after_its_deploy_stopped_keeps_the_release(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], before: str,
) -> None:
    """k1 and k2, assigned 1.0.0 (by a deploy, or a signed rollback), were the wave of 1.1.0
    whose deploy stopped once it was signed; k1, switched on after that, installed 1.1.0,
    healthy. The halt put back 1.0.0 all the same and recorded k1 `withdrawn` ("put back its
    assignment from before"), its install never recorded and its signed 1.1.0 gone: k1 refused
    1.0.0 (a downgrade; status: targeted 1.0.0, `rejected`) or, put back as a rollback, went
    back to it. A running deploy's halt looks first and keeps it: so does this one now."""
    _broker_env(fleet, monkeypatch)
    url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    fleet.assign(fleet.release("1.0.0"), ["k1", "k2"], decision=before)
    k1, k2 = (fleet.site, "k1"), (fleet.site, "k2")
    plan = RolloutPlan(fleet.release("1.1.0"), [k1, k2], canaries=0, timeout_s=30)
    with closing(open_store(url)) as store, pytest.raises(_Stopped):
        Rollout(fleet.repo, _GoneAtFirstLook(), store, plan).run()  # type: ignore[arg-type]
    signed = assignments(fleet.repo)
    assert {held.version for held in signed.values()} == {"1.1.0"}
    kiosk = fleet.kiosk("k1")  # k2 stays switched off
    assert events.wait_until(lambda: _installed(events, "k1", "1.1.0"), 60)
    capsys.readouterr()
    assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store", url]) == 0
    said = capsys.readouterr().out
    assert ("1 assignment(s) withdrawn, 1 of them put back to what they replaced, their "
            "kiosks told") in said, said
    assert (f"1 device(s) serve {MODEL} 1.1.0 and keep it (a halt takes no kiosk back; "
            f"`appliance models rollback` does): {fleet.site}/k1") in said, said
    now = assignments(fleet.repo)
    assert now[k1] == signed[k1]  # installed: kept
    assert now[k2].version == "1.0.0"  # put back
    with closing(open_store(url)) as store:
        rows = {device_id: (state, running) for device_id, state, running in store.query(
            "SELECT device_id, state, running_version FROM rollout_devices", [])}
    assert rows == {"k1": ("installed", "1.1.0"), "k2": ("withdrawn", None)}
    assert kiosk.updater is not None
    checked = kiosk.updater.checks
    kiosk.updater.notify()  # k1 looks at its assignment again
    assert events.wait_until(lambda: kiosk.updater is not None
                             and kiosk.updater.checks > checked, 30)
    assert kiosk.updater.serving.version == "1.1.0"
    assert main(["models", "status", "--repo", str(fleet.repo.dir), "--store", url,
                 "--json"]) == 0
    shown = {row["device_id"]: row for row in json.loads(capsys.readouterr().out)["devices"]}
    assert (shown["k1"]["running"], shown["k1"]["targeted"], shown["k1"]["state"]) == (
        "1.1.0", f"{MODEL} 1.1.0", "installed")
    assert (shown["k1"]["rollout_state"], shown["k1"]["rollout_device_state"]) == (
        "halted", "installed")
    assert main(["models", "status", "--repo", str(fleet.repo.dir), "--store", url]) == 0
    assert ("1 device(s) serve the release of their halted rollout and keep it (a halt takes no "
            f"kiosk back; `appliance models rollback` does): {fleet.site}/k1"
            ) in capsys.readouterr().out


def test_a_halt_of_a_stopped_deploy_tells_the_kiosks_it_puts_back_at_once(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """k2, assigned 1.0.5 and not told yet, was in the wave of 1.1.0 whose deploy stopped
    before it told anyone. The halt put 1.0.5 back, and k2 learnt of it only at its next check
    (`updates.check_interval_s`, an hour by default). It is told at once now, and installs it."""
    _broker_env(fleet, monkeypatch)
    url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    kiosk = fleet.kiosk("k2")
    assert events.wait_until(lambda: kiosk.updater is not None and kiosk.updater.checks >= 1,
                             60)
    fleet.assign(fleet.release("1.0.5"), ["k2"])
    plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k2")], canaries=0, timeout_s=30)
    with closing(open_store(url)) as store, pytest.raises(_Stopped):
        Rollout(fleet.repo, _GoneAtFirstLook(), store, plan).run()  # type: ignore[arg-type]
    assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store", url]) == 0
    assert events.wait_until(lambda: _installed(events, "k2", "1.0.5"), 30)


def test_a_halt_that_cannot_reach_the_broker_for_its_last_look_changes_nothing(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The last look needs the kiosks' reports: without the broker the halt is refused, naming
    it and where it came from, before anything is withdrawn; with it, it halts."""
    _broker_env(fleet, monkeypatch)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(free_port()))  # nothing listens there
    url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    plan = RolloutPlan(fleet.release("1.1.0"), [(fleet.site, "k1")], canaries=0, timeout_s=30)
    with closing(open_store(url)) as store, pytest.raises(_Stopped):
        Rollout(fleet.repo, _GoneAtFirstLook(), store, plan).run()  # type: ignore[arg-type]
    signed = assignments(fleet.repo)
    assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store", url]) == 2
    err = capsys.readouterr().err
    assert "models halt: broker 127.0.0.1:" in err, err
    assert "APPLIANCE__MQTT__PORT" in err
    assert "; nothing halted: the halt looks at the kiosks' reports first" in err
    assert assignments(fleet.repo) == signed
    with closing(open_store(url)) as store:
        assert [state for (state,) in store.query("SELECT state FROM rollouts", [])] == [
            "interrupted"]
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))  # the broker's own
    assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store", url]) == 0
    assert assignments(fleet.repo) == {}  # k1 never installed it: withdrawn
