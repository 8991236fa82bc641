"""The shipped broker bounds what it queues for one session, in messages and in bytes; and what
a full queue drops is not lost: its kiosk still holds it and sends it again until the back
office, back from an outage, confirms it."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet as fleetsim
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.payloads import MAX_PAYLOAD_BYTES
from tests.fleet_broker import DEPLOY, FleetBroker, provisioned_broker

pytestmark = pytest.mark.broker
SITE, DEVICE, WORKER = "shop-1", "kiosk-a", "backoffice-1"
QUEUE_CAP = 10  # the test broker's max_queued_messages: a flood of 40 overfills it
RESULTS = 40


def _shipped_setting(name: str) -> int:
    (value,) = [line.split()[1] for line in (DEPLOY / "appliance.conf").read_text().splitlines()
                if line.startswith(f"{name} ")]
    return int(value)


def test_the_shipped_broker_caps_each_session_s_queue_in_messages_and_in_bytes() -> None:
    # on main: 1,000,000 messages and no byte cap (0), 262 GB of 256 KiB results a session
    messages, cap_bytes = _shipped_setting("max_queued_messages"), _shipped_setting(
        "max_queued_bytes")
    assert 0 < messages <= 100_000
    assert 0 < cap_bytes <= 256 * 1024 * 1024  # a few sessions' worth fits a broker host
    assert cap_bytes >= 64 * MAX_PAYLOAD_BYTES  # a queue still holds many of the largest results


def _worker_config(fleet: FleetBroker, tmp_path: Path) -> Config:
    return config_from_mapping(
        {
            "mqtt": {"host": "127.0.0.1", "port": fleet.port, "username": WORKER,
                     "tls": {"enabled": True, "ca_file": str(fleet.folder / "certs" / "ca.crt")}},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": WORKER},
        },
        environ={},
    )


def _kiosk(fleet: FleetBroker, tmp_path: Path) -> MqttLink:
    rng = random.Random(3)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    topic = f"appliance/{SITE}/{DEVICE}/result"
    results = [fleetsim.sample_result(rng, SITE, DEVICE, i) for i in range(RESULTS)]
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in results])
    return MqttLink(fleet.settings(DEVICE, f"edge-{SITE}-{DEVICE}"), outbox,
                    status_topic=f"appliance/{SITE}/{DEVICE}/status",
                    status_payload=lambda state: b"", ack_topic=f"appliance/{SITE}/{DEVICE}/ack")


@pytest.fixture
def broker_log_path() -> Iterator[Path]:
    """A log file mosquitto can write as user mosquitto (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="appliance-queue-caps-"))
    folder.chmod(0o777)
    try:
        yield folder / "mosquitto.log"
    finally:
        shutil.rmtree(folder)


def test_results_a_full_queue_dropped_while_the_back_office_was_away_all_arrive(
    tmp_path: Path, broker_log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with provisioned_broker([f"--device={SITE}/{DEVICE}", "--worker", WORKER], extra_config=(
            f"max_queued_messages {QUEUE_CAP}", f"log_dest file {broker_log_path}")) as fleet:
        monkeypatch.setenv("APPLIANCE_MQTT_PASSWORD", fleet.password(WORKER))
        config = _worker_config(fleet, tmp_path)
        store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        away = IngestWorker(config, store)
        away.start()
        assert away.subscribed.wait(10), away.failed
        away.stop()  # its session stays, subscribed: the broker queues the results for it
        kiosk = _kiosk(fleet, tmp_path)
        kiosk.start()
        try:
            assert wait_until(lambda: kiosk.stats.broker_acked >= RESULTS, 30)
            dropped = f"Outgoing messages are being dropped for client {WORKER}."
            assert wait_until(lambda: broker_log_path.exists()
                              and dropped in broker_log_path.read_text(), 10)
            back = IngestWorker(config, store)
            back.start()
            try:
                assert wait_until(kiosk.idle, 60)  # every result confirmed, the outbox empty
            finally:
                back.stop()
        finally:
            kiosk.stop_event.set()
            kiosk.wake()
            kiosk.join(5)
    assert store.count_results() == RESULTS
    assert kiosk.stats.resent >= RESULTS - QUEUE_CAP
    store.close()
