"""`models halt` and a deploy ending at the same time: a halt request is never lost nor left
behind, and a halt that comes after the rollout ended says so and changes nothing."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import inputs, unmarked

from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store, open_store
from appliance.cli import main
from appliance.transport import payloads
from appliance.updates import fleetops
from appliance.updates.fleetwatch import DeviceView
from appliance.updates.manifest import Assignment, ModelManifest
from appliance.updates.operations import assign, assignments, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repository import FileRepository
from appliance.updates.rollout import Rollout, RolloutPlan
from appliance.updates.rolloutrecords import mark_interrupted
from appliance.updates.testing import linear_model

MODEL = "skin-texture-grade"
SITE = "lab"
STAMP = "2026-12-01T00:00:00.000000Z"
COMPLETE = "1 device(s) installed skin-texture-grade 1.1.0 and are healthy; 1 offline, assigned"


def _release(repo: FileRepository, tmp_path: Path, version: str) -> ModelManifest:
    model = linear_model(tmp_path / f"model-{version}.onnx", version)
    manifest = manifest_for(model, version, inputs())
    release_model(repo, model, manifest)
    return manifest


def _running_rollout(tmp_path: Path) -> tuple[FileRepository, str, dict[tuple[str, str],
                                                                         Assignment]]:
    """A rollout of 1.1.0 its deploy records ``running``: k1 installed it, k2 (offline, not
    awaited) is assigned it; the repository, the store's URL and the assignments."""
    repo = init_repository(tmp_path / "repo")
    rollout_id = assign(repo, [(SITE, "k1"), (SITE, "k2")], _release(repo, tmp_path, "1.1.0"))
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with closing(open_store(url)) as store:
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(rollout_id, MODEL, "1.1.0", "deploy", "all", 0, "running", None, STAMP,
                      STAMP, repo.identity())])
        store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(rollout_id, SITE, "k1", "wave 1", "installed", "healthy", "1.1.0", STAMP),
                     (rollout_id, SITE, "k2", "wave 1", "assigned",
                      "offline, assigned, not awaited", None, STAMP)])
    return repo, url, assignments(repo)


def _broker_env(monkeypatch: pytest.MonkeyPatch, folder: Path, broker: Any, prefix: str) -> None:
    """No config.yaml in ``folder``: the broker the halt looks at the fleet on from
    APPLIANCE__."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", prefix)


def _deploy_ends_at_the_look(monkeypatch: pytest.MonkeyPatch, url: str, held: bool) -> None:
    """The deploy records its rollout complete (and lets go of the lock unless ``held``)
    just as the halt looks at the lock."""
    def ended(_repo: FileRepository) -> bool:
        with closing(open_store(url)) as store:
            store.write("UPDATE rollouts SET state = 'complete', reason = ?", [(COMPLETE,)])
        return held

    monkeypatch.setattr(FileRepository, "rollout_held", ended)


@pytest.mark.parametrize("held", [False, True], ids=["let-go", "still-held"])
def test_a_halt_of_a_rollout_that_ends_as_the_halt_looks_says_so_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    held: bool,
) -> None:
    """Let go: the halt took the ended deploy for a killed one and halted the complete rollout
    itself (recorded `halted`, k2's assignment withdrawn, exit 0). Still held: its request
    stayed in the folder after the deploy had ended, and it said "ended complete before it
    halted", exit 1."""
    repo, url, before = _running_rollout(tmp_path)
    monkeypatch.chdir(tmp_path)
    _deploy_ends_at_the_look(monkeypatch, url, held)
    assert main(["models", "halt", MODEL, "--repo", str(repo.dir), "--store", url]) == 2
    err = capsys.readouterr().err
    assert "ended complete before the halt took hold" in err, err
    assert COMPLETE in err
    assert "nothing halted" in err
    assert assignments(repo) == before
    assert not (repo.dir / ".rollout.halt").exists()
    with closing(open_store(url)) as store:
        assert store.query("SELECT state, reason FROM rollouts", []) == [("complete", COMPLETE)]
        assert dict(store.query("SELECT device_id, state FROM rollout_devices", [])) == {
            "k1": "installed", "k2": "assigned"}
    assert main(["models", "halt", MODEL, "--repo", str(repo.dir), "--store", url]) == 2
    assert f"ended complete: {COMPLETE}" in capsys.readouterr().err  # asked again: as plainly


class _Kiosks:
    """k0 online, reporting the release installed and healthy at the deploy's first look
    after it signed the wave, just as an operator's halt comes (``late``: at the look after,
    once the deploy read the request); k9 switched off."""

    def __init__(self, repo: FileRepository, release: ModelManifest, late: bool = False) -> None:
        self.repo, self.release, self.rollout_id, self.late = repo, release, "", late

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        self.rollout_id = rollout_id

    def devices(self) -> dict[tuple[str, str], DeviceView]:
        now, about = payloads.utc_now(), payloads.ModelInfo(name=MODEL, version="1.1.0")
        online = payloads.Status(device_id="k0", site=SITE, state="online", at=now)
        if not self.rollout_id:
            return {(SITE, "k0"): DeviceView(SITE, "k0", status=online)}
        if not (self.repo.dir / ".rollout.halt").exists():
            (self.repo.dir / ".rollout.halt").write_text(
                f'{{"rollout": "{self.rollout_id}", "reason": "halted by an operator"}}')
            if self.late:
                return {(SITE, "k0"): DeviceView(SITE, "k0", status=online)}
        installed = payloads.ModelState(device_id="k0", site=SITE, state="installed", at=now,
                                        model=about, running=about, healthy=True,
                                        rollout=self.rollout_id)
        return {(SITE, "k0"): DeviceView(SITE, "k0", status=online, state=installed)}


def test_a_halt_asked_as_the_last_wave_ends_halts_the_rollout(tmp_path: Path) -> None:
    """The request came after the deploy's last look in the last wave: the rollout was
    recorded complete, k9 (switched off) kept the halted release's assignment, and the request
    stayed in the folder."""
    repo = init_repository(tmp_path / "repo")
    assign(repo, [(SITE, "k9")], _release(repo, tmp_path, "1.0.0"))
    before = assignments(repo)
    release = _release(repo, tmp_path, "1.1.0")
    plan = RolloutPlan(release, [(SITE, "k0"), (SITE, "k9")], canaries=0, timeout_s=30,
                       await_offline=False)
    store: Store
    with closing(open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")) as store:
        outcome = Rollout(repo, _Kiosks(repo, release), store, plan).run()  # type: ignore[arg-type]
    assert outcome.state == "halted"
    assert outcome.reason == "halted by an operator"
    assert unmarked(assignments(repo))[(SITE, "k9")] == before[(SITE, "k9")]  # put back
    assert assignments(repo)[(SITE, "k0")].version == "1.1.0"  # installed: kept
    assert not (repo.dir / ".rollout.halt").exists()


def test_a_kiosk_that_installs_as_the_halt_is_read_keeps_the_release(tmp_path: Path) -> None:
    """k0 reported the release installed between the deploy's last look and its reading of
    the halt request: the deploy marked it halted without looking again and put back the
    1.0.0 it held before; the last look now records it installed and it keeps 1.1.0."""
    repo = init_repository(tmp_path / "repo")
    assign(repo, [(SITE, "k0"), (SITE, "k9")], _release(repo, tmp_path, "1.0.0"))
    before = assignments(repo)
    release = _release(repo, tmp_path, "1.1.0")
    plan = RolloutPlan(release, [(SITE, "k0"), (SITE, "k9")], canaries=0, timeout_s=30,
                       await_offline=False)
    store: Store
    with closing(open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")) as store:
        kiosks = _Kiosks(repo, release, late=True)
        outcome = Rollout(repo, kiosks, store, plan).run()  # type: ignore[arg-type]
        devices = dict(store.query("SELECT device_id, state FROM rollout_devices", []))
    assert outcome.state == "halted"
    assert outcome.reason == "halted by an operator"
    assert outcome.outcomes[(SITE, "k0")][0] == "installed"
    assert assignments(repo)[(SITE, "k0")].version == "1.1.0"  # installed: kept
    assert unmarked(assignments(repo))[(SITE, "k9")] == before[(SITE, "k9")]  # put back
    assert devices == {"k0": "installed", "k9": "withdrawn"}


def test_a_halt_whose_deploy_is_killed_while_it_waits_halts_the_rollout_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    mqtt_broker: Any, topic_prefix: str,
) -> None:
    """The deploy held the rollout lock when the halt asked it, and was killed (-9) before it
    read the request: the halt waited out its 60 s for a deploy no longer there, said the
    deploy "did not say so", exit 1, and left the rollout running and k2 assigned. It halts
    the rollout itself once no deploy holds the lock, as for one killed before it asked."""
    repo, url, _ = _running_rollout(tmp_path)
    _broker_env(monkeypatch, tmp_path, mqtt_broker, topic_prefix)
    monkeypatch.setattr(fleetops, "HALT_WAIT_S", 5.0)
    looks: list[bool] = []

    def held_until_asked(_repo: FileRepository) -> bool:  # killed once the halt asked
        looks.append(not (repo.dir / ".rollout.halt").exists())
        return looks[-1]

    monkeypatch.setattr(FileRepository, "rollout_held", held_until_asked)
    assert main(["models", "halt", MODEL, "--repo", str(repo.dir), "--store", url]) == 0
    out = capsys.readouterr().out
    assert "halted (no deploy was running it; 1 assignment(s) withdrawn" in out, out
    assert list(assignments(repo)) == [(SITE, "k1")]  # k2 had not installed it
    assert not (repo.dir / ".rollout.halt").exists()
    with closing(open_store(url)) as store:
        assert [state for (state,) in store.query("SELECT state FROM rollouts", [])] == [
            "halted"]


def test_a_rollout_marked_interrupted_after_the_clock_was_set_back_can_be_halted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    mqtt_broker: Any, topic_prefix: str,
) -> None:
    """Two rollouts ran while the back office's clock was an hour ahead; the second one's
    deploy was killed; NTP set the clock back; a deploy started then (and refused, naming no
    devices) marked it `interrupted`, stamped with the clock, under the first one's stamps:
    the halt took the first one for the model's newest and refused ("ended complete"), and the
    interrupted rollout's assignments stood. Marked after the newest stamp, it is halted."""
    repo, url, _ = _running_rollout(tmp_path)
    ahead = payloads.utc_now() + timedelta(hours=1)
    with closing(open_store(url)) as store:
        store.write("UPDATE rollouts SET created_at = ?, updated_at = ?",
                    [(iso_utc(ahead + timedelta(seconds=1)),) * 2])
        store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [("f1rst0000000", MODEL, "1.0.0", "deploy", "all", 0, "complete", "done",
                      iso_utc(ahead), iso_utc(ahead), repo.identity())])
        assert mark_interrupted(store, repo) == 1
    _broker_env(monkeypatch, tmp_path, mqtt_broker, topic_prefix)
    assert main(["models", "halt", MODEL, "--repo", str(repo.dir), "--store", url]) == 0
    assert "1 assignment(s) withdrawn" in capsys.readouterr().out
    assert list(assignments(repo)) == [(SITE, "k1")]  # k2 had not installed it
