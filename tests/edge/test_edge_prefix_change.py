"""A kiosk restarted with another ``mqtt.topic_prefix`` keeps its persistent session (the same
client id) but none of the old prefix's subscriptions in it, on a real mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.testing import fast_daemon, subscribed_since, wait_until
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings, connect_properties, new_client

DEVICE = {"id": "kiosk-moved", "site": "shop-1"}
CLIENT_ID = "edge-shop-1-kiosk-moved"
pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


def kiosk(tmp_path: Path, port: int, prefix: str) -> EdgeDaemon:
    data = {"device": DEVICE, "camera": {"source": "synthetic", "limit": None},
            "mqtt": {"port": port, "topic_prefix": prefix}, "state_dir": str(tmp_path / "state"),
            "edge": {"synthetic_fps": 5, "reconnect_initial_s": 0.2, "reconnect_cap_s": 1.0}}
    return fast_daemon(config_from_mapping(data, "test", environ={}))


def run_until_subscribed(daemon: EdgeDaemon) -> None:
    """Run the daemon until the broker answered every subscribe and unsubscribe, then stop it."""
    started_s = time.monotonic()
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        # every SUBACK came (connected and not waiting() hold before the SUBSCRIBEs are made)
        assert wait_until(lambda: subscribed_since(daemon, started_s), 20)
        subscriptions = daemon.link.subscriptions
        assert wait_until(lambda: not subscriptions.session.stale, 10)  # and the UNSUBACK
    finally:
        daemon.request_stop()
        thread.join(15)


def _publish(port: int, topic: str, payload: bytes) -> None:
    sender = new_client(LinkSettings("127.0.0.1", port, "prefix-sender"))
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    sender.publish(topic, payload, qos=1).wait_for_publish(5)
    sender.disconnect()
    sender.loop_stop()


def queued_for(port: int, topic: str) -> list[bytes]:
    """Publish on ``topic`` while the kiosk is off, then take the kiosk's session over (its
    client id, clean start 0): what that session had queued for it. A marker sent to the new
    prefix once it is taken over comes after all of that: heard, the queue has been heard."""
    _publish(port, topic, b"measure")
    heard: list[bytes] = []
    session = new_client(LinkSettings("127.0.0.1", port, CLIENT_ID))
    session.on_message = lambda _c, _u, message: heard.append(bytes(message.payload))
    session.connect("127.0.0.1", port, clean_start=False,
                    properties=connect_properties(LinkSettings("127.0.0.1", port, CLIENT_ID)))
    session.loop_start()
    try:
        _publish(port, f"newprefix/{DEVICE['site']}/{DEVICE['id']}/cmd/marker", b"marker")
        assert wait_until(lambda: b"marker" in heard, 20), heard
    finally:
        session.disconnect()
        session.loop_stop()
    return heard[:heard.index(b"marker")]


def test_after_a_topic_prefix_change_the_session_no_longer_takes_the_old_prefixs_commands(
    broker: PrivateBroker, tmp_path: Path,
) -> None:
    run_until_subscribed(kiosk(tmp_path, broker.port, "oldprefix"))
    run_until_subscribed(kiosk(tmp_path, broker.port, "newprefix"))
    old_command = f"oldprefix/{DEVICE['site']}/{DEVICE['id']}/cmd/measure"
    assert queued_for(broker.port, old_command) == []
    new_command = f"newprefix/{DEVICE['site']}/{DEVICE['id']}/cmd/measure"
    assert queued_for(broker.port, new_command) == [b"measure"]  # the session itself is kept
