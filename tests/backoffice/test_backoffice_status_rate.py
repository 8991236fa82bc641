"""One kiosk's statuses are bounded like its results, and its newest is never lost: a token
bucket a kiosk, the newest status over it held until the bucket lets it in
(appliance/backoffice/status_rate.py).

With the fake clock: what is held, when it is let in, what supersedes it, the bounds. Against
the real mosquitto, on SQLite and PostgreSQL: a flood of statuses from one kiosk's login writes
at most its burst and rate of upserts, its row ends at the last status it sent, and another
kiosk's results are stored meanwhile. Before, every status was written.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.batcher import BatchWriter
from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.kiosk_rate import REPORT_EVERY_S
from appliance.backoffice.schema import DEVICE_COLUMNS, iso_utc
from appliance.backoffice.status_rate import MAX_HELD_BYTES, StatusRate
from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import config_from_mapping
from appliance.config.backoffice import BackofficeConfig
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from tests.store_helpers import BACKENDS, fresh_store

LOGGER = "appliance.backoffice.kiosk_rate"


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _status(n: int, device: str = "k1", payload: bytes | None = None) -> Inbound:
    body = f'{{"n": {n}}}'.encode() if payload is None else payload
    return Inbound(f"p/lab/{device}/status", body, n + 1, 1)


def test_past_its_rate_a_kiosk_s_newest_status_is_held_until_its_bucket_lets_it_in() -> None:
    clock = _Clock()
    rate = StatusRate("p", rate_per_s=1.0, burst=3, clock=clock)
    refused = [rate.refuses(_status(n)) for n in range(10)]
    assert refused == [False] * 3 + [True] * 7
    assert not rate.refuses(_status(0, "k2"))  # another kiosk: its own bucket
    assert not rate.refuses(Inbound("p/lab/k1/result", b"{}", 1, 1))  # results: kiosk_rate's
    assert rate.due() == []  # no token yet
    clock.now_s += 1.0
    (held,) = rate.due()
    assert held.payload == b'{"n": 9}'  # the newest, the older ones superseded
    assert held.received is not None  # written as received then (its clock reading)
    assert rate.due() == []  # once
    clock.now_s += 10.0
    assert rate.due() == []


def test_a_status_within_the_rate_supersedes_the_one_held() -> None:
    clock = _Clock()
    rate = StatusRate("p", rate_per_s=1.0, burst=1, clock=clock)
    assert [rate.refuses(_status(n)) for n in range(3)] == [False, True, True]
    clock.now_s += 1.0
    assert not rate.refuses(_status(3, payload=b""))  # an empty one writes nothing: no newer
    assert rate.refuses(_status(4))
    clock.now_s += 1.0
    assert not rate.refuses(_status(5))  # newer than the one held, and written
    clock.now_s += 5.0
    assert rate.due() == []


def test_every_held_status_is_let_in_as_the_writer_stops() -> None:
    rate = StatusRate("p", rate_per_s=1.0, burst=1, clock=_Clock())
    for device in ("k1", "k2"):
        assert [rate.refuses(_status(n, device)) for n in range(3)] == [False, True, True]
    assert rate.due() == []
    assert [message.topic for message in rate.due(every=True)] == [
        "p/lab/k1/status", "p/lab/k2/status"]


def test_what_is_held_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing of topics naming no kiosk (triage dead-letters them), no payload larger than
    any status, at most ``max_held`` kiosks' (the oldest pushed out, said)."""
    rate = StatusRate("p", rate_per_s=1.0, burst=1, clock=_Clock(), max_held=2)
    made_up = Inbound("p/lab/" + "x" * 4000 + "/status", b"{}", 1, 1)
    assert [rate.refuses(made_up) for _ in range(2)] == [False, True]
    big = b"x" * (MAX_HELD_BYTES + 1)
    assert [rate.refuses(_status(n, "k1", big)) for n in range(2)] == [False, True]
    assert rate.due(every=True) == []
    for device in ("k1", "k2", "k3"):
        rate.refuses(_status(0, device))
        assert rate.refuses(_status(1, device))
    assert [message.topic for message in rate.due(every=True)] == [
        "p/lab/k2/status", "p/lab/k3/status"]
    assert rate.pushed_out == 1
    assert "kiosk lab/k1 is not written: 2 kiosks hold one" in caplog.text


def test_a_status_flood_is_said_in_a_line_then_a_count_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    rate = StatusRate("p", rate_per_s=1.0, burst=1, clock=clock)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for n in range(1000):
        rate.refuses(_status(n))
        rate.say_due()
    (first,) = [r.getMessage() for r in caplog.records]
    assert "kiosk lab/k1 sends statuses faster than backoffice.kiosk_statuses_per_s" in first
    assert "its newest one written once its rate allows" in first
    clock.now_s += REPORT_EVERY_S
    rate.say_due()
    assert "kiosk lab/k1: 998 more statuses over its rate" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_status_rate", open_store) as opened:
        yield opened


def test_a_held_status_is_written_as_received_then_so_its_clock_reading_holds(
    store: Store,
) -> None:
    """Written seconds after it came, it reads the kiosk's clock as of its receipt: read as
    of its write, an exact clock would seem to run that far behind."""
    came = datetime.now(UTC) - timedelta(seconds=30)
    status = fleet.online_status("lab", "k1").model_copy(update={"at": came})
    held = Inbound("appliance/lab/k1/status", status.to_json(), 1, 1, received=came)
    store.write_batch(Triage("appliance", 2**20).sort([held])[0], 1000, 2**40)
    (row,) = store.devices()
    assert row["clock_ahead_s"] == pytest.approx(0.0, abs=0.01)
    assert row["clock_read_at"] == row["last_seen"] == iso_utc(came)


def _flood(prefix: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` live statuses of lab/flood, its outbox depth counting up."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    return [(f"{prefix}/lab/flood/status",
             fleet.online_status("lab", "flood", outbox_depth=n).model_copy(
                 update={"at": start + timedelta(milliseconds=100 * n)}).to_json())
            for n in range(count)]


def _flood_row(store: Store) -> dict[str, Any] | None:
    return next((row for row in store.devices() if row["device_id"] == "flood"), None)


@pytest.mark.broker
@pytest.mark.usefixtures("mqtt_broker")
def test_a_status_flood_writes_its_burst_and_rate_and_ends_at_its_last_status(
    topic_prefix: str, tmp_path: Path, store: Store,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch a message (batch_max_rows 1), so that only the bound keeps the writes down:
    before, all 300 statuses were upserts."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    per_s, burst, count = 2.0, 10, 300
    upserted: list[str] = []
    flood_depths: list[int] = []  # the flood's outbox depths upserted, in order (a failure says)
    depth_at = DEVICE_COLUMNS.index("outbox_depth")
    upsert = store._upsert_statuses  # noqa: SLF001  (the write counted)

    def counted(cur: Any, rows: Any) -> None:
        upserted.extend(row[1] for row in rows)
        flood_depths.extend(row[depth_at] for row in rows if row[1] == "flood")
        upsert(cur, rows)

    monkeypatch.setattr(store, "_upsert_statuses", counted)
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"srate-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
                       "batch_max_rows": 1, "kiosk_statuses_per_s": per_s,
                       "kiosk_statuses_burst": burst},
    }, environ={})
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), worker.failed
    reader = Store(store.url, store._pg_schema)  # noqa: SLF001  (the worker's own schema)
    rng = random.Random(5)
    honest = [(f"{topic_prefix}/lab/honest/result",
               fleet.sample_result(rng, "lab", "honest", i).to_json()) for i in range(10)]
    started_s = time.monotonic()
    flooding = threading.Thread(target=fleet.publish_messages, args=(
        "127.0.0.1", 1883, _flood(topic_prefix, count)))
    flooding.start()
    try:
        fleet.publish_messages("127.0.0.1", 1883, honest)
        flooding.join(60)
        assert wait_until(lambda: worker.stats.received >= count + len(honest), 60), worker.stats
        assert wait_until(lambda: (row := _flood_row(reader)) is not None
                          and row["outbox_depth"] == count - 1, 30), (
            (_flood_row(reader) or {}).get("outbox_depth"), flood_depths[-8:], worker.stats)
        elapsed_s = time.monotonic() - started_s
        assert wait_until(lambda: reader.count_results() == len(honest), 30)
    finally:
        worker.stop()
        reader.close()
    written = upserted.count("flood")
    assert written <= burst + per_s * elapsed_s + 1, (written, elapsed_s)  # before: 300
    assert worker.stats.statuses_over_rate >= count - written
    said = [r.getMessage() for r in caplog.records if "sends statuses faster" in r.getMessage()]
    assert len(said) == 1
    assert "kiosk lab/flood" in said[0]


def test_a_held_status_is_not_taken_for_older_than_the_statuses_queued_before_it(
        store: Store) -> None:
    """The writer behind its inbox (more waiting than one batch): a status held over its
    kiosk's rate was stamped as it was held, and the statuses queued before it as they were
    written, later, so they were taken for newer and the row ended at an older one (the
    status-flood test met it once at load 6-9). Each is now stamped as it comes."""
    settings = BackofficeConfig(batch_max_rows=1, kiosk_statuses_per_s=50.0,
                                kiosk_statuses_burst=2)
    writer = BatchWriter(store, settings, Triage("p", 65536), lambda batch: None)
    for depth in range(3):  # two within the burst, the third held
        status = fleet.online_status("lab", "flood", outbox_depth=depth)
        assert writer.offer(Inbound("p/lab/flood/status", status.to_json(), depth + 1, 1))
    assert writer.stats.statuses_over_rate == 1
    time.sleep(0.1)  # the bucket has a token again: the held one is due at the first batch
    writer.start()
    writer.stop_event.set()  # it writes what waits, then every status still held, and ends
    writer.join(30)
    assert not writer.is_alive()
    row = _flood_row(store)
    assert row is not None
    assert row["outbox_depth"] == 2
