"""The deploy files: the units have what systemd needs (broker identities: test_broker_identity)."""

from __future__ import annotations

from configparser import ConfigParser
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_service_unit_is_notify_with_watchdog_credentials_and_hardening() -> None:
    unit = ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "appliance-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["LoadCredential"].startswith("mqtt-password:")
    assert "appliance edge --config" in service["ExecStart"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3"}


def test_a_config_the_daemon_refuses_is_not_restarted_every_5_s() -> None:
    """RestartPreventExitStatus= is read from the main process only: a config check that
    fails in ExecStartPre= with 2 was restarted every RestartSec, forever (no start limit),
    loading the model each time. The daemon refuses such a config itself, with 2."""
    unit = ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "appliance-edge.service")
    service = unit["Service"]
    assert "2" in service["RestartPreventExitStatus"].split()
    assert "config check" not in service.get("ExecStartPre", "")


def test_udev_rule_names_the_stable_symlink_the_config_uses() -> None:
    rule = (DEPLOY / "99-scalar-microscope.rules").read_text()
    lines = [line for line in rule.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    assert 'SUBSYSTEM=="video4linux"' in lines[0]
    assert 'SYMLINK+="scalar-microscope"' in lines[0]


def test_kiosk_screen_unit_shows_the_loopback_page_full_screen() -> None:
    from appliance.config import load_config

    unit = ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "appliance-kiosk-screen.service")
    command = unit["Service"]["ExecStart"]
    # the port the kiosk's config serves (install.sh edge installs deploy/config.edge.yaml),
    # and the development config.yaml alike
    for config in (DEPLOY / "config.edge.yaml", DEPLOY.parent / "config.yaml"):
        port = load_config(config).screen.port
        assert port is not None, f"{config.name} serves no kiosk screen"
        assert f"--app=http://127.0.0.1:{port}/" in command, config.name
    assert "--kiosk" in command
    assert "--incognito" in command
    assert unit["Unit"]["Wants"] == "appliance-edge.service"
