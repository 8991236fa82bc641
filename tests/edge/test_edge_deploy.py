"""The deploy files: the broker ACL really confines devices; the unit has what systemd needs."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.transport.broker import free_port, port_open

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def acl_broker() -> Iterator[int]:
    """mosquitto with the shipped ACL and two users (kiosk-a, kiosk-b); yields its port."""
    # Started as root, mosquitto reads these files as user "mosquitto": keep them readable.
    workdir = Path(tempfile.mkdtemp(prefix="appliance-acl-"))
    workdir.chmod(0o755)
    passwords = workdir / "passwd"
    for user in ("kiosk-a", "kiosk-b"):
        create = ["-c"] if user == "kiosk-a" else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(passwords), user, "pw"], check=True)
    passwords.chmod(0o644)
    shutil.copy(DEPLOY / "mosquitto" / "appliance.acl", workdir / "acl")
    (workdir / "acl").chmod(0o644)
    port = free_port()
    (workdir / "broker.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwords}\nacl_file {workdir / 'acl'}\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(workdir / "broker.conf")])
    deadline_s = time.monotonic() + 5
    while not port_open("127.0.0.1", port) and time.monotonic() < deadline_s:
        time.sleep(0.05)
    try:
        yield port
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir)


def puback_code(port: int, user: str, topic: str) -> int:
    """The PUBACK reason code the broker gives ``user`` for a QoS 1 publish on ``topic``."""
    codes: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, "pw")
    client.on_publish = lambda _c, _u, _mid, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, b"{}", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    return codes[0]


@pytest.mark.broker
def test_acl_lets_a_device_publish_only_its_own_topics(acl_broker: int) -> None:
    assert puback_code(acl_broker, "kiosk-a", "appliance/lab/kiosk-a/result") < 0x80
    assert puback_code(acl_broker, "kiosk-a", "appliance/lab/kiosk-a/status") < 0x80
    assert puback_code(acl_broker, "kiosk-a", "appliance/lab/kiosk-b/result") == 0x87
    assert puback_code(acl_broker, "kiosk-a", "appliance/lab/kiosk-a/model/update") == 0x87
    assert puback_code(acl_broker, "kiosk-b", "appliance/lab/kiosk-a/cmd/measure") == 0x87


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
    port = load_config(DEPLOY.parent / "config.yaml").screen.port
    assert f"--app=http://127.0.0.1:{port}/" in command  # the port config.yaml serves
    assert "--kiosk" in command
    assert "--incognito" in command
    assert unit["Unit"]["Wants"] == "appliance-edge.service"
