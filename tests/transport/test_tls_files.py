"""A TLS file that exists but holds no usable certificate: `config check` refuses it naming the
key, and the back office (worker and --retire) and the kiosk say so in one line, no traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from appliance.cli import main
from appliance.tlsfiles import TlsFileError, client_tls_context


def _config(tmp_path: Path) -> Path:
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("this is a host name, not a certificate\n")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "mqtt": {"port": 1, "tls": {"enabled": True, "ca_file": str(not_a_ca)}},
        "screen": {"port": None}}))
    return path


def test_a_ca_file_without_a_certificate_is_named_for_its_key() -> None:
    with pytest.raises(TlsFileError, match=r"mqtt\.tls\.ca_file /etc/hostname: not a usable CA"):
        client_tls_context("/etc/hostname")
    with pytest.raises(TlsFileError, match=r"mqtt\.tls\.ca_file /nowhere\.pem: .*No such file"):
        client_tls_context("/nowhere.pem")


def test_config_check_refuses_a_tls_file_the_daemon_could_not_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"mqtt.tls.ca_file {tmp_path / 'ca.pem'}: not a usable CA certificate file" in err


def test_the_back_office_and_retire_say_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert main(["backoffice", "--config", str(path)]) == 2
    assert any("cannot start: mqtt.tls.ca_file" in r.getMessage() for r in caplog.records)
    assert main(["backoffice", "--config", str(path), "--retire"]) == 2
    err = capsys.readouterr().err
    assert "backoffice --retire: mqtt.tls.ca_file" in err
    assert "Traceback" not in err
