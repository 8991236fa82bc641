"""Withdrawing a release (`appliance models yank`) against the rest of the system: the rollout
lock it shares with deploy, rollback and halt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_updates_halt import _broker_env, _mute_online, _rows
from updates_helpers import Fleet

from appliance.cli import main
from appliance.edge.testing import wait_until
from appliance.updates import fleetops
from appliance.updates.manifest import model_target
from appliance.updates.operations import assignments, init_repository, withdrawals
from appliance.updates.testing import ModelEvents, linear_model
from appliance.updates.withdraw import withdraw_release

MODEL = "skin-texture-grade"


def _release(repo_dir: Path, version: str) -> Path:
    model = linear_model(repo_dir.parent / f"m-{version}.onnx", version)
    assert main(["models", "release", str(model), "--repo", str(repo_dir), "--version",
                 version]) == 0
    return model


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
