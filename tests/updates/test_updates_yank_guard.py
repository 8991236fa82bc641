"""Withdrawing a release (`appliance models yank`) against the rest of the system: the rollout
lock it shares with deploy, rollback and halt; the model file set aside from what is served; its
reason; and what an attacker or a kiosk switched off meanwhile makes of it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_updates_halt import _broker_env, _mute_online, _rows
from updates_helpers import Fleet, wait_installed

from appliance.cli import main
from appliance.edge.testing import wait_until
from appliance.updates import fleetops, withdraw
from appliance.updates.defaults import FLEET
from appliance.updates.manifest import Withdrawal, model_target, withdrawn_target
from appliance.updates.operations import assignments, init_repository, withdrawals
from appliance.updates.repofiles import RepositoryError
from appliance.updates.testing import ModelEvents, linear_model
from appliance.updates.withdraw import withdraw_release

MODEL = "skin-texture-grade"


def _release(repo_dir: Path, version: str) -> Path:
    model = linear_model(repo_dir.parent / f"m-{version}.onnx", version)
    assert main(["models", "release", str(model), "--repo", str(repo_dir), "--version",
                 version]) == 0
    return model


def _served(repo_dir: Path, version: str) -> list[Path]:
    return sorted((repo_dir / "public" / "targets").rglob(f"*.{MODEL}-{version}.onnx"))


def test_a_yanked_model_file_is_no_longer_served_but_kept_aside_and_a_new_version_released(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The withdrawn file leaves public/ (anyone could fetch it there), kept in DIR/withdrawn/;
    the model rebuilt and released as 1.2.1 is served, and status still lists the withdrawal."""
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.1.0")
    model = _release(repo.dir, "1.2.0")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert len(_served(repo.dir, "1.2.0")) == 1
    capsys.readouterr()
    assert main(["models", "yank", MODEL, "--version", "1.2.0", "--repo", str(repo.dir),
                 "--reason", "grades dark skin coarse"]) == 0
    said = capsys.readouterr().out
    assert f"its model file is no longer served, kept in {repo.dir / 'withdrawn'}" in said
    assert _served(repo.dir, "1.2.0") == []  # on main it stayed
    kept = repo.dir / "withdrawn" / "models" / MODEL / "1.2.0" / f"{sha}.{MODEL}-1.2.0.onnx"
    assert kept.read_bytes() == model.read_bytes()
    assert withdrawals(repo)[(MODEL, "1.2.0")].sha256 == sha
    assert len(_served(repo.dir, "1.1.0")) == 1  # the older release is served on
    _release(repo.dir, "1.2.1")  # the model rebuilt as a new version
    assert len(_served(repo.dir, "1.2.1")) == 1
    assert model_target(MODEL, "1.2.1") in repo.targets().targets
    capsys.readouterr()
    assert main(["models", "status", "--repo", str(repo.dir), "--store",
                 f"sqlite:///{tmp_path / 'none.db'}", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(w["version"], w["reason"]) for w in shown["withdrawn"]] == [
        ("1.2.0", "grades dark skin coarse")]


def test_a_yank_stopped_before_it_set_the_file_aside_sets_it_aside_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    with monkeypatch.context() as patched:  # killed between the publish and the move
        patched.setattr(withdraw, "set_aside", lambda *_: None)
        withdraw_release(repo, MODEL, "1.2.0", "bad", "me@here")
    assert len(_served(repo.dir, "1.2.0")) == 1
    with pytest.raises(RepositoryError, match=r"nothing to do .*is set aside now"):
        withdraw_release(repo, MODEL, "1.2.0", "bad", "me@here")
    assert _served(repo.dir, "1.2.0") == []


@pytest.mark.parametrize(("reason", "said"), [
    ("x" * 10_000_000, "--reason is 10000000 characters long; the withdrawal record keeps at "
                       "most 1000"),
    ("ok\x1b[2J\x1b[Hall fine", "--reason holds a control or invisible character (\\x1b at "
                                "character 3)"),
    ("bad\nskin-texture-grade 1.3.0 withdrawn too", "(\\n at character 4)"),
    ("release \u202eesaeler", "(\\u202e at character 9)"),
])
def test_a_reason_too_long_or_with_control_characters_is_refused_before_anything_is_signed(
    tmp_path: Path, reason: str, said: str
) -> None:
    """On main a 10 MB reason was cut to its first 1,000 characters without a word, and a
    newline or an escape went into the signed record every kiosk's report repeats."""
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    before = repo.latest_version("targets")
    with pytest.raises(RepositoryError) as refused:
        withdraw_release(repo, MODEL, "1.2.0", reason, "me@here")
    assert said in str(refused.value)
    assert "nothing was signed" in str(refused.value)
    assert repo.latest_version("targets") == before
    assert len(_served(repo.dir, "1.2.0")) == 1


def test_a_deploy_whose_release_is_yanked_as_it_starts_assigns_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A yank that ends between deploy's first look at the release and its taking the rollout
    lock: on main the deploy went on to assign the withdrawn release."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", "9")  # no broker needed: refused before it
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    looked = fleetops.released

    def looked_then_yanked(*args: Any) -> Any:
        manifest = looked(*args)
        if not withdrawals(repo):
            withdraw_release(repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@here")
        return manifest

    monkeypatch.setattr(fleetops, "released", looked_then_yanked)
    capsys.readouterr()
    assert main(["models", "deploy", MODEL, "1.2.0", "--repo", str(repo.dir), "--devices", "k1",
                 "--store", f"sqlite:///{tmp_path / 'store.db'}"]) == 2
    err = capsys.readouterr().err
    assert f"{MODEL} 1.2.0 was withdrawn " in err, err
    assert "can be neither deployed nor rolled back to" in err
    assert assignments(repo) == {}


def test_a_deploy_or_rollback_is_refused_while_a_yank_holds_the_rollout_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.2.0")
    capsys.readouterr()
    with repo.rolling_out("yank"):
        for command in (["deploy", MODEL, "1.2.0", "--devices", "k1"],
                        ["rollback", MODEL, "--to", "1.2.0", "--all"]):
            assert main(["models", *command, "--repo", str(repo.dir), "--store",
                         f"sqlite:///{tmp_path / 'store.db'}"]) == 2
            err = capsys.readouterr().err
            assert f"(pid {os.getpid()}: `appliance models yank`)" in err, err
    assert assignments(repo) == {}


@pytest.mark.broker
@pytest.mark.slow
def test_a_yank_is_refused_while_a_deploy_assigns_the_release_and_done_once_it_is_halted(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A deploy of 1.1.0 (another process) waits on a kiosk that never answers. On main the
    yank withdrew 1.1.0 under it and the deploy went on waving it; now the yank is refused,
    naming the deploy and the halt to run first, and once that halt is done the yank is."""
    _broker_env(fleet, monkeypatch)
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    _mute_online(fleet)
    fleet.release("1.1.0")
    deploy = subprocess.Popen(
        [sys.executable, "-m", "appliance", "models", "deploy", MODEL, "1.1.0", "--repo",
         str(fleet.repo.dir), "--devices", "mute", "--canary", "1", "--timeout-s", "300",
         "--store", store_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert wait_until(lambda: ("mute", "assigned") in _rows(
            store_url, "SELECT device_id, state FROM rollout_devices"), 120, poll_s=0.2)
        capsys.readouterr()
        yank = ["models", "yank", MODEL, "--version", "1.1.0", "--repo", str(fleet.repo.dir),
                "--reason", "grades dark skin coarse"]
        assert main(yank) == 2
        err = capsys.readouterr().err
        assert f"(pid {deploy.pid}: `appliance models deploy`)" in err, err
        assert (f"halt it first (`appliance models halt {MODEL} --repo {fleet.repo.dir} "
                "--reason ...`), then yank again; nothing was signed") in err, err
        assert model_target(MODEL, "1.1.0") in fleet.repo.targets().targets
        assert main(["models", "halt", MODEL, "--repo", str(fleet.repo.dir), "--store",
                     store_url, "--reason", "to yank it"]) == 0
        deploy.communicate(timeout=60)
        assert main(yank) == 0
    finally:
        deploy.kill()
        deploy.wait()
    assert deploy.returncode == 1
    assert (MODEL, "1.1.0") in withdrawals(fleet.repo)
    assert (fleet.site, "mute") not in assignments(fleet.repo)


def _fetch(fleet: Fleet, path: str) -> int:
    try:
        with urllib.request.urlopen(f"{fleet.server.url}/targets/{path}", timeout=10) as got:
            return int(got.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _serving(fleet: Fleet, events: ModelEvents, release: Any, version: str) -> Any:
    """Kiosk k1, assigned ``release`` and told, once it reports ``version`` installed."""
    k1 = fleet.kiosk("k1")
    fleet.assign(release, ["k1"])
    k1.updater.notify()
    wait_installed(events, "k1", version)
    return k1


def _served_path(fleet: Fleet, version: str) -> str:
    """Where the update server serves the release's model file (under /targets/)."""
    listed = fleet.repo.targets().targets[model_target(MODEL, version)]
    return f"models/{MODEL}/{version}/{listed.hashes['sha256']}.{MODEL}-{version}.onnx"


@pytest.mark.broker
def test_a_withdrawal_signed_by_the_fleet_key_is_not_one(
    fleet: Fleet, events: ModelEvents
) -> None:
    """The fleet key (online, on the back office) signs a record of 1.1.0's withdrawal into its
    own role: kiosks look withdrawals up in the targets role only (the fleet role is delegated
    `devices/*/*` alone), so k1 keeps 1.1.0 and nothing lists it withdrawn."""
    k1 = _serving(fleet, events, fleet.release("1.1.0"), "1.1.0")
    listed = fleet.repo.targets().targets[model_target(MODEL, "1.1.0")]
    forged = Withdrawal(model=MODEL, version="1.1.0", sha256=listed.hashes["sha256"],
                        reason="forged", at="2026-12-06T00:00:00+00:00", by="thief@fleet")
    with fleet.repo.locked():
        fleet.repo.add_targets(FLEET, forged.signed_bytes(), [withdrawn_target(MODEL, "1.1.0")],
                               forged.model_dump(mode="json"))
        fleet.repo.publish()
    reports = len(events.states["k1"])
    checks = k1.updater.checks
    k1.updater.notify()
    assert events.wait_until(lambda: k1.updater.checks > checks, 20)
    assert len(events.states["k1"]) == reports  # nothing to say: it serves on
    assert k1.classifier is not None
    assert k1.classifier.version == "1.1.0"
    assert withdrawals(fleet.repo) == {}
    assert _fetch(fleet, _served_path(fleet, "1.1.0")) == 200


@pytest.mark.broker
def test_a_kiosk_switched_off_during_the_yank_goes_back_when_on_and_the_file_is_not_served(
    fleet: Fleet, events: ModelEvents
) -> None:
    fleet.release("1.1.0")
    k1 = _serving(fleet, events, fleet.release("1.2.0"), "1.2.0")
    served = _served_path(fleet, "1.2.0")
    assert _fetch(fleet, served) == 200
    k1.request_stop()
    fleet.threads[-1].join(10)
    withdraw_release(fleet.repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@backoffice")
    assert _fetch(fleet, served) == 404  # on main anyone could still fetch it
    again = fleet.kiosk("k1")
    assert events.wait_until(lambda: (s := events.last_state("k1")) is not None
                             and s.state == "rolled_back", 60), events.states.get("k1")
    state = events.last_state("k1")
    assert state is not None
    assert state.running is not None
    assert state.running.version == "1.1.0"
    assert "grades dark skin coarse" in (state.reason or "")
    assert again.classifier is not None
    assert again.classifier.version == "1.1.0"


@pytest.mark.broker
def test_the_rollback_yank_suggests_completes_for_a_kiosk_that_went_back_by_itself(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """k1 went back to 1.1.0 by itself at its first check after the yank (`rolled_back`); the
    operator then runs the `models rollback --to 1.1.0` that yank suggested. On main the kiosk,
    serving 1.1.0 already, reported nothing new, and the rollback waited out its timeout, halted
    (exit 1) and said "no device serves skin-texture-grade 1.1.0" while k1 served it."""
    _broker_env(fleet, monkeypatch)
    fleet.release("1.1.0")
    k1 = _serving(fleet, events, fleet.release("1.2.0"), "1.2.0")
    withdraw_release(fleet.repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@backoffice")
    k1.updater.notify()
    assert events.wait_until(lambda: (s := events.last_state("k1")) is not None
                             and s.state == "rolled_back", 30), events.states.get("k1")
    store_url = f"sqlite:///{fleet.tmp / 'rollouts.sqlite3'}"
    capsys.readouterr()
    assert main(["models", "rollback", MODEL, "--to", "1.1.0", "--repo", str(fleet.repo.dir),
                 "--timeout-s", "20", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert " complete: 1 device(s) installed skin-texture-grade 1.1.0" in out, out
    assert assignments(fleet.repo)[(fleet.site, "k1")].version == "1.1.0"
    assert k1.classifier is not None
    assert k1.classifier.version == "1.1.0"


def test_a_yank_of_a_version_never_released_says_there_is_nothing_to_withdraw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On main it said "... is not released ...; run `appliance models release` first": advice
    to release the very version the operator wants gone."""
    repo = init_repository(tmp_path / "repo")
    _release(repo.dir, "1.1.0")
    before = repo.latest_version("targets")
    capsys.readouterr()
    for name, version, released_ in ((MODEL, "1.3.0", "1.1.0"), ("no-such-model", "1.0.0",
                                                                  "none")):
        assert main(["models", "yank", name, "--version", version, "--repo", str(repo.dir)]) == 2
        err = capsys.readouterr().err
        assert (f"models yank: {name} {version} is not released in {repo.dir}, so there is "
                f"nothing to withdraw (released: {released_}; ") in err, err
        assert "nothing was signed" in err
        assert "run `appliance models release` first" not in err
    assert repo.latest_version("targets") == before


@pytest.mark.broker
def test_a_withdrawal_record_replayed_for_another_version_withdraws_nothing(
    fleet: Fleet, events: ModelEvents
) -> None:
    """1.2.0's real record listed (targets-signed) again as the withdrawal of 1.1.0, once as it
    is and once with its version changed: the first names another release than its path (the
    kiosk refuses it, `rejected`, naming both), the second another file than k1 serves (its
    SHA-256): k1 serves 1.1.0 on either way."""
    good = fleet.release("1.1.0")
    fleet.release("1.2.0")
    k1 = _serving(fleet, events, good, "1.1.0")
    real = withdraw_release(fleet.repo, MODEL, "1.2.0", "grades dark skin coarse", "ops@bo")
    for replayed, said in ((real, "the record names skin-texture-grade 1.2.0"),
                           (real.model_copy(update={"version": "1.1.0"}), None)):
        with fleet.repo.locked():
            fleet.repo.add_targets("targets", replayed.signed_bytes(),
                                   [withdrawn_target(MODEL, "1.1.0")],
                                   replayed.model_dump(mode="json"))
            fleet.repo.publish()
        reports = len(events.states["k1"])
        checks = k1.updater.checks
        k1.updater.notify()
        assert events.wait_until(lambda: k1.updater.checks > checks, 20)  # noqa: B023
        if said is not None:
            assert events.wait_until(lambda: len(events.states["k1"]) > reports, 20)  # noqa: B023
            state = events.last_state("k1")
            assert state is not None
            assert state.state == "rejected"
            assert said in (state.reason or "")
        assert k1.classifier is not None
        assert k1.classifier.version == "1.1.0"


@pytest.mark.parametrize(("reason", "said"), [
    ("x" * 801, "--reason is 801 characters long; the halt record keeps at most 800"),
    ("stop\x1b[2J\x1b[Hall fine", "--reason holds a control or invisible character (\\x1b at "
                                  "character 5)"),
    ("bad\nrollout 7 completed", "(\\n at character 4)"),
])
def test_a_halt_reason_too_long_or_with_control_characters_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reason: str, said: str
) -> None:
    """`models halt --reason` is checked as yank's is, before the store or a rollout is looked
    at: on main a long one was cut at 1,000 characters of the record without a word and a
    newline or an escape went into the reason every kiosk's row and `models status` show."""
    repo = init_repository(tmp_path / "repo")
    capsys.readouterr()
    assert main(["models", "halt", MODEL, "--repo", str(repo.dir), "--store",
                 f"sqlite:///{tmp_path / 'rollouts.sqlite3'}", "--reason", reason]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert "nothing was halted" in err
    assert not (tmp_path / "rollouts.sqlite3").exists()
