"""A private mosquitto running deploy/mosquitto (TLS, dynamic security) with identities made by
deploy/mosquitto/provision.py, and a probe that records the broker's reason codes."""

from __future__ import annotations

import contextlib
import json
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.edge.testing import wait_until
from appliance.transport.broker import free_port, port_open
from appliance.transport.client import LinkSettings, new_client

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"


@dataclass(frozen=True)
class FleetBroker:
    port: int
    folder: Path

    def password(self, login: str) -> str:
        """The login's password (a device's look login has the device's, a pathology server's
        probe login the server's)."""
        owner = login.removesuffix("@look").removesuffix("@probe")
        return (self.folder / "credentials" / f"{owner}.password").read_text().strip()

    def settings(self, login: str, client_id: str) -> LinkSettings:
        return LinkSettings(
            "127.0.0.1", self.port, client_id, username=login, password=self.password(login),
            tls_enabled=True, ca_file=str(self.folder / "certs" / "ca.crt"),
            reconnect_initial_s=0.2, reconnect_cap_s=1.0,
            ack_resend_initial_s=2.0, ack_resend_cap_s=4.0,
        )


def render_config(folder: Path, port: int) -> Path:
    """The shipped appliance.conf with this test's port and folders in place of /etc, /var."""
    text = (DEPLOY / "appliance.conf").read_text()
    text = text.replace("listener 8883", f"listener {port} 127.0.0.1")
    text = text.replace("/etc/mosquitto/appliance", str(folder))
    # Debian's mosquitto.conf names the persistence location the shipped part leaves out
    text += f"persistence_location {folder}/\n"
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "/etc/" in line or "/var/" in line]
    path = folder / "mosquitto.conf"
    path.write_text(text)
    return path


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Probe:
    """One client with a given login and client id that records every reason code."""

    def __init__(self, fleet: FleetBroker, login: str, client_id: str) -> None:
        self.connack: int | None = None
        self.suback: list[int] = []
        self.puback: list[int] = []
        self.disconnects: list[int] = []
        self._event = threading.Event()
        self.client = new_client(fleet.settings(login, client_id))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self._record(
            self.suback, codes[0].value
        )
        self.client.on_publish = lambda _c, _u, _m, code, _p: self._record(self.puback, code.value)
        self.client.on_disconnect = lambda _c, _u, _f, code, _p: self.disconnects.append(code.value)
        self.client.connect("127.0.0.1", fleet.port)
        self.client.loop_start()
        self._event.wait(5)

    def _on_connect(self, _c: object, _u: object, _f: object, code: object, _p: object) -> None:
        self.connack = getattr(code, "value", -1)
        self._event.set()

    def _record(self, into: list[int], code: int) -> None:
        into.append(code)
        self._event.set()

    def subscribe(self, topic: str) -> int:
        self._event.clear()
        self.client.subscribe(topic, qos=1)
        assert self._event.wait(5)
        return self.suback[-1]

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        self._event.clear()
        self.client.publish(topic, payload, qos=1, retain=retain)
        assert self._event.wait(5)
        return self.puback[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def provisioned_broker(provision_args: list[str], *, extra_config: tuple[str, ...] = (),
                       edit_state: Callable[[dict[str, Any]], None] | None = None,
                       ) -> Iterator[FleetBroker]:
    """mosquitto with the shipped config (and ``extra_config`` lines) and the identities
    ``provision.py`` makes of ``provision_args`` (changed by ``edit_state``: a broker
    provisioned by an older script, say); stopped and its folder removed on exit."""
    # mosquitto started as root runs as user "mosquitto": the folder must be its own.
    folder = Path(tempfile.mkdtemp(prefix="appliance-identity-"))
    subprocess.run([sys.executable, str(DEPLOY / "provision.py"), "--out", str(folder),
                    *provision_args], check=True, capture_output=True)
    if edit_state is not None:
        state_file = folder / "dynamic-security.json"
        state = json.loads(state_file.read_text())
        edit_state(state)
        state_file.write_text(json.dumps(state))
    port = free_port()
    conf = render_config(folder, port)
    with conf.open("a") as config:
        config.writelines(f"{line}\n" for line in extra_config)
    owner = pwd.getpwnam("mosquitto") if _has_user("mosquitto") else None
    for path in [folder, *folder.rglob("*")]:
        if owner is not None:
            shutil.chown(path, owner.pw_uid, owner.pw_gid)
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    wait_until(lambda: port_open("127.0.0.1", port), 5)
    try:
        assert broker.poll() is None, broker.stderr.read() if broker.stderr else ""
        yield FleetBroker(port, folder)
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(folder)
