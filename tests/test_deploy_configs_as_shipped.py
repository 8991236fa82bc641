"""The config templates in deploy/, as install.sh puts them and their units run them (a broker
on another host over TLS, the unit's APPLIANCE__ variables), pass `appliance config check`:
each new rule of the config (a login sent only inside TLS, the console's bind) must keep
the shipped examples valid, or an operator following README is refused by the product."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.shipped import SKIN_MODEL, shipped_path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# what each template's unit sets (deploy/appliance-*.service), beyond the state folder
BROKER = "broker.fleet.internal"  # the operator's broker, where the templates hold an example
# the daemon each template's unit runs, and the keys the template holds placeholders at
DAEMONS = {
    "config.edge.yaml": (["edge"], ["device.id", "device.site", "mqtt.host", "mqtt.username"]),
    "config.backoffice.yaml": (["backoffice"], ["mqtt.host"]),
    "config.pathology.yaml": (["pathology", "serve"], ["mqtt.host"]),
}
UNIT_VARIABLES = {
    "config.edge.yaml": {},
    "config.backoffice.yaml": {"APPLIANCE__MQTT__USERNAME": "backoffice-1",
                               "APPLIANCE__BACKOFFICE__CLIENT_ID": "backoffice-1"},
    "config.pathology.yaml": {"APPLIANCE__MQTT__USERNAME": "pathology-host-0",
                              "APPLIANCE__PATHOLOGY__CLIENT_ID": "pathology-host-0"},
}


@pytest.fixture(scope="module")
def fleet_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet CA as provision.py makes it for the fleet's broker (README: Install a kiosk)."""
    out = tmp_path_factory.mktemp("provisioned")
    subprocess.run([sys.executable, str(DEPLOY / "mosquitto" / "provision.py"), "--out",
                    str(out), "--device", "shop-1/kiosk-1", "--host", BROKER],
                   check=True, capture_output=True, timeout=120)
    return out / "certs" / "ca.crt"


@pytest.mark.parametrize("template", sorted(UNIT_VARIABLES))
def test_a_shipped_template_passes_config_check_as_its_unit_runs_it(
    template: str, fleet_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("APPLIANCE"):
            monkeypatch.delenv(name)
    for name, value in {**UNIT_VARIABLES[template],
                        "APPLIANCE__STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "state").mkdir()
    (tmp_path / "slides").mkdir()
    text = (DEPLOY / template).read_text()  # only its files are this host's: same keys, TLS on
    text = text.replace("/etc/appliance/ca.crt", str(fleet_ca)).replace("/srv/slides",
                                                                         str(tmp_path / "slides"))
    text = text.replace("/opt/appliance/models/skin-texture-grade.int8.onnx",
                        str(shipped_path(SKIN_MODEL)))
    # the host's own names, as README's "editor /etc/appliance/config.yaml" step sets them
    text = text.replace("kiosk-CHANGE-ME", "kiosk-1").replace("site-CHANGE-ME", "shop-1")
    config = tmp_path / template
    config.write_text(text.replace("broker.example.org", BROKER))
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr().err
    assert f"; broker {BROKER}:8883 (tls), prefix appliance" in capsys.readouterr().out


@pytest.mark.parametrize("template", sorted(DAEMONS))
def test_a_template_as_shipped_is_refused_naming_each_placeholder(
    template: str, fleet_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its files in place (the CA, the model, the slides), every key the operator still has to
    fill in is named, by `config check` and by the daemon its unit runs, exit 2 (which the
    unit does not restart). The back office and pathology server started on the template's
    broker.example.org and retried it for ever; the kiosk's CHANGE-ME names are refused
    since this session (`config check` said "ok: kiosk site-CHANGE-ME/kiosk-CHANGE-ME", and
    the kiosk heard only that the broker refused its credentials, exit 3)."""
    for name in list(os.environ):
        if name.upper().startswith("APPLIANCE"):
            monkeypatch.delenv(name)
    for name, value in {**UNIT_VARIABLES[template], "APPLIANCE__STATE_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "slides").mkdir()
    text = (DEPLOY / template).read_text().replace("/etc/appliance/ca.crt", str(fleet_ca))
    text = text.replace("/srv/slides", str(tmp_path / "slides"))
    config = tmp_path / template
    config.write_text(text.replace("/opt/appliance/models/skin-texture-grade.int8.onnx",
                                   str(shipped_path(SKIN_MODEL))))
    daemon, keys = DAEMONS[template]
    for command in (["config", "check", str(config)], [*daemon, "--config", str(config)]):
        assert main(command) == 2, command
        said = capsys.readouterr().err
        named = [line.strip().partition(": got ")[0] for line in said.splitlines()
                 if "the template's placeholder: set " in line
                 or "the template's example (a name reserved for examples" in line]
        assert sorted(named) == keys, said
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["slides", template])


def test_the_kiosk_template_is_refused_until_its_names_are_filled_in(
    fleet_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`config check` said "ok: kiosk site-CHANGE-ME/kiosk-CHANGE-ME" of the template as
    install.sh puts it, before README's editor step: the kiosk then logged in as
    kiosk-CHANGE-ME and heard only that the broker refused its credentials (exit 3)."""
    for name in list(os.environ):
        if name.upper().startswith("APPLIANCE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("APPLIANCE__STATE_DIR", str(tmp_path))
    text = (DEPLOY / "config.edge.yaml").read_text().replace("/etc/appliance/ca.crt",
                                                             str(fleet_ca))
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("/opt/appliance/models/skin-texture-grade.int8.onnx",
                                   str(shipped_path(SKIN_MODEL))))
    for command in (["config", "check", str(config)], ["edge", "--config", str(config)]):
        assert main(command) == 2
        said = capsys.readouterr().err
        for key, value in [("device.id", "kiosk"), ("device.site", "site"),
                           ("mqtt.username", "kiosk")]:
            assert f"{key}: got '{value}-CHANGE-ME', the template's placeholder: set " in said
    assert not (tmp_path / "outbox.sqlite3").exists()
