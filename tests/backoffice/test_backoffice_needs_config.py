"""`appliance backoffice` needs a config file: started from the built-in defaults in a folder
without config.yaml, it joined the result group of whatever broker ran on 127.0.0.1:1883 with a
session that outlived it, and that session went on taking a share of the fleet's results. Each
test runs the command in a child process against a private mosquitto on a free port, and asks
the broker afterwards whether a session was left under the worker's client id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.edge.testing import wait_until
from appliance.transport.broker import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
EXIT_S = 60.0  # what the child may take to import, refuse or stop under a busy machine


def _environment(**overrides: str) -> dict[str, str]:
    """The test's environment without its APPLIANCE__ overrides, this checkout first on the
    path (the child runs in another folder), and ``overrides`` as APPLIANCE__ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env | {f"APPLIANCE__{key.upper()}": value for key, value in overrides.items()}


def _session_left(broker: PrivateBroker, client_id: str) -> bool:
    """Whether the broker keeps a session for ``client_id`` (CONNACK's session present flag,
    MQTT 5 spec 3.2.2.1.1). The probe resumes it with a session that ends with its connection
    (3.1.2.11.2), so it ends any session it found."""
    present: list[bool] = []
    answered = threading.Event()

    def connected(_c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object,
                  _p: object) -> None:
        present.append(bool(flags.session_present))
        answered.set()

    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    probe.on_connect = connected
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    probe.connect(broker.host, broker.port, clean_start=False, properties=properties)
    probe.loop_start()
    try:
        assert answered.wait(10), "the broker did not answer the probe"
    finally:
        probe.disconnect()
        probe.loop_stop()
    return present[0]


@pytest.mark.parametrize("retire", [[], ["--retire"]])
def test_without_a_config_file_it_is_refused_and_leaves_no_session(
    private_broker: PrivateBroker, tmp_path: Path, retire: list[str],
) -> None:
    """Refused, exit 2, naming the file it looked for and what to pass, before it connects or
    makes anything; the environment's broker and client id are not taken for a config."""
    folder = tmp_path / "no-config"
    folder.mkdir()
    client_id = f"bo-stray-{uuid.uuid4().hex[:8]}"
    env = _environment(mqtt__port=str(private_broker.port), backoffice__client_id=client_id)
    child = subprocess.Popen([sys.executable, "-m", "appliance", "backoffice", *retire],
                             cwd=folder, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=EXIT_S)
    except subprocess.TimeoutExpired:  # it runs: the worker started from the defaults
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=EXIT_S)
    assert (child.returncode, out) == (2, ""), err
    assert err == (f"backoffice: config error: config.yaml: config file not found in {folder}: "
                   "pass --config FILE (the repository's config.yaml is a working default for "
                   "one machine) or create it\n")
    assert list(folder.iterdir()) == []  # no ./state, no store, no lock
    assert not _session_left(private_broker, client_id)


def test_with_config_yaml_in_its_folder_it_joins_the_result_group_as_before(
    private_broker: PrivateBroker, tmp_path: Path,
) -> None:
    """./config.yaml is the file it reads without --config: the worker joins the broker it
    names with its persistent session, stops on SIGTERM with exit 0, and its session stays."""
    folder = tmp_path / "office"
    folder.mkdir()
    client_id = f"bo-kept-{uuid.uuid4().hex[:8]}"
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "mqtt": {"port": private_broker.port, "topic_prefix": "needs-config"},
        "backoffice": {"client_id": client_id, "session_expiry_s": 600}}))
    child = subprocess.Popen([sys.executable, "-m", "appliance", "backoffice"], cwd=folder,
                             env=_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in child.stderr or ():
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    joined = f"{client_id} connected to 127.0.0.1:{private_broker.port} (session present: False)"
    try:
        assert wait_until(lambda: any(joined in line for line in list(lines)), EXIT_S), lines
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(EXIT_S)
        reader.join(EXIT_S)
    assert child.returncode == 0, "".join(lines)
    assert (folder / "state" / "backoffice.sqlite3").is_file()
    assert _session_left(private_broker, client_id)
