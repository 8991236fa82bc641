"""`fleet resend --password-file PATH`: the rollout login's password from a file that its
owner alone may read, and the line `store restore` prints says so. Before, the line had the
password put in the command's environment (`APPLIANCE_MQTT_PASSWORD=$(cat rollout.password)`),
which `ps e` shows and every program the command starts inherits, and `fleet resend` had no
other way to take it."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, open_store
from appliance.cli import main
from appliance.synthetic import fleet
from appliance.transport.broker import free_port
from tests.fleet_broker import FleetBroker, provisioned_broker

KIOSK = "shop-1/kiosk-a"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No broker settings or password from this environment, no config.yaml found."""
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _since() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _password_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "rollout.password"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _config(tmp_path: Path, port: int, ca: Path | None = None) -> Path:
    """The rollout login's config: the broker, the user name (the password comes apart)."""
    config = tmp_path / "rollout.yaml"
    tls = f"  tls:\n    enabled: true\n    ca_file: {ca}\n" if ca else ""
    config.write_text(f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  username: rollout\n{tls}",
                      encoding="utf-8")
    return config


@pytest.mark.usefixtures("clean_env")
def test_the_restore_prints_a_resend_that_reads_the_password_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    result = fleet.sample_result(random.Random(1), "lab", "k1", 0)
    store.write_batch(Batch(results=[result_row(result, "2026-12-01T10:00:00.000000Z",
                                                result.to_json().decode())]), 10)
    store.close()
    backup = tmp_path / "backup.sqlite3"
    assert main(["store", "backup", "--store", url, "--out", str(backup)]) == 0
    (tmp_path / "store.sqlite3").unlink()
    capsys.readouterr()
    assert main(["store", "restore", str(backup), "--store", url]) == 0
    said = capsys.readouterr().out
    assert ("APPLIANCE__MQTT__USERNAME=rollout appliance fleet resend --since "
            "2026-12-01T09:45:00Z --password-file rollout.password") in said
    assert "APPLIANCE_MQTT_PASSWORD" not in said
    assert "$(" not in said


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("mode", "readers"), [
    (0o640, "its group"), (0o604, "everyone"), (0o644, "everyone")])
def test_fleet_resend_refuses_a_password_file_others_may_read_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int, readers: str,
) -> None:
    """Refused before any broker is reached (none listens on the config's port)."""
    secret = _password_file(tmp_path, "s3cret\n", mode)
    config = _config(tmp_path, free_port())
    assert main(["fleet", "resend", "--since", _since(), "--device", KIOSK, "--config",
                 str(config), "--password-file", str(secret)]) == 2
    assert capsys.readouterr().err == (
        f"fleet resend: --password-file {secret}: {readers} may read it (mode {mode:04o}); a "
        f"login's password is for its owner alone: chmod 600 {secret}\n")


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("text", "why"), [
    ("\nsecond line\n", "its first line is empty (or blank); it is the login's password"),
    (None, "file not found; check the path"),
])
def test_fleet_resend_refuses_a_password_file_that_holds_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, why: str,
) -> None:
    secret = (_password_file(tmp_path, text, 0o600) if text is not None
              else tmp_path / "rollout.password")
    config = _config(tmp_path, free_port())
    assert main(["fleet", "resend", "--since", _since(), "--config", str(config),
                 "--password-file", str(secret)]) == 2
    assert capsys.readouterr().err == f"fleet resend: --password-file {secret}: {why}\n"


@pytest.mark.usefixtures("clean_env")
def test_fleet_resend_refuses_a_password_file_without_a_login_to_use_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    secret = _password_file(tmp_path, "s3cret\n", 0o600)
    assert main(["fleet", "resend", "--since", _since(), "--password-file", str(secret)]) == 2
    assert capsys.readouterr().err == (
        "fleet resend: --password-file: no login to use it with; name it with mqtt.username "
        "(APPLIANCE__MQTT__USERNAME=rollout)\n")


@pytest.fixture
def fleet_broker() -> Iterator[FleetBroker]:
    with provisioned_broker([f"--device={KIOSK}", "--worker", "backoffice-1"]) as broker:
        yield broker


@pytest.mark.broker
@pytest.mark.usefixtures("clean_env")
def test_fleet_resend_logs_in_with_the_password_file_s_first_line(
    fleet_broker: FleetBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped broker takes the rollout login with the file's password (the kiosk has no
    session: not asked, exit 1), refuses it with another (exit 2), and without the file this
    environment gives no password at all."""
    config = _config(tmp_path, fleet_broker.port, fleet_broker.folder / "certs" / "ca.crt")
    command = ["fleet", "resend", "--since", _since(), "--device", KIOSK, "--config",
               str(config)]
    secret = _password_file(tmp_path, f"{fleet_broker.password('rollout')}\nnotes\n", 0o600)
    assert main([*command, "--password-file", str(secret)]) == 1
    assert capsys.readouterr().out.startswith(f"{KIOSK}: NOT ASKED: no session of the kiosk")
    secret.write_text("not-the-password\n", encoding="utf-8")
    assert main([*command, "--password-file", str(secret)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err
    assert "the password (the first line of --password-file)" in err
    assert main(command) == 2
    assert "refused" in capsys.readouterr().err


@pytest.mark.broker
@pytest.mark.usefixtures("clean_env")
def test_a_copy_of_the_password_with_blanks_around_it_logs_in_as_the_broker_reads_it(
    fleet_broker: FleetBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """provision.py keeps a credentials/NAME.password edited to "  pw  \\r\\n" as "pw", and the
    mqtt-password credential reads it so: --password-file logs in with it as they do (on main
    it sent the blanks, refused), and a blank first line is refused as an empty one."""
    config = _config(tmp_path, fleet_broker.port, fleet_broker.folder / "certs" / "ca.crt")
    command = ["fleet", "resend", "--since", _since(), "--device", KIOSK, "--config",
               str(config)]
    edited = _password_file(tmp_path, f"  {fleet_broker.password('rollout')}\t \r\n", 0o600)
    assert main([*command, "--password-file", str(edited)]) == 1
    assert capsys.readouterr().out.startswith(f"{KIOSK}: NOT ASKED: no session of the kiosk")
    edited.write_text(" \t \nsecond line\n", encoding="utf-8")
    assert main([*command, "--password-file", str(edited)]) == 2
    assert "its first line is empty (or blank)" in capsys.readouterr().err
