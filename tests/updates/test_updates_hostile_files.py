"""A repository whose files were replaced by what no command wrote (a pipe, a link to a device,
an oversized file): every command that reads them refuses in one line naming the file, and
none waits for ever or reads without end."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from updates_helpers import RepositoryClock, inputs

from appliance.cli import main
from appliance.updates.manifest import ModelManifest
from appliance.updates.operations import assign, assignments, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repofiles import RepositoryError
from appliance.updates.repository import FileRepository
from appliance.updates.testing import linear_model


def _in_time(call: Callable[[], Any], pipe: Path) -> Any:
    """``call()`` in a thread; fails the test when it waits on ``pipe`` (after giving the pipe
    a writer that closes at once, so the thread ends)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        with suppress(OSError):  # ENXIO: nobody waits on it
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"waited on the pipe {pipe}")
    return outcome[0]


def _released(tmp_path: Path) -> tuple[FileRepository, ModelManifest]:
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    manifest = manifest_for(model, "1.1.0", inputs())
    release_model(repo, model, manifest)
    return repo, manifest


def test_a_pipe_in_place_of_signed_metadata_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = _released(tmp_path)
    targets = repo.metadata_dir / "2.targets.json"
    targets.unlink()
    os.mkfifo(targets)
    assert _in_time(lambda: main(["models", "repo", "refresh", str(repo.dir)]), targets) == 2
    assert ("models repo refresh: "
            f"{targets}: not a regular file (a pipe, a device or a folder); it "
            "was changed outside `appliance models`") in capsys.readouterr().err


def test_a_timestamp_that_is_a_link_to_a_device_is_refused_not_called_an_unfinished_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was taken for an init that stopped halfway, and the advice was to remove the
    repository, keys and all, and init it again."""
    repo, _ = _released(tmp_path)
    timestamp = repo.metadata_dir / "timestamp.json"
    timestamp.unlink()
    timestamp.symlink_to("/dev/zero")
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    err = capsys.readouterr().err
    assert ("models repo refresh: "
            f"{timestamp}: not a regular file (a pipe, a device or a folder)" in err)
    assert "unfinished" not in err


def test_settings_that_are_a_link_to_a_device_are_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = _released(tmp_path)
    settings = repo.dir / "settings.json"
    settings.unlink()
    settings.symlink_to("/dev/zero")
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    assert ("models repo refresh: "
            f"{settings}: not a regular file (a pipe, a device or a folder); put "
            "back the file `appliance models repo init` wrote") in capsys.readouterr().err


def test_a_pipe_or_an_oversized_file_in_place_of_an_assignment_is_not_read(
    tmp_path: Path,
) -> None:
    repo, manifest = _released(tmp_path)
    assign(repo, [("lab", "k1")], manifest)
    [stored] = (repo.targets_dir / "devices" / "lab").iterdir()
    stored.unlink()
    os.mkfifo(stored)
    refused = _in_time(lambda: assignments(repo), stored)
    assert isinstance(refused, RepositoryError)
    assert str(refused).startswith(f"{stored}: not a regular file")
    stored.unlink()
    with stored.open("wb") as handle:  # what was signed, and 64 MiB more
        handle.truncate(1 << 26)
    with pytest.raises(RepositoryError, match=r"more than \d+ bytes, far more than this "
                                              r"repository writes there; put back"):
        assignments(repo)


def _encrypted_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"))


@pytest.mark.parametrize("content", ["garbled", "another key", "encrypted"])
def test_a_key_file_that_holds_no_key_of_its_role_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    """They ended in cryptography's words without the file (a garbled or another key), or in a
    traceback (an encrypted key)."""
    from securesystemslib.signer import CryptoSigner

    repo, _ = _released(tmp_path)
    [pem] = (repo.keys_dir / "timestamp").iterdir()
    pem.write_bytes({"garbled": b"-----BEGIN PRIVATE KEY-----\nnot base64\n",
                     "another key": CryptoSigner.generate_ed25519().private_bytes,
                     "encrypted": _encrypted_key()}[content])
    signed = sorted(p.name for p in repo.metadata_dir.iterdir())
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"models repo refresh: {pem}: not ")
    assert "put back the key file `appliance models repo init` wrote for timestamp" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == signed


@pytest.mark.parametrize("lock", [".rollout.lock", ".rollout.busy", ".lock"])
def test_a_link_in_place_of_a_lock_file_is_refused_and_its_target_left_as_it_was(
    tmp_path: Path, lock: str
) -> None:
    """A deploy wrote its pid over whatever file a link named .rollout.lock pointed at (run as
    root: any file of the system)."""
    repo, manifest = _released(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (repo.dir / lock).unlink(missing_ok=True)
    (repo.dir / lock).symlink_to(victim)
    refused = rf"{lock}: a link or something else where the repository keeps a lock file"
    with pytest.raises(RepositoryError, match=refused), repo.rolling_out("deploy"):
        assign(repo, [("lab", "k1")], manifest)
    assert victim.read_text() == "precious\n"


def test_a_pipe_as_the_kiosk_s_trusted_root_is_refused_not_waited_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config check` and the kiosk waited for ever on a pipe (and read a link to /dev/zero,
    whose size says 0, without end)."""
    pipe = tmp_path / "root.json"
    os.mkfifo(pipe)
    config = tmp_path / "kiosk.yaml"
    config.write_text(f"updates: {{url: 'http://127.0.0.1:8470', trusted_root: '{pipe}'}}\n")
    assert _in_time(lambda: main(["config", "check", str(config)]), pipe) == 2
    assert (f"updates.trusted_root: {pipe}: not TUF root metadata (not a regular file: a pipe, "
            "a device or a folder)") in capsys.readouterr().err


def test_a_garbled_offline_key_does_not_stop_the_timer_signing_the_timestamp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbled targets key, once targets was past half its validity, stopped refresh before
    it signed the timestamp (cryptography's words, no file named): every kiosk would refuse
    the repository once the timestamp expired (and, key files refused by name, it was taken
    for a key kept offline: "bring the targets keys back"). The timestamp is signed, and the
    file named."""
    valid_s = 3600  # the repository's clock is moved, not waited on (RepositoryClock)
    clock = RepositoryClock(monkeypatch, datetime.now(UTC))
    repo = init_repository(tmp_path / "repo", expiry_s={"targets": valid_s})
    [pem] = (repo.keys_dir / "targets").iterdir()
    pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n")
    clock.advance(0.6 * valid_s)  # targets past half its validity: refresh would renew it
    before = repo.latest_version("timestamp")
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("models repo refresh: "
                          f"timestamp signed, but: {pem}: not an unencrypted PEM "
                          "private key")
    assert repo.latest_version("timestamp") == before + 1


def test_a_published_repository_that_lost_its_timestamp_is_not_called_unfinished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was taken for an init that stopped halfway, and the advice was to remove the
    repository and init it again: its keys, which every kiosk trusts, gone."""
    repo, _ = _released(tmp_path)
    (repo.metadata_dir / "timestamp.json").unlink()
    assert main(["models", "repo", "refresh", str(repo.dir)]) == 2
    err = capsys.readouterr().err
    assert ("models repo refresh: "
            f"{repo.metadata_dir / 'timestamp.json'}: missing from a repository "
            "that has published") in err
    assert f"do not remove {repo.dir}, whose keys its kiosks trust" in err
    assert (repo.keys_dir / "root").is_dir()


@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_file_planted_where_a_release_goes_is_replaced_not_published(
    tmp_path: Path, planted: str
) -> None:
    """A link or a file put in public/targets under the name a release stores its model as
    (its SHA-256 is no secret: the model is) was kept and published as the release: every
    kiosk downloaded it and refused it."""
    import hashlib

    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    folder = repo.targets_dir / "models" / "skin-texture-grade" / "1.1.0"
    stored = folder / f"{sha256}.skin-texture-grade-1.1.0.onnx"
    folder.mkdir(parents=True)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not the model")
    if planted == "link":
        stored.symlink_to(junk)
    else:
        stored.write_bytes(b"not the model")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.1.0"]) == 0
    assert not stored.is_symlink()
    assert stored.read_bytes() == model.read_bytes()
    assert junk.read_bytes() == b"not the model"


def test_a_model_file_replaced_by_a_pipe_as_release_reads_it_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file was checked to be a regular one, then opened: a pipe put there in between
    made the release wait for ever."""
    from appliance.updates import release

    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.1.0")
    real_check = release.check_model_file

    def checked_then_replaced(*args: Any) -> None:
        real_check(*args)
        model.unlink()
        os.mkfifo(model)

    monkeypatch.setattr(release, "check_model_file", checked_then_replaced)
    command = ["models", "release", str(model), "--repo", str(repo.dir), "--version", "1.1.0"]
    assert _in_time(lambda: main(command), model) == 2
    assert (f"models release: {model}: no longer a regular file (replaced since it was checked)"
            in capsys.readouterr().err)
