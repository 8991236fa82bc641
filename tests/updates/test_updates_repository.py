"""The model repository on its own: keys and thresholds, releases, assignments, the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, TargetFile
from tuf.ngclient import Updater
from updates_helpers import RepositoryClock, inputs

from appliance.cli import main
from appliance.config import load_config
from appliance.updates import repository as repository_module
from appliance.updates.fetch import RepositoryClient
from appliance.updates.fleetdevices import choose_devices
from appliance.updates.manifest import (
    MAX_TARGETS_METADATA_BYTES,
    ManifestError,
    ModelManifest,
    check_target_path,
    model_target,
    semver_key,
)
from appliance.updates.operations import (
    RoleKeys,
    assign,
    assignments,
    init_repository,
    refresh_timestamp,
    release_model,
    released,
)
from appliance.updates.release import manifest_for
from appliance.updates.repofiles import RepositoryError, write_atomically
from appliance.updates.repository import FLEET, FileRepository
from appliance.updates.serve import RepositoryServer
from appliance.updates.testing import linear_model
from tests.disk_helpers import fill, small_tmpfs
from tests.dripping import cut_off_while_dripping

MODEL_PATH = "models/skin-texture-grade/1.1.0/skin-texture-grade-1.1.0.onnx"


def test_init_makes_keys_per_role_with_the_thresholds_asked_for(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo", {"root": RoleKeys(3, 2), "targets": RoleKeys(2, 2)})
    root = repo.root()
    assert root.roles["root"].threshold == 2
    assert len(root.roles["root"].keyids) == 3
    assert root.roles["targets"].threshold == 2
    assert len(list((repo.keys_dir / "root").glob("*.pem"))) == 3
    signed = Metadata.from_file(str(repo.metadata_dir / "1.root.json"))
    assert len(signed.signatures) == 3
    assert (repo.keys_dir / "root" / next(iter(root.roles["root"].keyids))).with_suffix(
        ".pem").stat().st_mode & 0o077 == 0  # private keys readable by their owner only
    with pytest.raises(RepositoryError, match="already here"):
        init_repository(tmp_path / "repo")
    with pytest.raises(RepositoryError, match="threshold 3 with 2 key"):
        init_repository(tmp_path / "other", {"snapshot": RoleKeys(2, 3)})


def test_what_is_published_can_be_read_by_the_web_server_s_own_user(tmp_path: Path) -> None:
    """Every file under public/ was written readable by its owner alone (0600): a web server
    running as its own user, as the README's "serve public/ with any web server" has it,
    answered 403 for every metadata file and model."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    assign(repo, [("lab", "k1")], manifest)
    published = [p for p in (repo.dir / "public").rglob("*") if p.is_file()]
    assert len(published) > 8  # metadata of every role, the model, the assignment
    assert {oct(p.stat().st_mode & 0o777) for p in published} == {oct(0o644)}
    keys = [p for p in repo.keys_dir.rglob("*") if p.is_file()]
    assert {oct(p.stat().st_mode & 0o777) for p in keys} == {oct(0o600)}


def test_init_into_a_file_names_it_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said only "[Errno 17] File exists: 'notes.txt'"."""
    taken = tmp_path / "notes.txt"
    taken.write_text("the user's\n")
    assert main(["models", "repo", "init", str(taken)]) == 2
    assert (f"models repo init: {taken}: a file, not a folder; name a new folder for the repository"
            in capsys.readouterr().err)
    assert taken.read_text() == "the user's\n"
    loop = tmp_path / "repo"
    loop.symlink_to("repo")  # it said "[Errno 17] File exists: 'repo'" too
    assert main(["models", "repo", "init", str(loop)]) == 2
    assert ("models repo init: "
            f"{loop}: a symbolic link loop (the link leads back to itself), not a "
            "folder; name a new folder for the repository" in capsys.readouterr().err)



def test_init_prints_the_fleet_role_s_threshold_not_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """targets delegates it, so root has none for it: `repo init` printed "threshold": null."""
    assert main(["models", "repo", "init", str(tmp_path / "repo"), "--keys", "fleet=3",
                 "--threshold", "fleet=2"]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n\n")[0])
    assert {role: shown["threshold"] for role, shown in printed["roles"].items()} == {
        "root": 1, "targets": 1, "fleet": 2, "snapshot": 1, "timestamp": 1}

def test_root_cannot_change_once_its_keys_are_offline(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    offline = tmp_path / "usb-stick"
    (repo.keys_dir / "root").rename(offline)
    refused = r"0 private key\(s\) of role 'root' here, its threshold is 1"
    with pytest.raises(RepositoryError, match=refused), repo.edit_root() as root:
        root.consistent_snapshot = True
    refresh_timestamp(repo)  # everything else still signs without them


def test_a_role_below_its_threshold_does_not_sign(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo", {"targets": RoleKeys(2, 2)})
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    next((repo.keys_dir / "targets").glob("*.pem")).rename(tmp_path / "with-the-second-signer")
    with pytest.raises(RepositoryError, match=r"1 private key\(s\) of role 'targets' here, its "
                       r"threshold is 2"):
        release_model(repo, model, manifest)
    assert repo.latest_version("targets") == 1  # nothing half-signed was written


def _served(repo: FileRepository) -> dict[str, bytes]:
    public = repo.dir / "public"
    return {str(path.relative_to(public)): path.read_bytes()
            for path in sorted(public.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("away", ["targets", "snapshot", "timestamp"])
def test_a_release_without_a_role_s_keys_writes_nothing_to_the_served_folder(
    tmp_path: Path, away: str
) -> None:
    """The model file went into public/targets before the targets key was asked for, and
    with the snapshot or timestamp key away targets was signed and left unpublished."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    (repo.keys_dir / away).rename(tmp_path / "offline")
    before = _served(repo)
    with pytest.raises(RepositoryError, match=rf"0 private key\(s\) of role '{away}' here"):
        release_model(repo, model, manifest)
    assert _served(repo) == before


@pytest.mark.parametrize("away", ["fleet", "snapshot"])
def test_an_assignment_without_a_role_s_keys_writes_nothing_to_the_served_folder(
    tmp_path: Path, away: str
) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    (repo.keys_dir / away).rename(tmp_path / "offline")
    before = _served(repo)
    with pytest.raises(RepositoryError, match=rf"0 private key\(s\) of role '{away}' here"):
        assign(repo, [("s1", "k1")], manifest)
    assert _served(repo) == before


def test_an_assignment_whose_fleet_metadata_kiosks_cannot_read_is_refused_naming_both_sizes(
    tmp_path: Path,
) -> None:
    # deploy took up to 1,000,000 devices, and the fleet role grew past the 5 MB of targets
    # metadata a kiosk's TUF client reads at some 30,000: every kiosk then refused the fleet
    # role, and with it its own assignment
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    assign(repo, [("lab", "k1")], manifest)
    before = _served(repo)
    fleet = [("lab", f"kiosk-{number:05d}") for number in range(40_000)]
    with pytest.raises(RepositoryError) as refused:
        assign(repo, fleet, manifest)
    found = re.search(r"assigning 40000 device\(s\) makes the fleet role's signed metadata "
                      r"about (\d+) bytes, and kiosks read at most (\d+) bytes of it",
                      str(refused.value))
    assert found is not None, str(refused.value)
    assert int(found.group(1)) > int(found.group(2)) == MAX_TARGETS_METADATA_BYTES
    assert "nothing was assigned" in str(refused.value)
    assert _served(repo) == before  # nothing signed, nothing written


def test_no_fleet_version_larger_than_kiosks_read_is_written(tmp_path: Path) -> None:
    """Whatever edits the fleet role, a version kiosks would refuse is never stored."""
    repo = init_repository(tmp_path / "repo")
    before = _served(repo)
    assignment = b'{"model": "m"}'
    fleet = repo.open(FLEET)
    for number in range(40_000):
        path = f"devices/lab/kiosk-{number:05d}.json"
        fleet.signed.targets[path] = TargetFile.from_data(path, assignment, ["sha256"])
    with pytest.raises(RepositoryError,
                       match=rf"kiosks read at most {MAX_TARGETS_METADATA_BYTES} bytes of it"):
        repo.close(FLEET, fleet)
    assert _served(repo) == before


def test_release_refuses_a_wrong_version_and_a_second_release(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    with pytest.raises(ManifestError, match=r"says version 1\.1\.0, the release says 1\.2\.0"):
        manifest_for(model, "1.2.0", inputs())
    manifest = manifest_for(model, "1.1.0", inputs(), device_types=["skin-kiosk", "lab-kiosk"])
    target = release_model(repo, model, manifest)
    assert released(repo, "skin-texture-grade", "1.1.0") == manifest
    with pytest.raises(RepositoryError, match="already released"):
        release_model(repo, model, manifest)
    with pytest.raises(RepositoryError, match=r"released: 1\.1\.0"):
        released(repo, "skin-texture-grade", "9.9.9")
    stored = next((repo.targets_dir / "models").rglob("*.onnx"))
    assert stored.name.endswith(target.rsplit("/", 1)[1])
    assert stored.read_bytes() == model.read_bytes()


@pytest.mark.parametrize(("name", "version", "said"), [
    ("../../etc", "1.1.0", "the model's metadata 'name' '../../etc': must be ASCII letters, "
     "digits and _ . - only (no spaces), starting with a letter or digit; rebuild it"),
    ("skin-texture-grade", "1.1.0/../x", "the model's metadata says version '1.1.0/../x', "
     "which is not a semantic version like 1.2.3, so no release can carry it; rebuild"),
])
def test_a_model_whose_own_name_or_version_no_release_takes_is_refused_as_the_model_s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, version: str, said: str,
) -> None:
    """The name was refused as "name '../../etc': String should match pattern '^[A-Za-z0-9]
    [A-Za-z0-9_.-]*$'", and such a version with "release it as 1.1.0/../x", which the release
    then refused as no semantic version."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", version, name=name)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 2
    refused = capsys.readouterr().err
    assert f"models release: {model}: {said}" in refused, refused
    assert "pattern" not in refused
    assert not list((repo.targets_dir).rglob("*.onnx"))


def test_timestamp_refresh_signs_a_new_version_that_expires_soon(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo", expiry_s={"timestamp": 600})
    before = repo.timestamp()
    assert refresh_timestamp(repo) == before.version + 1
    valid_s = (repo.timestamp().expires - datetime.now(UTC)).total_seconds()
    assert 500 < valid_s <= 600  # the configured short expiry, from now
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 0
    assert repo.timestamp().version == before.version + 2


def test_the_refresh_timer_alone_keeps_a_quiet_repository_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No release or deploy for longer than snapshot and fleet stay valid (7 and 30 days by
    # default, an hour here): the timer's refresh must keep what a kiosk checks signed.
    # The repository's clock starts 1.3 validities ago and is moved by hand (it once slept
    # with a 4 s validity, which a busy machine's slow step could outrun): the kiosk below,
    # on the real clock, finds the first versions 0.3 validity expired and the renewed ones
    # 0.3 validity from expiring.
    valid_s = 3600
    clock = RepositoryClock(monkeypatch, datetime.now(UTC) - timedelta(seconds=1.3 * valid_s))
    repo = init_repository(tmp_path / "repo", expiry_s={"snapshot": valid_s, FLEET: valid_s})
    assign(repo, [("s1", "k1")], manifest_for(linear_model(tmp_path / "m.onnx", "1.1.0"),
                                              "1.1.0", inputs()))
    first_fleet = repo.latest_version(FLEET)
    clock.advance(0.6 * valid_s)  # past half their validity
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 0
    for first in (f"{first_fleet}.{FLEET}.json", "1.snapshot.json"):  # on the kiosk's clock
        assert Metadata.from_file(str(repo.metadata_dir / first)).signed.is_expired()
    server = RepositoryServer(repo.dir / "public").start()
    try:
        client = Updater(str(_dir(tmp_path / "client")), f"{server.url}/metadata/",
                         bootstrap=(repo.metadata_dir / "1.root.json").read_bytes())
        assert client.get_targetinfo("devices/s1/k1.json") is not None
    finally:
        server.close()
    assert [*assignments(repo)] == [("s1", "k1")]  # re-signed as it was
    (repo.keys_dir / FLEET).rename(tmp_path / "offline")  # kept offline against the docs
    clock.advance(0.6 * valid_s)  # the renewed fleet version past half its validity
    before = repo.latest_version("timestamp")
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    assert "timestamp signed, but: " in capsys.readouterr().err  # the timer's alarm
    assert repo.latest_version("timestamp") == before + 1  # kiosks keep a fresh timestamp


def test_refresh_without_the_timestamp_key_signs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It renewed fleet and snapshot, then failed at the timestamp: exit 2 with new versions
    signed that no timestamp published (the README: nothing or only the timestamp signed)."""
    valid_s = 3600  # the repository's clock is moved, not waited on (RepositoryClock)
    clock = RepositoryClock(monkeypatch, datetime.now(UTC))
    repo = init_repository(tmp_path / "repo", expiry_s={"snapshot": valid_s, FLEET: valid_s})
    (repo.keys_dir / "timestamp").rename(tmp_path / "offline")
    clock.advance(0.6 * valid_s)  # past half their validity: a refresh would renew both
    assert _past_half(repo, clock, "snapshot", FLEET)  # the refusal alone shows it not
    before = sorted(path.name for path in repo.metadata_dir.iterdir())
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    assert "0 private key(s) of role 'timestamp' here" in capsys.readouterr().err
    assert sorted(path.name for path in repo.metadata_dir.iterdir()) == before


def test_refresh_without_the_snapshot_key_signs_only_the_timestamp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It renewed the fleet role, which no snapshot then listed, and exited 2 saying only the
    timestamp was signed (the README: exit 2, nothing or only the timestamp signed)."""
    valid_s = 3600  # the repository's clock is moved, not waited on (RepositoryClock)
    clock = RepositoryClock(monkeypatch, datetime.now(UTC))
    repo = init_repository(tmp_path / "repo", expiry_s={"snapshot": valid_s, FLEET: valid_s})
    (repo.keys_dir / "snapshot").rename(tmp_path / "offline")
    clock.advance(0.6 * valid_s)  # past half their validity: a refresh would renew both
    assert _past_half(repo, clock, "snapshot", FLEET)  # the refusal alone shows it not
    fleet, snapshot = repo.latest_version(FLEET), repo.latest_version("snapshot")
    timestamp = repo.latest_version("timestamp")
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    err = capsys.readouterr().err
    assert "timestamp signed, but: " in err
    assert "0 private key(s) of role 'snapshot' here" in err
    assert (repo.latest_version(FLEET), repo.latest_version("snapshot")) == (fleet, snapshot)
    assert repo.latest_version("timestamp") == timestamp + 1  # kiosks keep a fresh timestamp


def test_refresh_warns_before_an_offline_role_expires_and_renews_it_with_its_keys_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # targets and root (180 and 365 days by default, an hour here) keep their keys offline, so
    # the timer cannot renew them: it must say so while there is time, in a way a timer's
    # OnFailure= or a monitoring check sees, and renew them once the keys are back.
    # The repository's clock starts 1.3 validities ago and is moved by hand (it once slept 2.5
    # and 2 s with a 4 s validity, and a busy machine's slow step broke it): the kiosk below,
    # on the real clock, then finds the first versions 0.3 validity expired and the renewed
    # ones 0.3 validity from expiring.
    valid_s = 3600
    clock = RepositoryClock(monkeypatch, datetime.now(UTC) - timedelta(seconds=1.3 * valid_s))
    repo = init_repository(tmp_path / "repo", expiry_s={"targets": valid_s, "root": valid_s})
    for role in ("targets", "root"):
        (repo.keys_dir / role).rename(tmp_path / f"offline-{role}")
    refresh = ["models", "repo", "refresh", str(repo.dir)]
    assert main(refresh) == 0  # fresh: nothing to say
    assert capsys.readouterr().err == ""
    clock.advance(0.6 * valid_s)  # past half their validity, not expired
    before = repo.latest_version("timestamp")
    assert main(refresh) == 3
    err = capsys.readouterr().err
    for role in ("targets", "root"):
        expires = repo.open(role).signed.expires.isoformat()
        assert f"{role} metadata expires {expires}" in err, err
        assert f"bring the {role} keys back to {repo.keys_dir / role}" in err
    assert f"run `appliance models repo refresh {repo.dir}`" in err
    assert repo.latest_version("timestamp") == before + 1  # kiosks keep a fresh timestamp
    for role in ("targets", "root"):
        (tmp_path / f"offline-{role}").rename(repo.keys_dir / role)
    assert main(refresh) == 0
    assert (repo.latest_version("targets"), repo.latest_version("root")) == (2, 2)
    for first in ("1.root.json", "1.targets.json"):  # on the kiosk's (real) clock
        assert Metadata.from_file(str(repo.metadata_dir / first)).signed.is_expired()
    server = RepositoryServer(repo.dir / "public").start()
    try:
        client = Updater(str(_dir(tmp_path / "client")), f"{server.url}/metadata/",
                         bootstrap=(repo.metadata_dir / "1.root.json").read_bytes())
        client.refresh()  # root 2 and targets 2 are valid: the kiosk is not frozen
    finally:
        server.close()


def test_the_fleet_role_cannot_add_a_model(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    with repo.locked():  # the online fleet key signs a model target outside devices/*/*
        repo.add_target(FLEET, model, MODEL_PATH, manifest.model_dump(mode="json"))
        repo.publish()
    server = RepositoryServer(repo.dir / "public").start()
    try:
        client = Updater(str(_dir(tmp_path / "client")), f"{server.url}/metadata/",
                         bootstrap=(repo.metadata_dir / "1.root.json").read_bytes())
        assert client.get_targetinfo(MODEL_PATH) is None  # tuf ignores it: not delegated
    finally:
        server.close()


def test_assignments_are_read_back_per_device(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    rollout = assign(repo, [("lab", "k1"), ("shop", "k2")], manifest, decision="rollback")
    found = assignments(repo)
    assert sorted(found) == [("lab", "k1"), ("shop", "k2")]
    assert found[("shop", "k2")].decision == "rollback"
    assert found[("lab", "k1")].rollout == rollout


def test_a_wave_is_one_signed_fleet_version_and_each_kiosk_reads_its_own_assignment(
    tmp_path: Path,
) -> None:
    """assign signed one fleet version per device: a wave of 6 kiosks wrote 6 versions."""
    repo, manifest = _released(tmp_path)
    earlier = assign(repo, [("lab", "k0")], manifest)
    before = repo.latest_version(FLEET)
    wave = [("lab", f"k{number}") for number in range(1, 6)] + [("shop", "k1")]
    rollout = assign(repo, wave, manifest)
    assert repo.latest_version(FLEET) == before + 1
    assert len(list(repo.metadata_dir.glob("*.fleet.json"))) == before + 1
    server = RepositoryServer(repo.dir / "public").start()
    try:
        for site, device_id in [("lab", "k0"), *wave]:  # as each kiosk's TUF client reads it
            client = Updater(str(_dir(tmp_path / site / device_id)), f"{server.url}/metadata/",
                             target_dir=str(_dir(tmp_path / site / f"{device_id}-targets")),
                             target_base_url=f"{server.url}/targets/",
                             bootstrap=(repo.metadata_dir / "1.root.json").read_bytes())
            client.refresh()
            info = client.get_targetinfo(f"devices/{site}/{device_id}.json")
            assert info is not None, (site, device_id)
            read = json.loads(Path(client.download_target(info)).read_bytes())
            assert read["rollout"] == (earlier if device_id == "k0" else rollout)
    finally:
        server.close()


def test_a_wave_stopped_half_way_leaves_the_fleet_role_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one fleet version per device, a disk full at the third kiosk of a wave left two
    new versions signed, listing the wave's first two kiosks, for the next publish to send."""
    repo, manifest = _released(tmp_path)
    assign(repo, [("lab", "k0")], manifest)
    before = (repo.latest_version(FLEET), assignments(repo))
    written = []

    def full_at_the_third_kiosk(path: Path, data: bytes, mode: int = 0o600) -> None:
        if "devices" in path.parts:
            written.append(path)
            if len(written) == 3:
                raise OSError(28, "No space left on device", str(path))
        write_atomically(path, data, mode)

    monkeypatch.setattr(repository_module, "write_atomically", full_at_the_third_kiosk)
    with pytest.raises(OSError, match="No space left"):
        assign(repo, [("lab", f"k{number}") for number in range(1, 6)], manifest)
    assert (repo.latest_version(FLEET), assignments(repo)) == before
    monkeypatch.undo()
    assign(repo, [("lab", f"k{number}") for number in range(1, 6)], manifest)
    assert repo.latest_version(FLEET) == before[0] + 1
    assert len(assignments(repo)) == 6


def _released(tmp_path: Path) -> tuple[FileRepository, ModelManifest]:
    """A new repository with one release."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    return repo, manifest


@pytest.mark.broker  # models status reads the fleet's reports first
def test_an_assignment_file_changed_behind_the_repository_s_back_is_not_believed(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stored assignment rewritten in public/targets (a deploy decision turned into a
    rollback) was read as signed: status showed it and a rollback picked devices by it."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    assign(repo, [("lab", "k1")], manifest)
    stored = next((repo.targets_dir / "devices" / "lab").iterdir())
    stored.write_bytes(stored.read_bytes().replace(b'"deploy"', b'"rollback"'))
    with pytest.raises(RepositoryError, match="not the assignment the fleet role signed"):
        assignments(repo)
    monkeypatch.setenv("APPLIANCE__MQTT__HOST", mqtt_broker.host)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(mqtt_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)
    assert main(["models", "status", "--repo", str(repo.dir), "--store",
                 f"sqlite:///{tmp_path / 'none.sqlite3'}"]) == 2
    assert f"models status: {stored}: not the assignment the fleet role signed" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(
    "name", ["../x.onnx", "models/../../x.onnx", "/etc/x", "models//x", "models\\x", "./x"]
)
def test_target_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(ManifestError, match="refused"):
        check_target_path(name)


def test_semantic_versions_order_numerically_and_pre_releases_first() -> None:
    assert semver_key("1.10.0") > semver_key("1.9.3")
    assert semver_key("2.0.0-rc.1") < semver_key("2.0.0")
    with pytest.raises(ManifestError, match="not a semantic version"):
        semver_key("1.2")


def test_cli_init_and_release_print_where_things_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo_dir = tmp_path / "repo"
    assert main(["models", "repo", "init", str(repo_dir), "--keys", "root=2",
                 "--threshold", "root=2", "--expiry-s", "timestamp=3600"]) == 0
    out = capsys.readouterr().out
    assert f"root keys: {repo_dir / 'keys' / 'root'} -- move them offline" in out
    assert json.loads(out[: out.index("\n\nroot keys")])["roles"]["root"]["threshold"] == 2
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(linear_model(tmp_path / "whole.onnx", "1.1.0").read_bytes()[:200])
    assert main(["models", "release", str(cut), "--repo", str(repo_dir), "--version",
                 "1.1.0"]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err
    assert "check the file named" in err  # not the config's model.path: none is involved
    assert "model.path" not in err
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    table = tmp_path / "vectors.csv"
    header = "label," + ",".join(f"f{i}" for i in range(16))
    table.write_text(header + "\n")
    assert main(["models", "release", str(model), "--repo", str(repo_dir), "--version", "1.1.0",
                 "--vectors", str(table)]) == 2
    assert "missing column" in capsys.readouterr().err
    assert main(["models", "release", str(model), "--repo", str(repo_dir), "--version", "1.1.0",
                 "--vectors", str(_table(tmp_path))]) == 0
    assert "released skin-texture-grade 1.1.0" in capsys.readouterr().out
    assert released(FileRepository(repo_dir), "skin-texture-grade", "1.1.0").self_test


def test_init_logs_nothing_that_reads_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert main(["models", "repo", "init", str(tmp_path / "repo"), "--keys", "root=2"]) == 0
    said = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records]
    assert said == []  # was tuf's "No signature for keyid ..." for the first snapshot, timestamp


def test_a_role_key_kept_offline_under_a_met_threshold_logs_nothing_that_reads_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = init_repository(tmp_path / "repo", {"targets": RoleKeys(2, 1)})
    next((repo.keys_dir / "targets").glob("*.pem")).rename(tmp_path / "in-the-safe.pem")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    caplog.set_level(logging.INFO)
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 0
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 0
    said = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records]
    assert said == []  # was tuf's "No signature for keyid ..." on every open of targets


def _table(tmp_path: Path) -> Path:
    import numpy as np

    from appliance.modelbuild.table import LabelledTable, write_table
    from appliance.transport.payloads import FEATURE_KEYS

    rows = np.asarray(inputs(8), np.float32)
    table = LabelledTable(FEATURE_KEYS, rows, ("fine",) * 8, ("test",) * 8, ("",) * 8, "t")
    return write_table(tmp_path / "vectors2.csv", table)


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_init_refuses_expired_metadata_and_a_runaway_key_count(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"--expiry-s timestamp=-5: .* more than 0 s"):
        init_repository(tmp_path / "past", expiry_s={"timestamp": -5})
    with pytest.raises(RepositoryError, match="role root: 100000 keys; at most 32"):
        init_repository(tmp_path / "many", {"root": RoleKeys(100_000, 1)})
    assert not (tmp_path / "past").exists()  # nothing written
    assert not (tmp_path / "many").exists()


def test_init_refuses_an_expiry_past_what_a_date_can_hold_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "far"
    assert main(["models", "repo", "init", str(folder), "--expiry-s",
                 "timestamp=99999999999999"]) == 2
    assert "--expiry-s timestamp=99999999999999: at most" in capsys.readouterr().err
    assert not folder.exists()  # a second init is not refused as "already here"
    assert main(["models", "repo", "init", str(folder), "--keys", "root=two"]) == 2
    assert "--keys root=two: ROLE=VALUE needs a whole number" in capsys.readouterr().err


def test_an_init_that_stopped_halfway_is_named_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "repo"

    close = FileRepository.close

    def disk_full(self: FileRepository, role: str, md: Metadata[Any]) -> None:
        if role == "timestamp":
            raise OSError(28, "No space left on device")
        close(self, role, md)

    with monkeypatch.context() as patched:  # keys and settings written, no timestamp signed
        patched.setattr(FileRepository, "close", disk_full)
        assert main(["models", "repo", "init", str(folder)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    for command in (["models", "repo", "init", str(folder)],
                    ["models", "release", str(model), "--repo", str(folder), "--version", "1.1.0"],
                    ["models", "repo", "refresh", str(folder)],
                    ["models", "status", "--repo", str(folder)]):  # said "no releases yet"
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{folder}: an unfinished model repository" in err, command
        assert f"remove {folder} and run `appliance models repo init" in err, command
    shutil.rmtree(folder)
    assert main(["models", "repo", "init", str(folder)]) == 0


def test_a_release_refused_for_a_full_disk_leaves_no_partial_model_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    with small_tmpfs(tmp_path / "disk", size="1m") as disk:
        repo = init_repository(disk / "repo")
        filler = fill(disk)
        release = ["models", "release", str(model), "--repo", str(repo.dir), "--version", "1.1.0"]
        assert main(release) == 2
        err = capsys.readouterr().err
        assert "the disk is full (No space left on device): free some space" in err
        assert "[Errno" not in err  # said in words, not as Python prints an OSError
        assert f"{repo.targets_dir}/models/skin-texture-grade/1.1.0/" in err  # where (it said not)
        assert [p.name for p in repo.targets_dir.rglob("*") if p.is_file()] == []
        filler.unlink()
        assert main(release) == 0
        stored = [p for p in repo.targets_dir.rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in stored] == [model.read_bytes()]


def test_repo_init_on_a_full_disk_says_the_disk_is_full_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_tmpfs(tmp_path / "disk", size="1m") as disk:
        fill(disk)
        assert main(["models", "repo", "init", str(disk / "repo")]) == 2
        err = capsys.readouterr().err
        assert f"models repo init: {disk}/repo" in err
        assert "the disk is full (No space left on device): free some space, then run it again" \
            in err
        assert "[Errno" not in err


def test_serve_refuses_what_it_cannot_serve_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = init_repository(tmp_path / "repo")
    with pytest.raises(SystemExit) as usage:
        main(["models", "repo", "serve", str(repo.dir), "--port", "99999"])
    assert usage.value.code == 2
    assert "--port: must be a whole number from 0 to 65535" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["models", "repo", "serve", str(repo.dir), "--max-connections", "0"])
    assert usage.value.code == 2
    assert "--max-connections: must be a whole number from 1 to 1000" in capsys.readouterr().err
    taken = RepositoryServer(repo.dir / "public")  # holds a port, not started
    try:
        port = str(taken.httpd.server_address[1])
        for args, said in ((["--port", port], f"127.0.0.1:{port}: [Errno 98]"),
                           (["--host", "no-such-host.invalid"], "no-such-host.invalid")):
            assert main(["models", "repo", "serve", str(repo.dir), *args]) == 2
            assert said in capsys.readouterr().err
    finally:
        taken.httpd.server_close()
    assert main(["models", "repo", "serve", str(tmp_path / "typo")]) == 2
    assert ("models repo serve: "
            f"{tmp_path / 'typo' / 'public'}: no metadata/" in capsys.readouterr().err)


def test_a_release_does_not_sign_metadata_that_was_changed_behind_its_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Someone who can write the served folder but holds no key points a released model at a
    # file of their own; the next release must refuse that, not sign it as its own.
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    release_model(repo, model, manifest_for(model, "1.1.0", inputs()))
    path = repo.metadata_dir / f"{repo.latest_version('targets')}.targets.json"
    signed = path.read_bytes()
    tampered = json.loads(signed)
    tampered["signed"]["targets"][MODEL_PATH]["hashes"]["sha256"] = "0" * 64
    path.write_text(json.dumps(tampered))
    newer = linear_model(tmp_path / "m2.onnx", "1.2.0")
    assert main(["models", "release", str(newer), "--repo", str(repo.dir), "--version",
                 "1.2.0"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: its signatures do not verify" in err
    assert path == repo.metadata_dir / f"{repo.latest_version('targets')}.targets.json"
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2  # the timer's alarm
    assert f"{path}: its signatures do not verify" in capsys.readouterr().err
    path.write_bytes(signed)  # put back
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 0
    timestamp = repo.metadata_dir / "timestamp.json"
    timestamp.write_bytes(timestamp.read_bytes()[:50])  # cut short: was a traceback
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    assert f"{timestamp}: not readable TUF metadata" in capsys.readouterr().err


def test_a_rollback_of_a_model_assigned_to_nobody_says_so(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    every_device = argparse.Namespace(name="skin-texture-grade", all=False, site=None,
                                      devices=None)
    with pytest.raises(ValueError, match="no device is assigned skin-texture-grade now; name "
                                         "the devices with --devices, --site or --all"):
        choose_devices(every_device, {("lab", "k1")}, repo)


@pytest.mark.parametrize("command", [["deploy", "skin-texture-grade", "1.1.0"],
                                     ["rollback", "skin-texture-grade", "--to", "1.1.0"]])
@pytest.mark.parametrize("given", [
    ("--site", "", "empty; name the site whose devices to take"),
    ("--devices", "", "empty; name the devices as comma-separated ids"),
    ("--site", "  ", "blank; name the site whose devices to take"),
])
def test_an_empty_target_is_refused_not_taken_for_the_devices_assigned_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
    given: tuple[str, str, str],
) -> None:
    # without --site, --devices or --all a rollback takes every device assigned the model
    # now, and a deploy did the same when its target was given empty
    option, value, said = given
    repo = init_repository(tmp_path / "repo")
    store = tmp_path / "store.sqlite3"
    with pytest.raises(SystemExit) as refused:
        main(["models", *command, "--repo", str(repo.dir), option, value,
              "--store", f"sqlite:///{store}"])
    assert refused.value.code == 2
    assert f"argument {option}: {said}" in capsys.readouterr().err
    assert not store.exists()


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--device-types", "skin kiosk", "--device-types 'skin kiosk': "),
    ("--device-types", ",,", "--device-types: at least one device type"),
    ("--feature-schema", "x" * 65, "--feature-schema 'xxxx"),
    ("--feature-schema", "", "--feature-schema '': "),  # was the default, silently
])
def test_release_options_a_manifest_cannot_hold_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, said: str
) -> None:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version", "1.1.0",
                 option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"models release: {said}"), err
    assert "pydantic" not in err
    assert len(err.splitlines()) == 1


def test_config_check_refuses_a_trusted_root_the_kiosk_could_not_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = init_repository(tmp_path / "repo")
    (tmp_path / "not-root.json").write_text('{"signed": 1}')
    config = tmp_path / "kiosk.yaml"
    for root, said in (("missing.json", "No such file"),
                       ("not-root.json", "not TUF root metadata"),
                       (str(repo.metadata_dir / "1.targets.json"), "holds targets metadata")):
        config.write_text(f"updates: {{url: 'http://127.0.0.1:8470', trusted_root: '{root}'}}\n")
        assert main(["config", "check", str(config)]) == 2, root
        err = capsys.readouterr().err
        assert "updates.trusted_root: " in err
        assert said in err
        with pytest.raises(ValueError, match=f"updates.trusted_root: .*{said}"):
            RepositoryClient(load_config(config).updates, "lab", "k1", tmp_path / "state")
    config.write_text("updates: {url: 'http://127.0.0.1:8470', trusted_root: "
                      f"'{repo.metadata_dir / '1.root.json'}'}}\n")
    assert main(["config", "check", str(config)]) == 0


def test_the_repository_server_hangs_up_on_a_connection_that_sends_nothing(
    tmp_path: Path
) -> None:
    # each connection holds a thread; idle ones (a slow or hostile client) must not pile up
    repo = init_repository(tmp_path / "repo")
    server = RepositoryServer(repo.dir / "public", idle_timeout_s=0.5).start()
    try:
        host, port = server.httpd.server_address[:2]
        with socket.create_connection((str(host), int(port))) as idle:
            idle.settimeout(10)
            assert idle.recv(1) == b""  # closed by the server, not still waiting
    finally:
        server.close()


def test_the_repository_server_hangs_up_on_a_request_sent_a_byte_at_a_time(
    tmp_path: Path
) -> None:
    """Each byte within the idle timeout, the request never whole: the connection held its
    thread for as long as the client went on. It is closed at the request deadline now, and
    a request that came whole in time is served."""
    repo = init_repository(tmp_path / "repo")
    server = RepositoryServer(repo.dir / "public", idle_timeout_s=1.0,
                              request_deadline_s=2.0).start()
    try:
        host, port = server.httpd.server_address[:2]
        assert cut_off_while_dripping(  # within the 70 s the drip would take, not after it
            (str(host), int(port)),
            b"GET /metadata/1.root.json HTTP/1.0\r\nX-Padding: " + b"a" * 200, 0.3)
        url = f"{server.url}/metadata/1.root.json"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.close()


def test_devices_named_by_an_id_two_sites_use_are_not_picked_at_random(tmp_path: Path) -> None:
    repo = init_repository(tmp_path / "repo")
    known = {("shop-1", "kiosk-1"), ("shop-2", "kiosk-1"), ("shop-2", "kiosk-2")}

    def chosen(devices: str) -> list[tuple[str, str]]:
        named = argparse.Namespace(name="skin-texture-grade", all=False, site=None,
                                   devices=devices)
        return choose_devices(named, known, repo)

    with pytest.raises(ValueError, match="kiosk-1 is a device of sites shop-1, shop-2; name "
                                         "it as SITE/DEVICE"):
        chosen("kiosk-1")
    assert chosen("shop-2/kiosk-1,kiosk-2") == [("shop-2", "kiosk-1"), ("shop-2", "kiosk-2")]
    with pytest.raises(ValueError, match="unknown device"):
        chosen("shop-3/kiosk-1")


def test_status_of_a_folder_that_is_no_repository_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["models", "status", "--repo", str(tmp_path / "typo"), "--config", "unused.yaml"]
    assert main(args) == 2
    assert f"models status: {tmp_path / 'typo'}: not a model repository" in capsys.readouterr().err


def test_release_without_vectors_uses_the_shipped_self_test_rows_in_any_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_dir(tmp_path / "elsewhere"))  # no models/data/ here
    assert main(["models", "repo", "init", "repo"]) == 0
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    assert main(["models", "release", str(model), "--repo", "repo", "--version", "1.1.0"]) == 0
    assert "32 self-test vectors" in capsys.readouterr().out
    manifest = released(FileRepository(Path("repo")), "skin-texture-grade", "1.1.0")
    assert len(manifest.self_test) == 32


def test_a_release_published_by_the_next_operation_is_said_to_be_released_when_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before its snapshot, then published by another release: running it again (as
    after any stopped release) said 'versions are immutable, release a new version', as if
    this release had not happened."""
    repo, model, manifest = _killed_before_snapshot(tmp_path, monkeypatch)
    newer = linear_model(tmp_path / "n.onnx", "1.2.0")
    release_model(repo, newer, manifest_for(newer, "1.2.0", inputs()))  # publishes 1.1.0 too
    with pytest.raises(RepositoryError) as refused:
        release_model(repo, model, manifest)
    assert str(refused.value) == (
        "skin-texture-grade 1.1.0 is already released from this same file and self-test, and "
        "published (an operation after a stopped release publishes it too); nothing to do")


def _killed_before_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                            ) -> tuple[FileRepository, Path, ModelManifest]:
    """A new repository where releasing 1.1.0 (model, manifest) was killed after signing the
    targets, before the snapshot that publishes them."""
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    with monkeypatch.context() as patched:
        patched.setattr(FileRepository, "publish", _killed)
        with pytest.raises(KeyboardInterrupt):
            release_model(repo, model, manifest)
    return repo, model, manifest


def _killed(self: FileRepository) -> bool:
    """FileRepository.publish as a kill -9 after the targets were signed leaves it: not run."""
    raise KeyboardInterrupt


def test_a_release_killed_before_its_snapshot_is_completed_by_releasing_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after signing the targets, before the snapshot that publishes them: kiosks cannot
    see the release. The same release again publishes it; another file of that version, or a
    third release, is refused as before."""
    repo, model, manifest = _killed_before_snapshot(tmp_path, monkeypatch)
    snapshot_before = repo.latest_version("snapshot")
    assert repo.open("snapshot").signed.meta["targets.json"].version < repo.latest_version(
        "targets")  # signed, not published
    other = linear_model(tmp_path / "other.onnx", "1.1.0", bias=(0.0, 2.0, 0.0))
    with pytest.raises(RepositoryError, match="already released from another file or "
                       "self-test; versions are immutable, release a new version"):
        release_model(repo, other, manifest_for(other, "1.1.0", inputs()))
    assert release_model(repo, model, manifest) == model_target("skin-texture-grade", "1.1.0")
    assert repo.latest_version("snapshot") == snapshot_before + 1
    assert repo.open("snapshot").signed.meta["targets.json"].version == repo.latest_version(
        "targets")
    assert repo.open("timestamp").signed.snapshot_meta.version == snapshot_before + 1
    with pytest.raises(RepositoryError, match="already released from this same file and "
                       "self-test, and published"):
        release_model(repo, model, manifest)


def _past_half(repo: FileRepository, clock: RepositoryClock, *roles: str) -> bool:
    """Whether each of ``roles`` has less than half its validity left at the clock's time."""
    return all(repo.open(role).signed.expires - clock.at
               < timedelta(seconds=repo.expiry_s[role] / 2) for role in roles)
