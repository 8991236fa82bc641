"""``--password-file PATH`` on every command that logs in to the broker as an operator:
``models deploy|rollback|halt|status`` (the rollout login) and ``pathology job
submit|list|cancel`` (a job login), as ``fleet resend`` took it
(tests/backoffice/test_backoffice_resend_password_file.py). Before, they took the password from
``$APPLIANCE_MQTT_PASSWORD`` alone, and README showed ``APPLIANCE_MQTT_PASSWORD=$(cat
rollout.password)``, which puts it in the command's environment (``ps e`` shows it, and every
program the command starts inherits it).

Each command refuses a file its group or everyone may read, by name, before any broker is
reached; on a mosquitto of the test's own that asks for passwords, the file's first line logs
in (the command goes on to what it says after the login), another password in it is refused,
and without the file ``$APPLIANCE_MQTT_PASSWORD`` still logs in."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.backoffice.store import open_store
from appliance.cli import main
from appliance.transport.broker import PrivateBroker, free_port
from appliance.updates.operations import init_repository
from appliance.updates.testing import linear_model

MODEL = "skin-texture-grade"
PASSWORDS = {"rollout": "rollout-pw-1", "lab-user": "lab-pw-2"}


@dataclass(frozen=True)
class Place:
    """A released model's repository, a store with a rollout no deploy runs, a slide file."""

    folder: Path
    repo: Path
    store_url: str
    slide: Path


@dataclass(frozen=True)
class Command:
    """A command line, its login, and what it says once the broker took that login."""

    argv: Callable[[Place], list[str]]
    login: str
    after_login: tuple[int, str]  # exit code, a line (start) it prints on stdout or stderr


COMMANDS = {
    "models deploy": Command(
        lambda p: ["models", "deploy", MODEL, "1.0.0", "--all", "--repo", str(p.repo)],
        "rollout", (2, "models deploy: no device matches; kiosks appear once they publish")),
    "models rollback": Command(
        lambda p: ["models", "rollback", MODEL, "--to", "1.0.0", "--repo", str(p.repo)],
        "rollout", (2, f"models rollback: no device is assigned {MODEL} now")),
    "models halt": Command(
        lambda p: ["models", "halt", MODEL, "--repo", str(p.repo), "--reason", "test"],
        "rollout", (0, "rollout r-1 halted (no deploy was running it")),
    "models status": Command(
        lambda p: ["models", "status", "--repo", str(p.repo)],
        "rollout", (0, "no device has reported a model or been assigned one yet")),
    "pathology job submit": Command(
        lambda p: ["pathology", "job", "submit", str(p.slide), "--um-per-px", "1"],
        "lab-user", (0, "lab-user/")),
    "pathology job list": Command(
        lambda p: ["pathology", "job", "list"], "lab-user", (0, "0 job(s)")),
    "pathology job cancel": Command(
        lambda p: ["pathology", "job", "cancel", "job-1"],
        "lab-user", (1, "pathology job cancel: lab-user/job-1 is unknown")),
}


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    """No APPLIANCE settings from this environment, no ./config.yaml; a model released, a
    rollout recorded interrupted (its deploy killed: `models halt` halts it itself)."""
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    repo = init_repository(tmp_path / "repo")
    model = linear_model(tmp_path / "m.onnx", "1.0.0")
    assert main(["models", "release", str(model), "--repo", str(repo.dir), "--version",
                 "1.0.0"]) == 0
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = open_store(url)
    store.write("INSERT INTO rollouts (rollout_id, model_name, model_version, decision, scope, "
                "canaries, state, reason, created_at, updated_at, repository) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [("r-1", MODEL, "1.0.0", "deploy", "all", 0, "interrupted", None,
                  "2026-12-07T10:00:00.000000Z", "2026-12-07T10:00:00.000000Z", None)])
    store.close()
    slide = tmp_path / "slide.png"
    slide.write_bytes(b"a slide the servers read")
    return Place(tmp_path, repo.dir, url, slide)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A mosquitto of this test's own that lets in only the logins of PASSWORDS."""
    started = PrivateBroker(workdir=tmp_path / "broker", passwords=PASSWORDS)
    started.start()
    try:
        yield started
    finally:
        started.close()


def _config(place: Place, login: str, port: int) -> Path:
    config = place.folder / f"{login}.yaml"
    config.write_text(f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  username: {login}\n"
                      f"store:\n  url: {place.store_url}\n", encoding="utf-8")
    return config


def _password_file(place: Place, text: str, mode: int) -> Path:
    path = place.folder / "login.password"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize(("mode", "readers"), [(0o644, "everyone"), (0o640, "its group")])
def test_a_password_file_others_may_read_is_refused_by_name_before_any_broker(
    place: Place, capsys: pytest.CaptureFixture[str], name: str, mode: int, readers: str,
) -> None:
    """Refused, exit 2, the file named with what to do; no broker listens on the port."""
    command = COMMANDS[name]
    secret = _password_file(place, f"{PASSWORDS[command.login]}\n", mode)
    config = _config(place, command.login, free_port())
    capsys.readouterr()
    code = main([*command.argv(place), "--config", str(config), "--password-file", str(secret)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.endswith(
        f"{name}: --password-file {secret}: {readers} may read it (mode {mode:04o}); a "
        f"login's password is for its owner alone: chmod 600 {secret}\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_password_file_without_a_login_to_use_it_is_refused(
    place: Place, capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    secret = _password_file(place, "s3cret\n", 0o600)
    capsys.readouterr()
    code = main([*COMMANDS[name].argv(place), "--password-file", str(secret)])
    err = capsys.readouterr().err
    assert code == 2, err
    example = ("LOGIN, a login provisioned with --pathology-client"
               if name.startswith("pathology") else "rollout")
    assert err.endswith(f"{name}: --password-file: no login to use it with; name it with "
                        f"mqtt.username (APPLIANCE__MQTT__USERNAME={example})\n")


def _run(command: Command, place: Place, config: Path, *extra: str,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*command.argv(place), "--config", str(config), *extra])
    said = capsys.readouterr()
    return code, said.out + said.err


@pytest.mark.broker
@pytest.mark.parametrize("name", COMMANDS)
def test_the_password_file_s_first_line_logs_in_and_another_is_refused(
    place: Place, broker: PrivateBroker, capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    command = COMMANDS[name]
    config = _config(place, command.login, broker.port)
    secret = _password_file(place, "not-the-password\n", 0o600)
    code, said = _run(command, place, config, "--password-file", str(secret), capsys=capsys)
    assert code == 2, said
    assert f"refused {command.login} (reason code 0x87: Not authorized)" in said
    # the refusal says where the password came from: the file, not the environment
    assert "check mqtt.username and the password (the first line of --password-file)" in said
    assert "APPLIANCE_MQTT_PASSWORD" not in said
    secret.write_text(f"{PASSWORDS[command.login]}\nthe second line is not read\n")
    code, said = _run(command, place, config, "--password-file", str(secret), capsys=capsys)
    assert "refused" not in said
    assert (code, command.after_login[1] in said) == (command.after_login[0], True), said


@pytest.mark.broker
@pytest.mark.parametrize("name", COMMANDS)
def test_without_the_file_the_environment_s_password_still_logs_in(
    place: Place, broker: PrivateBroker, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, name: str,
) -> None:
    command = COMMANDS[name]
    config = _config(place, command.login, broker.port)
    code, said = _run(command, place, config, capsys=capsys)
    assert code == 2, said  # no password at all: refused
    assert f"refused {command.login} (reason code 0x87: Not authorized)" in said
    assert ("check mqtt.username and the password (APPLIANCE_MQTT_PASSWORD or the "
            "mqtt-password credential)") in said
    monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", PASSWORDS[command.login])
    code, said = _run(command, place, config, capsys=capsys)
    assert "refused" not in said
    assert (code, command.after_login[1] in said) == (command.after_login[0], True), said
