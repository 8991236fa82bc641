"""One kiosk's flood is bounded: a token bucket a kiosk (appliance/backoffice/kiosk_rate.py).

Against a real mosquitto: a flooding kiosk gets its burst and rate stored, nothing more
confirmed, while another kiosk's results are all stored meanwhile; an honest kiosk's backlog
larger than its burst is all stored in the end through its own resends (nothing lost).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.kiosk_rate import REPORT_EVERY_S, KioskRate
from appliance.backoffice.metrics import serve_metrics
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Store, open_store
from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.acks import ack_topic, parse_ack
from appliance.transport.broker import free_port
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox

LOGGER = "appliance.backoffice.kiosk_rate"


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_kiosk_gets_its_burst_then_its_rate_and_other_kiosks_their_own() -> None:
    clock = _Clock()
    rate = KioskRate("p", rate_per_s=2.0, burst=5, clock=clock)
    flood = [rate.refuses("p/lab/k1/result") for _ in range(20)]
    assert flood == [False] * 5 + [True] * 15
    assert rate.refused_total == 15
    assert not rate.refuses("p/lab/k2/result")  # another kiosk: its own full bucket
    assert not rate.refuses("p/lab/k1/status")  # statuses and other topics: triage's
    assert not rate.refuses("elsewhere/k1")
    clock.now_s += 1.0  # two tokens back, no more
    assert [rate.refuses("p/lab/k1/result") for _ in range(3)] == [False, False, True]
    clock.now_s += 3600.0  # a full bucket again, never more than the burst
    assert [rate.refuses("p/lab/k1/result") for _ in range(6)] == [False] * 5 + [True]


def test_a_flood_is_said_in_a_line_then_a_count_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    rate = KioskRate("p", rate_per_s=1.0, burst=1, clock=clock)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(10_000):
        rate.refuses("p/lab/k1/result")
        rate.say_due()
    (first,) = [r.getMessage() for r in caplog.records]
    assert "kiosk lab/k1 sends results faster than backoffice.kiosk_results_per_s" in first
    clock.now_s += REPORT_EVERY_S
    rate.say_due()
    assert "kiosk lab/k1: 9998 more results over its rate" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2


def test_the_table_of_kiosks_is_bounded() -> None:
    rate = KioskRate("p", rate_per_s=1.0, burst=1, clock=_Clock(), max_kiosks=3)
    for device in ("a", "b", "c", "d"):
        assert not rate.refuses(f"p/lab/{device}/result")
    assert rate.refuses("p/lab/d/result")  # the newest are kept
    assert not rate.refuses("p/lab/a/result")  # the oldest went: a full bucket again
    assert len(rate._buckets) == 3  # noqa: SLF001  (the bound itself)


def test_topics_that_name_no_kiosk_share_one_bucket() -> None:
    """A made-up site or device (4 KiB long, other characters) would each take an entry of
    its size: they share one, so a login without the fleet's ACL cannot fill the table."""
    rate = KioskRate("p", rate_per_s=1.0, burst=2, clock=_Clock())
    made_up = ["p/lab/" + "x" * 4000 + "/result", "p/lab/k 1/result", "p/-lab/k1/result"]
    assert [rate.refuses(topic) for topic in made_up] == [False, False, True]
    assert not rate.refuses("p/lab/k1/result")  # a kiosk's own bucket is apart


def _config(prefix: str, state_dir: Path, *, per_s: float, burst: int) -> Config:
    return config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": prefix},
        "state_dir": str(state_dir),
        "backoffice": {"client_id": f"rate-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
                       "kiosk_results_per_s": per_s, "kiosk_results_burst": burst},
    }, environ={})


def _results(prefix: str, device: str, count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"{prefix}/lab/{device}/result",
             fleet.sample_result(rng, "lab", device, i).to_json()) for i in range(count)]


def _stored_ids(store: Store, device: str) -> set[str]:
    rows = store.select_results(["measurement_id", "device_id"])
    return {row[0] for row in rows if row[1] == device}


class _AckListener:
    """Every id the back office confirms on one kiosk's ack topic."""

    def __init__(self, prefix: str, device: str) -> None:
        self.ids: list[str] = []
        subscribed = threading.Event()
        self.client = new_client(LinkSettings("127.0.0.1", 1883, ""))
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.ids.extend(
            parse_ack(message.payload))
        self.client.connect("127.0.0.1", 1883)
        self.client.subscribe(ack_topic(prefix, "lab", device), qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the ack listener did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.broker
def test_a_flooding_kiosk_is_bounded_while_another_kiosk_s_results_are_stored(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """On main all 1,500 of the flood were stored and confirmed (the store filled, the other
    kiosk's results queued behind it). Now the flood gets its burst and rate, no more, and
    nothing beyond them is confirmed; the other kiosk's results all land meanwhile."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    config = _config(topic_prefix, tmp_path, per_s=1.0, burst=20)
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    metrics_port = free_port()
    metrics = serve_metrics(worker, metrics_port)
    acks = _AckListener(topic_prefix, "flood")
    reader = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    started_s = time.monotonic()
    flooding = threading.Thread(target=fleet.publish_messages, args=(
        "127.0.0.1", 1883, _results(topic_prefix, "flood", 1500, seed=1)))
    flooding.start()
    honest = _results(topic_prefix, "honest", 15, seed=2)  # within its burst
    try:
        fleet.publish_messages("127.0.0.1", 1883, honest)
        assert wait_until(lambda: len(_stored_ids(reader, "honest")) == 15, 30)
        flooding.join(60)
        assert wait_until(lambda: worker.stats.received >= 1515, 30), worker.stats
        assert wait_until(lambda: len(_stored_ids(reader, "flood")) + worker.stats.over_rate
                          == 1500, 30), worker.stats
        # each stored one confirmed (its ack follows its commit), and no other
        assert wait_until(lambda: set(acks.ids) == _stored_ids(reader, "flood"), 10)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            exposition = reply.read().decode()
    finally:
        elapsed_s = time.monotonic() - started_s
        acks.close()
        assert metrics is not None
        metrics.close()
        worker.stop()
        store.close()
    flood_stored = _stored_ids(reader, "flood")
    assert len(flood_stored) <= 20 + elapsed_s * 1.0 + 1
    assert set(acks.ids) == flood_stored  # beyond the bound: nothing its kiosk may drop
    over = worker.stats.over_rate
    assert f"appliance_backoffice_results_over_rate_total {float(over)}" in exposition
    said = [r.getMessage() for r in caplog.records if "sends results faster" in r.getMessage()]
    assert said == [said[0]]  # once, not once a result
    assert "kiosk lab/flood sends results faster" in said[0]
    reader.close()


@pytest.mark.broker
def test_an_honest_kiosk_s_backlog_beyond_its_burst_is_all_stored_by_its_resends(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path,
) -> None:
    """A kiosk back from an outage sends 300 results at once; 50 fit its burst, the rest are
    neither stored nor confirmed, and its resends bring them: all 300 stored, outbox empty."""
    config = _config(topic_prefix, tmp_path, per_s=40.0, burst=50)
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    rng = random.Random(3)
    backlog = [fleet.sample_result(rng, "lab", "kiosk-b", i) for i in range(300)]
    outbox.add_many([(result.measurement_id, f"{topic_prefix}/lab/kiosk-b/result",
                      result.to_json()) for result in backlog])
    kiosk = MqttLink(
        LinkSettings("127.0.0.1", 1883, f"edge-{topic_prefix}-b", ack_resend_initial_s=0.5,
                     ack_resend_cap_s=2.0),
        outbox, status_topic=f"{topic_prefix}/lab/kiosk-b/status",
        status_payload=lambda state: b"", ack_topic=ack_topic(topic_prefix, "lab", "kiosk-b"))
    kiosk.start()
    try:
        assert wait_until(kiosk.idle, 60), kiosk.stats
    finally:
        kiosk.stop_event.set()
        kiosk.wake()
        kiosk.join(5)
        worker.stop()
    assert store.count_results() == 300
    assert worker.stats.over_rate > 0  # the bound was met: the resends brought the rest
    assert kiosk.stats.resent > 0
    store.close()


def test_a_metrics_port_already_taken_is_logged_and_the_worker_goes_on_without(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(_config("p", tmp_path, per_s=1.0, burst=1), store)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_metrics(worker, port) is None
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert "backoffice.metrics_port" in caplog.text
    assert serve_metrics(worker, None) is None  # unset: off
    store.close()


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


@pytest.mark.broker
def test_the_back_office_serves_its_counters_on_its_metrics_port_until_it_stops(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path,
) -> None:
    port = free_port()
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"rate-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
                       "metrics_port": port},
    }, environ={})
    stop = threading.Event()
    codes: list[int] = []
    office = threading.Thread(target=lambda: codes.append(run_backoffice(config, stop)))
    office.start()
    try:
        assert wait_until(lambda: _scrape(port) is not None, 30)
        exposition = _scrape(port)
        assert exposition is not None
        assert "appliance_backoffice_results_over_rate_total 0.0" in exposition
        assert "appliance_backoffice_inbox_depth 0.0" in exposition
    finally:
        stop.set()
        office.join(30)
    assert codes == [0]
    assert _scrape(port) is None  # the port freed with the worker
