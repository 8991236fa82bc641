"""`appliance models halt`: a running deploy (another process) halts at an operator's word; a
rollout whose deploy was killed is halted directly; nothing running is refused."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from updates_helpers import Fleet, unmarked

from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.edge.testing import wait_until
from appliance.transport import payloads
from appliance.transport.topics import device_topic
from appliance.updates.manifest import Assignment
from appliance.updates.operations import assignments
from appliance.updates.testing import ModelEvents

pytestmark = pytest.mark.broker

MODEL = "skin-texture-grade"


def _broker_env(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fleet.tmp)  # no config.yaml: the broker from APPLIANCE__
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", fleet.broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(fleet.broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", fleet.prefix)


def _rows(store_url: str, sql: str) -> list[Any]:
    """Read the deploy's store without taking part in it (read-only; none yet: no rows)."""
    path = Path(store_url.removeprefix("sqlite:///"))
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # its tables not made yet
            return []


def _mute_online(fleet: Fleet) -> None:
    """A kiosk online that never answers: a wave waiting for it lasts its whole timeout."""
    online = payloads.Status(device_id="mute", site=fleet.site, state="online",
                             at=payloads.utc_now())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(fleet.broker.host, fleet.broker.port)
    client.loop_start()
    try:  # retained, as a kiosk's status is
        client.publish(device_topic(fleet.prefix, fleet.site, "mute", "status"),
                       online.to_json(), qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _deploy_waiting_on_mute(
    fleet: Fleet, events: ModelEvents, store_url: str
) -> tuple[subprocess.Popen[bytes], Assignment]:
    """A deploy of 1.1.0 (another process) whose canary k0, a real kiosk, installs it, then whose
    wave waits up to 300 s for "mute", online and never answering, assigned 1.0.0 before; the
    deploy and mute's assignment from before."""
    fleet.kiosk("k0")
    assert events.wait_until(lambda: fleet.daemons["k0"].updater.checks >= 1, 60)
    _mute_online(fleet)
    fleet.assign(fleet.release("1.0.0"), ["mute"])
    [earlier] = assignments(fleet.repo, [(fleet.site, "mute")]).values()
    fleet.release("1.1.0")
    deploy = subprocess.Popen(
        [sys.executable, "-m", "appliance", "models", "deploy", MODEL, "1.1.0", "--repo",
         str(fleet.repo.dir), "--devices", "k0,mute", "--canary", "1", "--timeout-s", "300",
         "--store", store_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    return deploy, earlier


@pytest.mark.slow
def test_a_running_deploy_halts_when_told_from_another_process(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its canary installed, a wave waits (up to 300 s) for a kiosk that never answers; `models
    halt` from another process ends it now: the waiting kiosk gets back what it was assigned
    before, the canary keeps the release, the rollout is `halted` with who and why."""
    _broker_env(fleet, monkeypatch)
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    deploy, earlier = _deploy_waiting_on_mute(fleet, events, store_url)
    try:
        assert wait_until(lambda: ("mute", "assigned") in _rows(
            store_url, "SELECT device_id, state FROM rollout_devices"), 120, poll_s=0.2)
        capsys.readouterr()
        assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store",
                     store_url, "--reason", "bad release"]) == 0
        said = capsys.readouterr().out
        out, err = deploy.communicate(timeout=60)
    finally:
        deploy.kill()
        deploy.wait()
    assert deploy.returncode == 1, err
    assert "halted by " in said, said
    assert "bad release" in said, said
    assert "halted: halted by " in out.decode(), out
    assert "bad release" in out.decode(), out
    now = assignments(fleet.repo)
    assert unmarked(now)[(fleet.site, "mute")] == earlier  # put back
    assert now[(fleet.site, "k0")].version == "1.1.0"  # installed: kept
    assert not (fleet.repo.dir / ".rollout.halt").exists()  # the request is done with
    with closing(open_store(store_url)) as store:
        [(state, reason)] = store.query("SELECT state, reason FROM rollouts", [])
        devices = dict(store.query("SELECT device_id, state FROM rollout_devices", []))
    assert state == "halted"
    assert "`appliance models halt`): bad release" in reason
    assert devices == {"k0": "installed", "mute": "halted"}
    assert main(["models", "status", "--repo", str(fleet.repo.dir), "--store", store_url,
                 "--json"]) == 0
    shown = {row["device_id"]: row for row in json.loads(capsys.readouterr().out)["devices"]}
    assert shown["mute"]["rollout_state"] == "halted"
    assert "bad release" in shown["mute"]["rollout_reason"]


def test_a_killed_deploy_s_rollout_is_halted_directly_and_nothing_running_is_refused(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _broker_env(fleet, monkeypatch)
    release = fleet.release("1.1.0")
    rollout_id = fleet.assign(release, ["k1", "k2"])  # what a deploy killed mid-wave leaves
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    stamp = "2026-12-01T00:00:00.000000Z"
    with closing(open_store(store_url)) as store:
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(rollout_id, MODEL, "1.1.0", "deploy", "all", 1, "running", None, stamp,
                      stamp, fleet.repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(rollout_id, fleet.site, "k1", "canary", "installed", "healthy", "1.1.0",
                      stamp),
                     (rollout_id, fleet.site, "k2", "wave 1", "assigned", None, None, stamp)])
    halt = ["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store", store_url]
    assert main(halt) == 0
    assert "1 assignment(s) withdrawn" in capsys.readouterr().out
    assert list(assignments(fleet.repo)) == [(fleet.site, "k1")]  # k2 had not installed it
    with closing(open_store(store_url)) as store:
        [(state, reason)] = store.query("SELECT state, reason FROM rollouts", [])
        devices = dict(store.query("SELECT device_id, state FROM rollout_devices", []))
    assert state == "halted"
    assert reason.endswith("no reason given")
    assert devices == {"k1": "installed", "k2": "withdrawn"}
    assert main(halt) == 2  # halted already: nothing running
    assert "no rollout of skin-texture-grade is running" in capsys.readouterr().err


@pytest.mark.slow
def test_a_halt_after_the_deploy_was_killed_puts_back_what_its_wave_replaced(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The deploy killed (-9) while its wave waits: what the wave replaced lived only in its
    memory, so `models halt` withdrew mute's assignment and left it none, not the 1.0.0 it had.
    Now the wave's replaced assignments are in the store before it is signed, and put back."""
    _broker_env(fleet, monkeypatch)
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    deploy, earlier = _deploy_waiting_on_mute(fleet, events, store_url)
    try:
        assert wait_until(lambda: ("mute", "assigned") in _rows(
            store_url, "SELECT device_id, state FROM rollout_devices"), 120, poll_s=0.2)
        deploy.send_signal(signal.SIGKILL)
        assert deploy.wait(30) == -signal.SIGKILL
    finally:
        deploy.kill()
        deploy.communicate()
    assert assignments(fleet.repo)[(fleet.site, "mute")].version == "1.1.0"  # as the kill left it
    capsys.readouterr()
    assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store",
                 store_url]) == 0
    assert "no deploy was running it; 1 assignment(s) withdrawn" in capsys.readouterr().out
    now = assignments(fleet.repo)
    assert unmarked(now)[(fleet.site, "mute")] == earlier  # put back
    assert now[(fleet.site, "k0")].version == "1.1.0"  # installed: kept
    with closing(open_store(store_url)) as store:
        [(state,)] = store.query("SELECT state FROM rollouts", [])
        devices = dict(store.query("SELECT device_id, state FROM rollout_devices", []))
    assert state == "halted"
    assert devices == {"k0": "installed", "mute": "withdrawn"}


@pytest.mark.slow
def test_a_deploy_killed_after_the_halt_asked_it_is_halted_by_the_halt(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The deploy, stopped (SIGSTOP) while its wave waits, holds the rollout lock when the
    halt asks it, and is killed (-9) before it reads the request: the halt waited its 60 s,
    exit 1, the rollout left running and mute assigned the release. It halts it itself."""
    _broker_env(fleet, monkeypatch)
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    deploy, earlier = _deploy_waiting_on_mute(fleet, events, store_url)
    asked = fleet.repo.dir / ".rollout.halt"

    def kill_once_asked() -> None:
        if wait_until(asked.exists, 60, poll_s=0.05):
            deploy.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_once_asked)
    try:
        assert wait_until(lambda: ("mute", "assigned") in _rows(
            store_url, "SELECT device_id, state FROM rollout_devices"), 120, poll_s=0.2)
        deploy.send_signal(signal.SIGSTOP)  # holds the lock, reads no request
        killer.start()
        capsys.readouterr()
        assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store",
                     store_url]) == 0
        said = capsys.readouterr().out
    finally:
        deploy.kill()
        deploy.communicate()
        killer.join(60)
    assert deploy.returncode == -signal.SIGKILL
    assert "no deploy was running it; 1 assignment(s) withdrawn" in said, said
    now = assignments(fleet.repo)
    assert unmarked(now)[(fleet.site, "mute")] == earlier  # put back
    assert now[(fleet.site, "k0")].version == "1.1.0"  # installed: kept
    assert not asked.exists()
