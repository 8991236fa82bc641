"""Broker identities: a private mosquitto running deploy/mosquitto (TLS, dynamic security).

A device credential may not join ``$share/...``, read other devices, take another client's
id or publish under another site; while one tries, the other kiosks' results all arrive.
"""

from __future__ import annotations

import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import config_from_mapping
from appliance.synthetic import fleet as fleetsim
from appliance.transport.broker import free_port, port_open
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox

pytestmark = pytest.mark.broker
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
KIOSKS = [("shop-1", "kiosk-b"), ("shop-1", "kiosk-c"), ("shop-2", "kiosk-d")]
ATTACKER = ("shop-1", "kiosk-a")
PER_KIOSK = 100


@dataclass(frozen=True)
class FleetBroker:
    port: int
    folder: Path

    def password(self, login: str) -> str:
        return (self.folder / "credentials" / f"{login}.password").read_text().strip()

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
    text = text.replace("/var/lib/mosquitto/", f"{folder}/")
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "/etc/" in line or "/var/" in line]
    path = folder / "mosquitto.conf"
    path.write_text(text)
    return path


@pytest.fixture
def fleet_broker() -> Iterator[FleetBroker]:
    # mosquitto started as root runs as user "mosquitto": the folder must be its own.
    folder = Path(tempfile.mkdtemp(prefix="appliance-identity-"))
    devices = [f"--device={site}/{device}" for site, device in [*KIOSKS, ATTACKER]]
    subprocess.run(
        [sys.executable, str(DEPLOY / "provision.py"), "--out", str(folder), *devices,
         "--worker", "backoffice-1"],
        check=True, capture_output=True,
    )
    port = free_port()
    conf = render_config(folder, port)
    owner = pwd.getpwnam("mosquitto") if _has_user("mosquitto") else None
    for path in [folder, *folder.rglob("*")]:
        if owner is not None:
            shutil.chown(path, owner.pw_uid, owner.pw_gid)
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    deadline_s = time.monotonic() + 5
    while not port_open("127.0.0.1", port) and time.monotonic() < deadline_s:
        time.sleep(0.05)
    try:
        assert broker.poll() is None, broker.stderr.read() if broker.stderr else ""
        yield FleetBroker(port, folder)
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(folder)


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

    def publish(self, topic: str) -> int:
        self._event.clear()
        self.client.publish(topic, b"{}", qos=1)
        assert self._event.wait(5)
        return self.puback[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def kiosk_link(fleet: FleetBroker, tmp_path: Path, site: str, device: str) -> MqttLink:
    rng = random.Random(device)
    outbox = Outbox(tmp_path / f"{device}.sqlite3")
    topic = f"appliance/{site}/{device}/result"
    results = [fleetsim.sample_result(rng, site, device, i) for i in range(PER_KIOSK)]
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in results])
    return MqttLink(
        fleet.settings(device, f"edge-{site}-{device}"),
        outbox,
        status_topic=f"appliance/{site}/{device}/status",
        status_payload=lambda state: b"",
        ack_topic=f"appliance/{site}/{device}/ack",
    )


def wait_until(check: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline_s:
        time.sleep(0.05)
    return check()


def attack(fleet: FleetBroker) -> None:
    """Everything a stolen kiosk credential tries; each must be refused by the broker."""
    site, device = ATTACKER
    hijack = Probe(fleet, device, "backoffice-1")
    assert hijack.connack in (0x85, 0x87)  # not its client id: refused, session untouched
    hijack.close()
    probe = Probe(fleet, device, f"edge-{site}-{device}")
    assert probe.connack == 0
    own = f"appliance/{site}/{device}"
    assert probe.subscribe("$share/backoffice/appliance/+/+/result") == 0x87
    assert probe.subscribe("$share/x/appliance/shop-1/kiosk-b/result") == 0x87
    assert probe.subscribe("appliance/+/+/result") == 0x87
    assert probe.subscribe("appliance/shop-1/kiosk-b/cmd/#") == 0x87
    assert probe.subscribe("#") == 0x87
    assert probe.subscribe(f"{own}/cmd/#") == 1  # its own topics: granted QoS 1
    assert probe.subscribe(f"{own}/ack") == 1
    assert probe.publish(f"appliance/shop-2/{device}/result") == 0x87  # another site
    assert probe.publish(f"appliance/{site}/kiosk-b/result") == 0x87  # another device
    assert probe.publish(f"{own}/ack") == 0x87  # acks come only from the back office
    probe.close()


def test_device_credential_is_refused_shared_and_foreign_topics_and_ids_and_300_of_300_arrive(
    fleet_broker: FleetBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", fleet_broker.password("backoffice-1"))
    config = config_from_mapping(
        {
            "mqtt": {"host": "127.0.0.1", "port": fleet_broker.port, "username": "backoffice-1",
                     "tls": {"enabled": True,
                             "ca_file": str(fleet_broker.folder / "certs" / "ca.crt")}},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": "backoffice-1"},
        },
        environ={},
    )
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    links = [kiosk_link(fleet_broker, tmp_path, site, device) for site, device in KIOSKS]
    try:
        assert worker.subscribed.wait(10), worker.failed
        for link in links:
            link.start()
        attack(fleet_broker)
        assert wait_until(lambda: all(link.idle() for link in links))
        assert worker.connected.is_set()  # the hijack attempt did not take its session
    finally:
        for link in links:
            link.stop_event.set()
            link.wake()
            link.join(5)
        worker.stop()
    assert store.count_results() == PER_KIOSK * len(KIOSKS)
    assert worker.failed is None
    store.close()
