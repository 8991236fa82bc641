"""The pathology server's packet-size probe on the fleet's broker (deploy/mosquitto: TLS, dynamic
security, each login bound to one client id): it asks under the server's probe login
``SERVER@probe``, which connects and reads the broker's maximum packet size but may publish and
subscribe nowhere; the server's own connection is never taken over; a broker provisioned
before that login existed refuses it, and the server says once what to run."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config import PASSWORD_ENV, Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology.jobs import server_topic
from appliance.pathology.server import PathologyServer
from appliance.pathology.serverlink import probe_settings
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import BrokerRefusedError, broker_max_packet_bytes, new_client
from tests.fleet_broker import FleetBroker, Probe, provisioned_broker
from tests.pathology_helpers import caught_up, counting_subacks, serving, subscribed

pytestmark = pytest.mark.broker
SERVER, USER = "pathology-lab-0", "lab-user"
PROBE_LOGIN = f"{SERVER}@probe"
BROKER_MAX_PACKET_BYTES = 100_000
PROVISION = ["--pathology-server", SERVER, "--pathology-client", USER, "--device=shop-1/kiosk-a"]


def _without_probe_logins(state: dict[str, Any]) -> None:
    """The dynamic-security state of a broker provisioned before the probe login existed."""
    state["clients"] = [c for c in state["clients"] if not c["username"].endswith("@probe")]
    state["roles"] = [r for r in state["roles"] if not r["rolename"].endswith("@probe")]


@pytest.fixture
def lab_broker() -> Iterator[FleetBroker]:
    with provisioned_broker(PROVISION, extra_config=(
            f"max_packet_size {BROKER_MAX_PACKET_BYTES}",)) as broker:
        yield broker


def _server_config(tmp_path: Path, broker: FleetBroker) -> Config:
    (tmp_path / "slides").mkdir()
    return config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": SERVER,
                 "tls": {"enabled": True, "ca_file": str(broker.folder / "certs" / "ca.crt")}},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": SERVER, "slide_roots": [str(tmp_path / "slides")],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})


def _presence_after_online(broker: FleetBroker) -> tuple[Any, list[bytes]]:
    """What is published on the server's presence after its retained "online" (read as the
    job client, whose role reads every server's presence)."""
    heard: list[bytes] = []
    client = new_client(broker.settings(USER, USER))
    client.on_message = lambda _c, _u, message: heard.append(bytes(message.payload))
    counting_subacks(client)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    subscribed(client, server_topic("appliance", SERVER))
    assert wait_until(lambda: len(heard) == 1, 10)  # the server's retained "online"
    heard.clear()
    return client, heard


def test_the_probe_login_connects_and_may_publish_and_subscribe_nowhere(
        lab_broker: FleetBroker) -> None:
    server = Probe(lab_broker, SERVER, SERVER)  # the server's own connection
    probe = Probe(lab_broker, PROBE_LOGIN, PROBE_LOGIN)
    try:
        assert (server.connack, probe.connack) == (0, 0)
        for topic in ("#", "appliance/pathology/jobs/+/+/request",
                      "appliance/pathology/jobs/+/+/cancel",
                      f"appliance/pathology/servers/{SERVER}", "appliance/shop-1/kiosk-a/cmd/#"):
            assert probe.subscribe(topic) == 0x87, topic
        for topic in ("appliance/pathology/jobs/lab-user/j1/request",
                      "appliance/pathology/jobs/lab-user/j1/state",
                      "appliance/pathology/errors", f"appliance/pathology/servers/{SERVER}",
                      "appliance/shop-1/kiosk-a/result"):
            assert probe.publish(topic) == 0x87, topic
        # bound to its own client id both ways: neither login takes the other's
        assert Probe(lab_broker, PROBE_LOGIN, SERVER).connack in (0x85, 0x87)
        assert Probe(lab_broker, SERVER, PROBE_LOGIN).connack in (0x85, 0x87)
        assert server.disconnects == []
    finally:
        server.close()
        probe.close()


def test_the_server_s_probe_reads_the_limit_and_leaves_its_connection_alone(
        lab_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PASSWORD_ENV, lab_broker.password(SERVER))
    answered = threading.Event()
    ask = PathologyServer._event_closed_before_connack  # noqa: SLF001 - the event's handler

    def asked(server: PathologyServer) -> None:
        ask(server)
        answered.set()

    monkeypatch.setattr(PathologyServer, "_event_closed_before_connack", asked)
    with serving(_server_config(tmp_path, lab_broker)) as server:
        listener, heard = _presence_after_online(lab_broker)
        try:
            assert broker_max_packet_bytes(probe_settings(server.link_settings)) \
                == BROKER_MAX_PACKET_BYTES
            server.events.put(("closed_before_connack", ()))  # asked as the server asks it
            assert answered.wait(10)
            # a connection taken over is closed, and its will sent, at the probe's CONNECT
            caught_up(listener)
        finally:
            listener.disconnect()
            listener.loop_stop()
        assert heard == []  # no will, no new "online" after a reconnect
        assert (server.presence.connection, server.connected.is_set()) == (1, True)
        assert server.failed is None
    assert "probe login" not in caplog.text


def test_a_broker_provisioned_before_the_probe_login_is_named_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="appliance.pathology.server")
    answered: list[None] = []
    ask = PathologyServer._event_closed_before_connack  # noqa: SLF001 - the event's handler
    monkeypatch.setattr(PathologyServer, "_event_closed_before_connack",
                        lambda server: (ask(server), answered.append(None))[0])
    with provisioned_broker(PROVISION, edit_state=_without_probe_logins) as old_broker:
        monkeypatch.setenv(PASSWORD_ENV, old_broker.password(SERVER))
        with serving(_server_config(tmp_path, old_broker)) as server:
            for _ in range(2):
                server.events.put(("closed_before_connack", ()))
            assert wait_until(lambda: len(answered) == 2, 10)  # a second line, were there one
            assert (server.failed, server.connected.is_set()) == (None, True)
    told = [r.getMessage() for r in caplog.records if "provision.py" in r.getMessage()]
    assert len(told) == 1, told
    assert f"refused the login {PROBE_LOGIN}" in told[0]
    assert f"run deploy/mosquitto/provision.py again with --pathology-server {SERVER}" in told[0]


def test_a_plain_password_file_broker_is_told_the_exact_command_that_adds_the_probe_login(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A broker with mosquitto's plain password_file (no dynamic security) lacks the probe
    login too: the server only said to run provision.py, which writes no password file, so the
    login was added by guesswork. It now names the mosquitto_passwd command; run as printed
    (with the server's password), the probe reads the broker's limit."""
    caplog.set_level(logging.ERROR, logger="appliance.pathology.server")
    password = "the-lab-server-password"
    acl = f"user {SERVER}\ntopic readwrite appliance/pathology/#\n"
    broker = PrivateBroker(workdir=tmp_path / "broker", passwords={SERVER: password}, acl=acl)
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write(f"max_packet_size {BROKER_MAX_PACKET_BYTES}\n")
    broker.start()
    monkeypatch.setenv(PASSWORD_ENV, password)
    (tmp_path / "slides").mkdir()
    config = config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "username": SERVER},
        "state_dir": str(tmp_path / "state"),
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
        "pathology": {"client_id": SERVER, "slide_roots": [str(tmp_path / "slides")],
                      "results_dir": str(tmp_path / "out"), "backends": ["onnx-cpu"],
                      "prepare_workers": 1}})
    try:
        with serving(config) as server:
            server.events.put(("closed_before_connack", ()))
            assert wait_until(lambda: "mosquitto_passwd" in caplog.text, 10)
            link = server.link_settings
        [told] = [r.getMessage() for r in caplog.records if "mosquitto_passwd" in r.getMessage()]
        command = re.search(r"`mosquitto_passwd PASSWORD_FILE (\S+)`", told)
        assert command is not None, told
        assert command[1] == PROBE_LOGIN
        subprocess.run(["mosquitto_passwd", "-b", str(broker.workdir / "passwd"), command[1],
                        password], check=True, stdout=subprocess.DEVNULL)
        broker.set_acl(acl)  # reloads mosquitto (SIGHUP), password file included
        assert wait_until(lambda: _probe_limit(link) == BROKER_MAX_PACKET_BYTES, 10)
    finally:
        broker.close()


def _probe_limit(link: Any) -> int | None:
    """The broker's packet limit as the server's probe reads it (None: refused)."""
    try:
        return broker_max_packet_bytes(probe_settings(link))
    except BrokerRefusedError:
        return None
