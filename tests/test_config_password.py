"""The broker password comes from the environment or a systemd credential file: one MQTT cannot
send (over 65535 bytes) is refused naming where it came from, before any link is built."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest

from appliance.backoffice.service import run_backoffice
from appliance.config import PASSWORD_CREDENTIAL, PASSWORD_ENV, Config, config_from_mapping
from appliance.config.mqtt import MAX_PASSWORD_BYTES, PasswordError
from appliance.transport.client import settings_from_config


def _config(state_dir: Path) -> Config:
    return config_from_mapping(
        {"mqtt": {"host": "127.0.0.1", "port": 1883, "username": "review-worker"},
         "state_dir": str(state_dir),
         "backoffice": {"client_id": f"pw-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60}},
        environ={})


def test_a_password_longer_than_mqtt_sends_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # it was handed to paho as it was: the link thread died building its CONNECT
    # (struct.error: 'H' format requires 0 <= number <= 65535)
    config = config_from_mapping({"mqtt": {"username": "kiosk-1"}}, environ={})
    monkeypatch.setenv(PASSWORD_ENV, "p" * 70000)
    with pytest.raises(PasswordError, match=rf"the MQTT password from \${PASSWORD_ENV} has "
                       r"70000 bytes; MQTT sends at most 65535") as refused:
        settings_from_config(config.mqtt, "edge-s-kiosk-1")
    assert "ppp" not in str(refused.value)  # never the password itself
    monkeypatch.setenv(PASSWORD_ENV, "p" * MAX_PASSWORD_BYTES)
    assert settings_from_config(config.mqtt, "edge-s-kiosk-1").password == "p" * 65535


def test_a_credential_file_too_large_is_refused_naming_it_without_reading_it_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    config = config_from_mapping({"mqtt": {"username": "kiosk-1"}}, environ={})
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    credential = tmp_path / PASSWORD_CREDENTIAL
    credential.write_bytes(b"s3cret\n" * 20000)  # 140,000 bytes
    with pytest.raises(PasswordError, match=rf"credential file {credential}: more than "):
        config.mqtt.password()
    credential.write_bytes(b"p" * 66000)
    with pytest.raises(PasswordError, match=rf"from the credential file {credential} has "
                       r"66000 bytes"):
        config.mqtt.password()
    credential.write_bytes(b"s3cret\n")
    assert config.mqtt.password() == "s3cret"


def test_a_back_office_with_a_password_mqtt_cannot_send_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """It started, its link thread died on the CONNECT, and it ran on without a broker."""
    monkeypatch.setenv(PASSWORD_ENV, "p" * 70000)
    stop = threading.Event()
    stop.set()  # start, and stop at once where it starts at all
    with caplog.at_level(logging.ERROR, logger="appliance.backoffice.service"):
        assert run_backoffice(_config(tmp_path), stop) == 2
    assert f"cannot start: the MQTT password from ${PASSWORD_ENV} has 70000 bytes" in caplog.text
