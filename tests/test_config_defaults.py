"""Config without a file (built-in defaults, the shipped model), errors that name the
APPLIANCE__ variable, and `config check` refusing what the daemon would refuse."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import ConfigError, config_from_mapping, load_config_or_defaults
from appliance.shipped import SKIN_MODEL, shipped_path
from tests.skin_frames import generated


def test_an_environment_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({}, "config.yaml", environ={"APPLIANCE__MQTT__PORT": "eighteen"})
    assert "APPLIANCE__MQTT__PORT" in str(refused.value)
    with pytest.raises(ConfigError) as from_file:
        config_from_mapping({"mqtt": {"port": "eighteen"}}, "config.yaml", environ={})
    assert "APPLIANCE__" not in str(from_file.value)


def test_an_unknown_section_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as refused:  # a typo in the section: MQQT
        config_from_mapping({}, "config.yaml", environ={"APPLIANCE__MQQT__PORT": "1884"})
    assert "mqqt (from environment variable APPLIANCE__MQQT__PORT): unknown key" in str(
        refused.value
    )


def test_config_check_refuses_a_missing_model_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  path: models/gone.int8.onnx\n")
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.path: file not found" in err
    assert "gone.int8.onnx" in err


def test_without_a_config_file_the_defaults_use_the_shipped_model_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config_or_defaults(None, environ={"APPLIANCE__SKIN__UM_PER_PX": "8.5"})
    assert config.model.path == str(shipped_path(SKIN_MODEL))
    assert Path(config.model.path).is_file()
    assert config.skin.um_per_px == 8.5
    assert config.state_dir == str(tmp_path / "state")


def _without_appliance_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("APPLIANCE"):
            monkeypatch.delenv(name)


def test_config_check_without_a_file_checks_the_defaults_the_other_commands_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _without_appliance_variables(monkeypatch)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", "1884")
    assert main(["config", "check"]) == 0
    said, summary = capsys.readouterr().out.splitlines()
    assert said.startswith("no ./config.yaml here: checking the built-in defaults with "
                           "APPLIANCE__MQTT__PORT")
    assert summary.startswith("built-in defaults: ok: ")
    assert "broker 127.0.0.1:1884" in summary
    assert f"model {shipped_path(SKIN_MODEL)}" in summary
    assert f"state {tmp_path / 'state'}" in summary
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", "eighteen")  # what analyze would refuse too
    assert main(["config", "check"]) == 2
    assert "APPLIANCE__MQTT__PORT" in capsys.readouterr().err


@pytest.mark.parametrize("named", [["gone.yaml"], ["--config", "gone.yaml"]])
def test_config_check_of_a_named_file_that_is_not_there_is_an_error(
    named: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check", *named]) == 2
    captured = capsys.readouterr()
    assert "gone.yaml: config file not found" in captured.err
    assert f"the file named does not exist in {tmp_path}" in captured.err
    assert "pass --config" not in captured.err  # it was passed
    assert "built-in defaults" not in captured.out + captured.err


def test_config_check_of_a_file_in_a_folder_that_is_not_there_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    named = tmp_path / "etc" / "appliance.yaml"
    assert main(["config", "check", str(named)]) == 2
    error = capsys.readouterr().err
    assert f"{named}: config file not found" in error
    assert f"nor its folder {tmp_path / 'etc'}" in error
    assert "pass --config" not in error


def test_a_daemon_without_config_and_no_config_yaml_here_is_told_to_name_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It names a config to start from: 'create it' alone left a newcomer outside the
    repository with no idea what a config holds."""
    monkeypatch.chdir(tmp_path)
    assert main(["edge"]) == 2
    error = capsys.readouterr().err
    assert (f"config.yaml: config file not found in {tmp_path}: pass --config FILE (the "
            "repository's config.yaml is a working default for one machine) or create it"
            in error)


@pytest.mark.parametrize(("make", "said"), [
    (lambda path: path.mkdir(), "config.yaml: a directory, not a config file"),
    (lambda path: path.symlink_to("gone.yaml"),
     "config.yaml: a symbolic link to gone.yaml, which does not exist"),
    # a link to itself was "a symbolic link to config.yaml, which does not exist"
    (lambda path: path.symlink_to("config.yaml"),
     "config.yaml: a symbolic link loop (the link leads back to itself)"),
])
def test_a_config_yaml_here_that_is_no_file_is_an_error_not_the_defaults(
    make: Callable[[Path], None], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "config.yaml")
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(generated(21, 0, "normal").jpeg)
    assert main(["analyze", str(frame)]) == 2
    assert capsys.readouterr().err.startswith(f"analyze: {said}")
    assert main(["config", "check"]) == 2
    assert said in capsys.readouterr().err


def test_config_check_refuses_a_model_file_the_daemon_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not an onnx model")
    config = tmp_path / "config.yaml"
    config.write_text(f"model:\n  path: {garbage}\n")
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.path:" in err
    assert "model.onnx" in err


def test_the_snippet_calibrate_prints_keeps_the_shipped_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("skin:\n  um_per_px: 12.5\n")  # exactly what `appliance calibrate` says
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"model {shipped_path(SKIN_MODEL)}" in out
    assert "12.5 um/px" in out


def test_model_path_null_turns_classification_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  path: null\n")
    assert main(["config", "check", str(config)]) == 0
    assert "model none" in capsys.readouterr().out


def test_config_check_reads_a_pathology_server_s_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides = tmp_path / "slides"
    config = tmp_path / "pathology.yaml"
    config.write_text("pathology:\n  slide_roots: [slides]\n  int8_model: models/gone.onnx\n")
    assert main(["config", "check", str(config)]) == 2  # serve could use neither
    refused = capsys.readouterr().err
    assert f"pathology.slide_roots: {slides}: not a folder" in refused
    assert f"pathology.int8_model: file not found: {tmp_path / 'models' / 'gone.onnx'}" in refused
    slides.mkdir()
    config.write_text("pathology:\n  slide_roots: [slides]\n  client_id: lab-0\n")
    assert main(["config", "check", str(config)]) == 0
    said = capsys.readouterr().out
    assert ": ok: pathology server lab-0: 1 slide root(s), backends " in said
    assert "kiosk" not in said


@pytest.mark.parametrize("arguments", [
    ["config", "check", ""], ["config", "check", "--config", ""], ["fleet", "--config", ""],
])
def test_an_empty_config_name_is_refused_not_read_as_the_defaults_or_a_folder(
    arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`config check "$CONF"` with CONF unset checked the built-in defaults and said ok, exit
    0; `--config ""` said '.: a directory, not a config file'."""
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().endswith(
        "config file name '' is empty: name the config file (a script's \"$VARIABLE\" left "
        "unset?)")
    assert "ok" not in captured.out


DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.parametrize(("shipped", "described", "not_described"), [
    ("config.backoffice.yaml", "ok: back office: store sqlite:////var/lib/appliance/"
     "backoffice.sqlite3, share group backoffice; broker 127.0.0.1:8883 (plain), prefix "
     "appliance, state /var/lib/appliance", ("kiosk", "device", "camera", "console")),
    ("config.edge.yaml", "ok: kiosk shop-1/kiosk-1: camera uvc (forever), "
     "model none, 10.0 um/px; broker 127.0.0.1:8883", ("back office", "console", "pathology")),
])
def test_config_check_says_what_role_a_shipped_config_is_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *,
    shipped: str, described: str, not_described: tuple[str, ...],
) -> None:
    """`config check` on the back office's config described a kiosk that file is not
    ("device lab/kiosk-dev-1, camera synthetic ..."): every config is read into one tree,
    whose kiosk defaults it showed whatever the file was for."""
    _without_appliance_variables(monkeypatch)
    text = (DEPLOY / shipped).read_text()  # as shipped, but for this host: no TLS, no model
    text = text.replace("broker.example.org", "127.0.0.1").replace("enabled: true",
                                                                   "enabled: false")
    text = text.replace("/opt/appliance/models/skin-texture-grade.int8.onnx", "null")
    text = text.replace("kiosk-CHANGE-ME", "kiosk-1").replace("site-CHANGE-ME", "shop-1")
    config = tmp_path / shipped
    config.write_text(text)
    assert main(["config", "check", str(config)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"{config}: {described}"), said
    assert not [word for word in not_described if word in said], said


def test_config_check_names_a_back_office_store_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _without_appliance_variables(monkeypatch)
    config = tmp_path / "backoffice.yaml"
    config.write_text("store:\n  url: postgresql://bo:s3cret@db.fleet.internal/results\n")
    assert main(["config", "check", str(config)]) == 0
    said = capsys.readouterr().out
    assert ": ok: back office: store postgresql://bo:***@db.fleet.internal/results, " in said
    assert "s3cret" not in said
    assert "kiosk" not in said


def test_config_check_refuses_a_console_bind_the_console_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`config check` said "ok: console on 0.0.0.0 port 8080" of a console that `appliance
    console` refuses at start (exit 2: plain HTTP to the network), so a config checked before
    it was installed passed what the start then refused."""
    _without_appliance_variables(monkeypatch)
    config = tmp_path / "console.yaml"
    config.write_text("console:\n  bind: 0.0.0.0\n")
    assert main(["config", "check", str(config)]) == 2  # on main: 0, "ok"
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        f"config error: {config}: the daemon would refuse it:\n  console.bind is 0.0.0.0, not "
        "loopback, and console.trusted_proxies names no TLS proxy: passwords and session "
        "cookies would cross the network in clear; keep console.bind at 127.0.0.1 behind a TLS "
        "reverse proxy and name it in console.trusted_proxies (README, Back-office console, "
        "TLS), or set console.allow_plain_http: true to serve plain HTTP anyway\n")
    monkeypatch.setenv("APPLIANCE__CONSOLE__ALLOW_PLAIN_HTTP", "true")
    assert main(["config", "check", str(config)]) == 0
    assert ": ok: console on 0.0.0.0 port 8080 in plain HTTP (console.allow_plain_http); " in (
        capsys.readouterr().out)
    monkeypatch.delenv("APPLIANCE__CONSOLE__ALLOW_PLAIN_HTTP")
    config.write_text("console:\n  bind: 0.0.0.0\n  trusted_proxies: [192.0.2.10]\n")
    assert main(["config", "check", str(config)]) == 0  # a TLS proxy on another host in front
    said = capsys.readouterr().out
    assert ": ok: console on 0.0.0.0 port 8080; " in said


def test_a_console_bound_for_others_behind_a_proxy_on_its_own_host_only_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """console.bind 0.0.0.0 with trusted_proxies [127.0.0.1] (README's proxy on the same host)
    passed as 'a TLS proxy in front': the proxy reaches the console on loopback, and everyone
    else reached it past the proxy, logins and session cookies in plain HTTP."""
    _without_appliance_variables(monkeypatch)
    config = tmp_path / "console.yaml"
    config.write_text("console:\n  bind: 0.0.0.0\n  trusted_proxies: [127.0.0.1, '::1']\n")
    assert main(["config", "check", str(config)]) == 2  # on main: 0, "ok"
    assert capsys.readouterr().err == (
        f"config error: {config}: the daemon would refuse it:\n  console.bind is 0.0.0.0, not "
        "loopback, while console.trusted_proxies names proxies on this host only (127.0.0.1/32, "
        "::1/128), which reach the console on loopback: others would reach it past them, "
        "passwords and session cookies in clear; set console.bind: 127.0.0.1 (README, "
        "Back-office console, TLS), or console.allow_plain_http: true to serve plain HTTP "
        "anyway\n")
    config.write_text("console:\n  bind: 0.0.0.0\n  trusted_proxies: [127.0.0.1, 192.0.2.10]\n")
    assert main(["config", "check", str(config)]) == 0  # a proxy on another host too
    config.write_text("console:\n  bind: 127.0.0.1\n  trusted_proxies: [127.0.0.1]\n")
    assert main(["config", "check", str(config)]) == 0  # README's: a proxy on this host


def test_a_template_s_placeholders_name_the_provisioning_script_where_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`config check deploy/config.edge.yaml` told to set what "provision.py --device" and
    "provision.py --host" gave: no such file at the top of a checkout (it is
    deploy/mosquitto/provision.py), found only by searching."""
    _without_appliance_variables(monkeypatch)
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"device": {"id": "kiosk-CHANGE-ME", "site": "site-CHANGE-ME"},
                             "mqtt": {"host": "broker.example.org"}}, "template")
    named = re.findall(r"([\w./-]*provision\.py) --(device|host)", str(refused.value))
    assert sorted(option for _, option in named) == ["device", "device", "host"]
    for script, _ in named:
        assert (DEPLOY.parent / script).is_file(), script


@pytest.mark.parametrize(("um_per_px", "warned"), [("6", True), ("13.5", True), ("7", False)])
def test_config_check_warns_of_a_scale_the_measurement_was_not_validated_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    um_per_px: str, warned: bool,
) -> None:
    """A config at 6 um/px passed as "ok" where every frame the kiosk measured at it then read
    "not measured" for all texture and pore features, with no grade; calibrate warns of such a
    scale, config check said nothing."""
    monkeypatch.chdir(tmp_path)
    _without_appliance_variables(monkeypatch)
    monkeypatch.setenv("APPLIANCE__SKIN__UM_PER_PX", um_per_px)
    assert main(["config", "check"]) == 0  # a scale the config takes: a warning, not a refusal
    warning = capsys.readouterr().err
    assert warning == ("config check: warning: built-in defaults: skin.um_per_px "
                       f"{um_per_px} is outside 7-13 um/px, the range the skin measurement was "
                       "validated on (docs/measurement.md): every frame measured at it has its "
                       "texture and pore features marked not measured (not_validated) and no "
                       "grade; check the calibration (appliance calibrate)\n" if warned else "")
