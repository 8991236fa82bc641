"""A broker login is never sent in clear over the network: a config that names a user for a
broker on another host with TLS off is refused, as ``config check`` and every daemon read it.
Without it a kiosk set up so (TLS forgotten) sent its password unencrypted at every reconnect,
to be read off the network, while the shipped broker, which takes TLS only, refused it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config.loader import ConfigError, config_from_mapping

REPO = Path(__file__).resolve().parents[1]


def _mqtt(**section: object) -> dict[str, object]:
    return {"mqtt": section}


@pytest.mark.parametrize("host", ["broker.fleet.internal", "10.0.0.7", "fe80::1",
                                  "127.0.0.1.nip.io"])
def test_a_login_to_another_host_without_tls_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(_mqtt(host=host, username="kiosk-1"), environ={})
    said = str(refused.value)
    assert f"mqtt.tls.enabled is false for the broker at {host}" in said
    assert "its password would cross the network in clear" in said
    assert "mqtt.tls.ca_file" in said


def test_the_environment_turning_tls_off_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(_mqtt(host="broker.fleet.internal", username="kiosk-1",
                                  tls={"enabled": True, "ca_file": "ca.crt"}),
                            environ={"APPLIANCE__MQTT__TLS__ENABLED": "false"})
    assert ("mqtt (environment variables set under it: APPLIANCE__MQTT__TLS__ENABLED): "
            "mqtt.tls.enabled is false for the broker at broker.fleet.internal") in str(
                refused.value)


def test_a_login_set_by_the_unit_s_variable_is_named_where_the_file_has_none() -> None:
    """deploy/config.backoffice.yaml names no mqtt.username: its unit sets
    APPLIANCE__MQTT__USERNAME. With TLS turned off in the file, the refusal named a login
    ('backoffice-1') that the file the operator was told to fix does not hold, and no variable."""
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(_mqtt(host="broker.fleet.internal", tls={"enabled": False}),
                            environ={"APPLIANCE__MQTT__USERNAME": "backoffice-1"})
    assert ("mqtt (environment variables set under it: APPLIANCE__MQTT__USERNAME): "
            "mqtt.tls.enabled is false for the broker at broker.fleet.internal, another host, "
            "while mqtt.username 'backoffice-1' logs in") in str(refused.value)
    with pytest.raises(ConfigError) as from_file:
        config_from_mapping(_mqtt(host="broker.fleet.internal", username="backoffice-1"),
                            environ={"APPLIANCE__STATE_DIR": "/var/lib/appliance"})
    assert "APPLIANCE__" not in str(from_file.value)  # no variable under mqtt: none named


@pytest.mark.parametrize("section", [
    {"host": "127.0.0.1", "username": "kiosk-1"},  # this host: nothing crosses a network
    {"host": "127.0.0.53", "username": "kiosk-1"},
    {"host": "localhost", "username": "kiosk-1"},
    {"host": "LocalHost.", "username": "kiosk-1"},
    {"host": "::1", "username": "kiosk-1"},
    {"host": "broker.fleet.internal"},  # no login: no password to send
    {"host": "broker.fleet.internal", "username": "kiosk-1",
     "tls": {"enabled": True, "ca_file": "ca.crt"}},
])
def test_tls_off_is_taken_on_this_host_or_without_a_login(section: dict[str, object]) -> None:
    config = config_from_mapping(_mqtt(**section), environ={})
    assert config.mqtt.host == section["host"]


def test_config_check_refuses_it_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("device:\n  id: kiosk-1\n  site: shop-1\n"
                      "mqtt:\n  host: broker.fleet.internal\n  port: 8883\n  username: kiosk-1\n")
    done = subprocess.run([sys.executable, "-m", "appliance", "config", "check", str(config)],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stdout + done.stderr  # on main: 0, the config "ok"
    assert "mqtt.tls.enabled is false for the broker at broker.fleet.internal" in done.stderr


def test_a_login_left_on_mqtt_s_plain_port_is_told_the_tls_port_too() -> None:
    """config.yaml's broker is 127.0.0.1:1883, plain; pointed at the fleet's broker with a login,
    it was refused with 'set mqtt.tls.enabled: true and mqtt.tls.ca_file', and done so it
    connected to 1883, where the shipped broker (TLS only, deploy/mosquitto/appliance.conf)
    does not listen: the refusal now names mqtt.port 8883 too when the port is 1883."""
    with pytest.raises(ConfigError) as refused:
        config_from_mapping(_mqtt(host="broker.fleet.internal", username="kiosk-1"), environ={})
    assert ("set mqtt.tls.enabled: true, mqtt.tls.ca_file (the fleet CA, deploy/mosquitto) and "
            "mqtt.port: 8883 (the shipped broker's TLS listener; 1883 is MQTT's plain port), or "
            "use a broker on this host") in str(refused.value)
    with pytest.raises(ConfigError) as on_its_own_port:
        config_from_mapping(_mqtt(host="broker.fleet.internal", port=8884, username="kiosk-1"),
                            environ={})
    assert ("set mqtt.tls.enabled: true and mqtt.tls.ca_file (the fleet CA, deploy/mosquitto), "
            "or use a broker on this host") in str(on_its_own_port.value)
