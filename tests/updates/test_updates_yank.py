"""Withdrawing a release (`appliance models yank`): the repository's side, and kiosks through
the real updater."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import Fleet, inputs, wait_installed

from appliance.cli import main
from appliance.updates.install import ModelStore
from appliance.updates.manifest import model_target, withdrawn_target
from appliance.updates.operations import (
    assign,
    init_repository,
    release_model,
    released,
    withdrawals,
)
from appliance.updates.release import manifest_for
from appliance.updates.repofiles import RepositoryError
from appliance.updates.testing import ModelEvents, linear_model
from appliance.updates.withdraw import withdraw_release

MODEL = "skin-texture-grade"


def _release(repo_dir: Path, version: str) -> None:
    model = linear_model(repo_dir.parent / f"m-{version}.onnx", version)
    assert main(["models", "release", str(model), "--repo", str(repo_dir), "--version",
                 version]) == 0


def test_a_yanked_release_is_unlisted_and_can_be_neither_deployed_rolled_back_to_nor_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    repo = init_repository(tmp_path / "repo")
    for version in ("1.1.0", "1.2.0"):
        _release(repo.dir, version)
    assign(repo, [("lab", "k1")], released(repo, MODEL, "1.2.0"))
    capsys.readouterr()
    assert main(["models", "yank", MODEL, "--version", "1.2.0", "--repo", str(repo.dir),
                 "--reason", "grades dark skin coarse"]) == 0
    said = capsys.readouterr().out
    assert f"{MODEL} 1.2.0 withdrawn " in said
    assert "grades dark skin coarse" in said
    assert ("1 device(s) still assigned it (they go back to an older release at their next check): "
            "lab/k1; "
            f"to take them back now rather than at their next check: `appliance models rollback "
            f"{MODEL} --to 1.1.0 --repo {repo.dir}`") in said
    targets = repo.targets().targets
    assert model_target(MODEL, "1.2.0") not in targets  # kiosks find no release to install
    assert model_target(MODEL, "1.1.0") in targets
    record = withdrawals(repo)[(MODEL, "1.2.0")]
    assert record.reason == "grades dark skin coarse"
    assert targets[withdrawn_target(MODEL, "1.2.0")].custom == record.model_dump(mode="json")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    for command in (["deploy", MODEL, "1.2.0", "--devices", "k1"],
                    ["rollback", MODEL, "--to", "1.2.0", "--all"]):
        assert main(["models", *command, "--repo", str(repo.dir), "--store", store]) == 2
        refused = capsys.readouterr().err
        assert f"{MODEL} 1.2.0 was withdrawn " in refused
        assert "grades dark skin coarse" in refused
        assert "can be neither deployed nor rolled back to (released: 1.1.0)" in refused
    assert not (tmp_path / "store.db").exists()  # refused before anything was created
    # the same file released again (a rollback decision could then name it) is refused
    model = tmp_path / "m-1.2.0.onnx"
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.2.0"]) == 2
    assert "a withdrawn version is never released again" in capsys.readouterr().err
    assert main(["models", "yank", MODEL, "--version", "1.2.0", "--repo", str(repo.dir)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["models", "yank", MODEL, "--version", "9.9.9", "--repo", str(repo.dir)]) == 2
    assert "is not released" in capsys.readouterr().err
    assert released(repo, MODEL, "1.1.0").version == "1.1.0"


def test_yank_of_the_only_release_says_its_devices_go_back_to_their_model_before_not_older(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    assign(repo, [("lab", "k1"), ("lab", "k2")], released(repo, MODEL, "1.2.0"))
    capsys.readouterr()
    assert main(["models", "yank", MODEL, "--version", "1.2.0", "--repo", str(repo.dir)]) == 0
    said = capsys.readouterr().out
    assert ("2 device(s) still assigned it (no older release is signed: each goes back to the "
            "model it served before at its next check, and one with none keeps running it until "
            "another is deployed): lab/k1, lab/k2\n") in said
    assert "models rollback" not in said  # nothing to roll back to


def test_yank_without_the_targets_key_signs_nothing(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.2.0")
    release_model(repo, model, manifest_for(model, "1.2.0", inputs()))
    shutil.move(repo.keys_dir / "targets", tmp_path / "offline")
    before = repo.latest_version("targets")
    with pytest.raises(RepositoryError, match="bring the offline key"):
        withdraw_release(repo, MODEL, "1.2.0", "bad", "me@here")
    assert repo.latest_version("targets") == before
    assert model_target(MODEL, "1.2.0") in repo.targets().targets


def _last(events: ModelEvents, device: str) -> Any:
    state = events.last_state(device)
    assert state is not None
    return state


@pytest.fixture
def broker_env(mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models status` finds the test's broker and prefix by the APPLIANCE__ variables."""
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", mqtt_broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(mqtt_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)


@pytest.mark.broker
@pytest.mark.usefixtures("broker_env")
def test_a_kiosk_running_a_yanked_release_goes_back_and_none_installs_it_afterwards(
    fleet: Fleet, events: ModelEvents, capsys: pytest.CaptureFixture[str],
) -> None:
    """k1 serves 1.2.0 when it is withdrawn: it goes back to 1.1.0, the newest older release
    signed (not 1.0.5, not the newer 1.3.0, not its configured 1.0.0), downloaded and verified
    now, and says so; k2, assigned 1.2.0 but switched on only after, never installs it; a
    rollback decision signed by the (online) fleet key naming 1.2.0 is refused."""
    for version in ("1.0.5", "1.1.0"):
        fleet.release(version)
    bad = fleet.release("1.2.0")
    k1 = fleet.kiosk("k1")
    fleet.assign(bad, ["k1", "k2"])
    k1.updater.notify()
    wait_installed(events, "k1")
    fleet.release("1.3.0")
    withdraw_release(fleet.repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@backoffice")
    k1.updater.notify()
    assert events.wait_until(lambda: _last(events, "k1").state == "rolled_back", 30), \
        events.states.get("k1")
    state = _last(events, "k1")
    assert (state.model.version, state.running.version) == ("1.2.0", "1.1.0")
    assert "1.2.0 was withdrawn" in state.reason
    assert "grades dark skin coarse" in state.reason
    assert "went back to skin-texture-grade 1.1.0, the newest older release" in state.reason
    assert k1.classifier is not None
    assert k1.classifier.version == "1.1.0"
    installed = ModelStore(fleet.tmp / "k1").read()
    assert installed.current is not None
    assert installed.current.name.startswith(f"{MODEL}-1.1.0-")
    assert installed.previous is None  # nothing leads back to the withdrawn file
    reports = len(events.states["k1"])
    checks = k1.updater.checks
    k1.updater.notify()  # said once: the next check finds nothing to do
    assert events.wait_until(lambda: k1.updater.checks > checks, 20)
    assert len(events.states["k1"]) == reports

    _never_installed_by_a_kiosk_switched_on_after(fleet, events)
    fleet.assign(bad, ["k1"], decision="rollback")  # what a stolen fleet key could sign
    k1.updater.notify()
    assert events.wait_until(lambda: len(events.states["k1"]) > reports, 20)
    state = _last(events, "k1")
    assert state.state == "rejected"
    assert "1.2.0 was withdrawn" in state.reason
    assert k1.classifier.version == "1.1.0"
    _status_says_so(fleet, capsys)


def _never_installed_by_a_kiosk_switched_on_after(fleet: Fleet, events: ModelEvents) -> None:
    k2 = fleet.kiosk("k2")
    assert events.wait_until(lambda: events.last_state("k2") is not None, 30)
    state = _last(events, "k2")
    assert state.state == "rejected"
    assert state.model.version == "1.2.0"
    assert "1.2.0 was withdrawn" in state.reason
    assert "not installed, serving skin-texture-grade 1.0.0" in state.reason
    assert k2.classifier is not None
    assert k2.classifier.version == "1.0.0"


def _status_says_so(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{fleet.tmp / 'none.db'}"
    capsys.readouterr()
    assert main(["models", "status", "--repo", str(fleet.repo.dir), "--store", store,
                 "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(w["version"], w["reason"]) for w in shown["withdrawn"]] == [
        ("1.2.0", "grades dark skin coarse")]
    rows = {row["device_id"]: row for row in shown["devices"]}
    assert "grades dark skin coarse" in rows["k1"]["targeted_withdrawn"]
    assert rows["k1"]["running_withdrawn"] is None
    assert main(["models", "status", "--repo", str(fleet.repo.dir), "--store", store]) == 0
    table = capsys.readouterr().out
    assert f"{MODEL} 1.2.0 (withdrawn)" in table
    header = next(line for line in table.splitlines() if line.startswith("DEVICE"))
    k1 = next(line for line in table.splitlines() if line.startswith(f"{fleet.site}/k1 "))
    assert k1.index(" rejected ") + 1 == header.index("STATE")  # the columns kept in line
    assert "withdrawn: skin-texture-grade 1.2.0 (" in table
    assert "by ops@backoffice: grades dark skin coarse)" in table


@pytest.mark.broker
def test_a_kiosk_on_a_yanked_release_with_no_older_one_signed_goes_back_to_its_model_before(
    fleet: Fleet, events: ModelEvents
) -> None:
    bad = fleet.release("1.2.0")
    k1 = fleet.kiosk("k1")
    fleet.assign(bad, ["k1"])
    k1.updater.notify()
    wait_installed(events, "k1")
    withdraw_release(fleet.repo, MODEL, "1.2.0", "", "ops@backoffice")
    k1.updater.notify()
    assert events.wait_until(lambda: _last(events, "k1").state == "rolled_back", 30)
    state = _last(events, "k1")
    assert "no reason given" in state.reason
    assert "went back to skin-texture-grade 1.0.0, the model it served before" in state.reason
    assert k1.classifier is not None
    assert k1.classifier.version == "1.0.0"
    assert ModelStore(fleet.tmp / "k1").read().current == fleet.tmp / "initial.onnx"


@pytest.mark.broker
def test_a_rollback_signed_after_the_yank_is_installed_and_reported_as_its_rollout_awaits(
    fleet: Fleet, events: ModelEvents
) -> None:
    """What `models yank` suggests for kiosks assigned the release: `models rollback` to the
    one before. The kiosk serving the withdrawn release installs the rollback's release and
    reports it installed and healthy for that rollout (going back by itself, it said only
    `rolled_back`, about the withdrawn one, and the rollback waited out its timeout), with no
    way back to the withdrawn file."""
    older = fleet.release("1.1.0")
    bad = fleet.release("1.2.0")
    k1 = fleet.kiosk("k1")
    fleet.assign(bad, ["k1"])
    k1.updater.notify()
    wait_installed(events, "k1")
    withdraw_release(fleet.repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@backoffice")
    rollout = fleet.assign(older, ["k1"], decision="rollback")
    k1.updater.notify()
    assert events.wait_until(lambda: (s := events.last_state("k1")) is not None
                             and s.rollout == rollout and s.state == "installed"
                             and s.healthy is True, 30), events.states.get("k1")
    assert _last(events, "k1").model.version == "1.1.0"
    said = [s.reason or "" for s in events.states["k1"] if s.rollout == rollout]
    assert any("1.2.0 was withdrawn" in reason and "installed the release assigned instead"
               in reason for reason in said), said
    assert k1.classifier is not None
    assert k1.classifier.version == "1.1.0"
    assert ModelStore(fleet.tmp / "k1").read().previous is None


@pytest.mark.broker
@pytest.mark.usefixtures("broker_env")
def test_status_lists_a_withdrawn_release_where_no_device_reported_nor_any_release_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a repository whose one release was withdrawn before any kiosk reported: status said
    # "no releases yet" and nothing of the withdrawal (its list came after the device table)
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    assert main(["models", "yank", MODEL, "--version", "1.2.0", "--repo", str(repo.dir),
                 "--reason", "grades dark skin coarse"]) == 0
    capsys.readouterr()
    store = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["models", "status", "--repo", str(repo.dir), "--store", store]) == 0
    table = capsys.readouterr().out
    assert "no device has reported a model or been assigned one yet" in table
    assert f"withdrawn: {MODEL} 1.2.0 (" in table
    assert "grades dark skin coarse)" in table
    assert "no releases yet" not in table
    assert f"no release listed in {repo.dir}: every one was withdrawn (below)" in table
