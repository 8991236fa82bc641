"""The deploy files: the units have what systemd needs (broker identities: test_broker_identity)."""

from __future__ import annotations

import subprocess
import sys
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
    for name in ("appliance-edge.service", "appliance-backoffice@.service"):
        unit = ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(DEPLOY / name)
        service = unit["Service"]
        assert "2" in service["RestartPreventExitStatus"].split(), name
        assert "config check" not in service.get("ExecStartPre", ""), name


def test_the_back_office_worker_refuses_what_config_check_refuses_with_2(tmp_path: Path) -> None:
    """Its unit has no ExecStartPre check either (the edge daemon's: test_edge_daemon.py)."""
    config = tmp_path / "backoffice.yaml"
    config.write_text(f"mqtt: {{tls: {{enabled: true, ca_file: missing-ca.crt}}}}\n"
                      f"state_dir: {tmp_path / 'state'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "backoffice", "--config", str(config)],
        check=False, cwd=DEPLOY.parent, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "missing-ca.crt" in done.stderr


def test_udev_rule_names_the_stable_symlink_the_config_uses() -> None:
    rule = (DEPLOY / "99-scalar-microscope.rules").read_text()
    lines = [line for line in rule.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    assert 'SUBSYSTEM=="video4linux"' in lines[0]
    assert 'SYMLINK+="scalar-microscope"' in lines[0]


def test_kiosk_screen_unit_shows_the_loopback_page_full_screen(tmp_path: Path) -> None:
    from appliance.config import load_config

    unit = ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "appliance-kiosk-screen.service")
    command = unit["Service"]["ExecStart"]
    # the port the kiosk's config serves (install.sh edge installs deploy/config.edge.yaml),
    # and the development config.yaml alike
    filled_in = tmp_path / "config.edge.yaml"  # as the installer's editor step leaves it
    filled_in.write_text((DEPLOY / "config.edge.yaml").read_text().replace("CHANGE-ME", "1")
                         .replace("broker.example.org", "broker.fleet.internal"))
    for config in (filled_in, DEPLOY.parent / "config.yaml"):
        port = load_config(config).screen.port
        assert port is not None, f"{config.name} serves no kiosk screen"
        assert f"--app=http://127.0.0.1:{port}/" in command, config.name
    assert "--kiosk" in command
    assert "--incognito" in command
    assert unit["Unit"]["Wants"] == "appliance-edge.service"
