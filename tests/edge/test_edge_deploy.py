"""The deploy files: the units have what systemd needs (broker identities: test_broker_identity),
and the kiosk daemon runs under its unit's system call filters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest

from appliance.edge.testing import ResultCollector, wait_until
from appliance.transport.broker import free_port
from tests.test_deploy_units import service_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EDGE_UNIT = DEPLOY / "appliance-edge.service"


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
    # shown only while the edge runs, never starting it (tests/test_deploy_kiosk_screen_unit.py)
    assert unit["Unit"]["Requisite"] == "appliance-edge.service"
    assert "Wants" not in unit["Unit"]


REFUSED_PROBE = """
import os
for name, call in (("setuid", lambda: os.setuid(os.getuid())),
                   ("sched_setaffinity", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
                   ("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 0))):
    try:
        call()
        print(name, "allowed")
    except PermissionError:
        print(name, "refused")
"""


def confined(*command: str) -> list[str]:
    """``command`` under the edge unit's filters as systemd loads them (tests/unit_syscalls.py)."""
    return [sys.executable, "-m", "tests.unit_syscalls", str(EDGE_UNIT), "--", *command]


def test_the_edge_unit_refuses_privileged_and_resource_calls() -> None:
    """It filtered to @system-service only, which holds setuid, setgroups, chown and the like
    (the back office and pathology units take @privileged out): a compromised kiosk daemon
    could call them, its capabilities the one thing in the way."""
    assert service_settings("appliance-edge.service")["SystemCallFilter"] == [
        "@system-service", "~@privileged @resources"]
    probe = subprocess.run(confined(sys.executable, "-c", REFUSED_PROBE), cwd=DEPLOY.parent,
                           capture_output=True, text=True, check=False, timeout=60)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split("\n")[:3] == [
        "setuid refused", "sched_setaffinity refused", "setpriority refused"]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """The datagram socket systemd gives a Type=notify service ($NOTIFY_SOCKET)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(0.5)
        yield sock


def _received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


@pytest.mark.broker
def test_the_edge_daemon_measures_and_delivers_under_its_units_filters(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, notify_socket: socket.socket,
) -> None:
    """The whole kiosk daemon (synthetic camera, real measurement, the shipped INT8 model, the
    outbox, MQTT, the kiosk screen and /metrics servers, sd_notify and the watchdog) under the
    unit's system call, namespace and address family filters: it measures, delivers, says
    READY=1 and WATCHDOG=1, exits 0, and nothing it calls is refused."""
    site = f"lab-{topic_prefix[-10:]}"
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"device: {{id: kiosk-f, site: {site}}}\ncamera: {{source: synthetic, limit: 2}}\n"
        f"mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}, "
        f"topic_prefix: {topic_prefix}}}\nstate_dir: {tmp_path / 'state'}\n"
        f"edge: {{synthetic_fps: 60, metrics_port: {free_port()}}}\n"
        f"screen: {{port: {free_port()}}}\n")
    collector = ResultCollector(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#",
                                f"c-{topic_prefix[-10:]}")
    environment = {**os.environ, "NOTIFY_SOCKET": notify_socket.getsockname(),
                   "WATCHDOG_USEC": "1000000"}
    environment.pop("WATCHDOG_PID", None)
    try:
        done = subprocess.run(
            confined(sys.executable, "-m", "appliance", "edge", "--config", str(config)),
            cwd=DEPLOY.parent, env=environment, capture_output=True, text=True, check=False,
            timeout=240)
        assert wait_until(lambda: len(collector.ids()) == 2, 10), done.stderr[-3000:]
    finally:
        collector.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not permitted" not in done.stderr.lower(), done.stderr[-3000:]
    messages = _received(notify_socket)
    assert "READY=1" in messages, messages
    assert "WATCHDOG=1" in messages, messages
