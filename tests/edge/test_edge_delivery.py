"""End-to-end delivery: a kiosk that measures before any back office exists loses nothing.

A broker PUBACKs a QoS 1 message that no session subscribes to and then drops it. These tests
run the real daemon (fast fake analyser) and the real ingest worker on the machine's mosquitto
and show that results leave the outbox only once the back office has committed them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.testing import FlakySource, fast_daemon, fast_source

pytestmark = pytest.mark.broker
MEASUREMENTS = 50


def kiosk_config(tmp_path: Path, broker: Any, prefix: str, limit: int | None) -> Config:
    data = {
        "device": {"id": "kiosk-early", "site": "shop-1"},
        "camera": {"source": "synthetic", "limit": limit},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "kiosk"),
        "edge": {"synthetic_fps": 200, "ack_resend_initial_s": 0.5, "ack_resend_cap_s": 2.0},
    }
    return config_from_mapping(data, "test", environ={})


def backoffice(tmp_path: Path, broker: Any, prefix: str) -> tuple[IngestWorker, Any]:
    config = config_from_mapping(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
            "state_dir": str(tmp_path / "backoffice"),
            "backoffice": {"client_id": f"bo-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
        },
        environ={},
    )
    store = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10)
    return worker, store


def run_in_thread(daemon: EdgeDaemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline_s:
        time.sleep(0.05)
    return check()


def count_stored(tmp_path: Path) -> int:
    store = open_store(f"sqlite:///{tmp_path / 'backoffice' / 'store.sqlite3'}")
    try:
        return store.count_results()
    finally:
        store.close()


def test_kiosk_that_measured_and_stopped_before_any_back_office_delivers_all_50_later(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    config = kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=MEASUREMENTS)
    kiosk = fast_daemon(config)
    thread, codes = run_in_thread(kiosk)
    assert wait_until(lambda: kiosk.committer.committed == MEASUREMENTS)
    assert wait_until(lambda: kiosk.link.stats.broker_acked >= MEASUREMENTS)
    assert kiosk.outbox.depth() == MEASUREMENTS  # the broker took them; nobody committed them
    assert codes == []  # camera.limit reached, but nothing confirmed: the kiosk does not exit
    kiosk.request_stop()
    thread.join(10)
    assert codes == [0]

    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        time.sleep(0.5)
        assert store.count_results() == 0  # the broker dropped what nobody subscribed to
        unplugged = FlakySource(fast_source(config))
        unplugged.failing.set()  # the kiosk comes back without its camera: no new results
        again = fast_daemon(config, source=unplugged)
        thread, codes = run_in_thread(again)
        assert wait_until(lambda: again.outbox.depth() == 0)
        again.request_stop()
        thread.join(10)
    finally:
        worker.stop()
        store.close()
    assert count_stored(tmp_path) == MEASUREMENTS
    assert again.link.stats.acked == MEASUREMENTS


def test_a_running_kiosk_resends_until_a_late_back_office_confirms_then_exits_0(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    kiosk = fast_daemon(kiosk_config(tmp_path, mqtt_broker, topic_prefix, limit=MEASUREMENTS))
    thread, codes = run_in_thread(kiosk)
    assert wait_until(lambda: kiosk.committer.committed == MEASUREMENTS)
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    try:
        thread.join(60)  # exits once every result is confirmed
        assert codes == [0]
        assert store.count_results() == MEASUREMENTS
        assert kiosk.link.stats.resent >= MEASUREMENTS
        assert kiosk.outbox.depth() == 0
        assert worker.stats.stored == MEASUREMENTS
    finally:
        worker.stop()
        store.close()
