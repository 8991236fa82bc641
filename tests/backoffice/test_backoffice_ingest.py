"""The ingest worker against a real mosquitto: exact storage, dead letters, shared load, kills."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.service import run_backoffice
from appliance.backoffice.store import Store, open_store
from appliance.cli import main
from appliance.config import Config, config_from_mapping, load_config
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.acks import ack_topic, parse_ack
from appliance.transport.broker import PrivateBroker, free_port
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.payloads import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def _config(host: str, port: int, prefix: str, state_dir: Path, client: str = "w") -> Config:
    return config_from_mapping(
        {
            "mqtt": {"host": host, "port": port, "topic_prefix": prefix},
            "state_dir": str(state_dir),
            "backoffice": {"client_id": f"{client}-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
        },
        environ={},
    )


def _settled(read: Callable[[], int], quiet_s: float = 1.0, timeout_s: float = 30.0) -> bool:
    """Whether ``read()`` stops changing for ``quiet_s`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
    return False


def _results(prefix: str, count: int, seed: int, devices: int = 5) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        device = f"kiosk-{i % devices}"
        result = fleet.sample_result(rng, "lab", device, i)
        out.append((f"{prefix}/lab/{device}/result", result.to_json()))
    return out


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite store URL in the test's folder."""
    return f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"


def _start(config: Config, url: str) -> tuple[IngestWorker, Store]:
    store = open_store(url)
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), "worker did not subscribe"
    return worker, store


def test_duplicates_and_hostile_messages_leave_exactly_the_valid_results(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    worker, store = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store_url)
    valid = _results(topic_prefix, 200, seed=1)
    hostile = fleet.malformed_payloads(fleet.sample_result(random.Random(2), "lab", "k", 0))
    bad = [(f"{topic_prefix}/lab/kiosk-0/result", body) for body in hostile.values()]
    spoofed = [(f"{topic_prefix}/lab/kiosk-9/result", valid[0][1])]  # kiosk-0's result
    try:
        fleet.publish_messages("127.0.0.1", 1883, valid[:100] + bad + valid[:30] + spoofed)
        fleet.publish_messages("127.0.0.1", 1883, valid[100:])
        reader = open_store(store_url)
        assert wait_until(lambda: reader.count_dead_letters() == len(bad) + 1, 20)
        assert wait_until(lambda: reader.count_results() == 200, 20)
    finally:
        worker.stop()
        store.close()
    letters = reader.dead_letters()
    reasons = " | ".join(d.reason for d in letters)
    (huge,) = [d for d in letters if "exceeds" in d.reason]
    assert huge.payload_bytes == len(hostile["huge"])
    assert huge.payload == hostile["huge"][:MAX_PAYLOAD_BYTES]  # backoffice.dead_letter_max_bytes
    assert f"kept cut: the first {MAX_PAYLOAD_BYTES} of {huge.payload_bytes} bytes" in huge.reason
    phrases = ("not UTF-8:", "not JSON, though valid UTF-8", "nested too deeply", "exceeds",
               "Extra inputs", "kiosk-9", "NUL")
    for phrase in phrases:
        assert phrase in reasons
    assert worker.stats.duplicates == 30
    assert worker.stats.stored == 200


def _refused(prefix: str, device: str = "kiosk-0") -> tuple[str, str, bytes]:
    """(measurement id, topic, payload) of a result refused for a kiosk clock far ahead."""
    result = fleet.sample_result(random.Random(3), "lab", device, 0)
    body = json.loads(result.to_json())
    body["captured_at"] = "2999-01-01T00:00:07Z"
    return result.measurement_id, f"{prefix}/lab/{device}/result", json.dumps(body).encode()


class _AckListener:
    """Every id the back office confirms on one device's ack topic, in order."""

    def __init__(self, prefix: str, device: str = "kiosk-0") -> None:
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


def test_a_confirmed_refused_result_the_bounds_prune_is_warned_counted_and_shown_as_lost(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str, *,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    """kiosk-0 drops its refused result once confirmed; the bounds (one letter) prune that
    letter when kiosk-1's comes: the result is gone, and the back office says so."""
    config = _config("127.0.0.1", 1883, topic_prefix, tmp_path)
    config = config.model_copy(update={
        "backoffice": config.backoffice.model_copy(update={"dead_letter_max_rows": 1})})
    caplog.set_level(logging.WARNING)
    worker, store = _start(config, store_url)
    acks = {device: _AckListener(topic_prefix, device) for device in ("kiosk-0", "kiosk-1")}
    try:
        for device, listener in acks.items():
            measurement_id, topic, body = _refused(topic_prefix, device)
            fleet.publish_messages("127.0.0.1", 1883, [(topic, body)])
            assert wait_until(lambda m=measurement_id, ack=listener: m in ack.ids, 20)
    finally:
        for listener in acks.values():
            listener.close()
        worker.stop()
        store.close()
    assert worker.stats.only_copies_pruned == 1
    assert any("pruned 1 refused result(s)" in r.getMessage() and "lab/kiosk-0 (1)" in
               r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert main(["results", "dead-letters", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "1 dead letter(s) shown, of 1 kept" in out
    assert "LOST: the dead-letter bounds pruned 1 refused result(s)" in out
    assert "on 1 device(s): lab/kiosk-0 1 (last " in out


def test_a_refused_result_sent_again_is_kept_once_and_confirmed_each_time(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    """A kiosk sends a result again when the ack of the last copy never reached it: each copy
    was kept as another dead letter; now the letter is kept once and every copy confirmed."""
    worker, store = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store_url)
    acks = _AckListener(topic_prefix)
    measurement_id, topic, body = _refused(topic_prefix)
    reader = open_store(store_url)
    try:
        for copies in range(1, 6):
            fleet.publish_messages("127.0.0.1", 1883, [(topic, body)])
            assert wait_until(lambda n=copies: acks.ids.count(measurement_id) == n, 20)
        assert reader.count_dead_letters() == 1
    finally:
        acks.close()
        worker.stop()
        store.close()
    (letter,) = reader.dead_letters()
    reader.close()
    assert letter.payload == body
    assert "2999-01-01" in letter.reason
    assert worker.stats.dead_letters == 5


def _with_dead_letter_total(config: Config, total_bytes: int) -> Config:
    """``config`` whose dead letters may hold ``total_bytes`` together: below the largest
    letter, which a config file may not set, so that a few small letters reach the bound."""
    bounds = config.backoffice.model_copy(update={"dead_letter_max_total_bytes": total_bytes})
    return config.model_copy(update={"backoffice": bounds})


def test_a_flood_of_one_refused_result_sent_again_pushes_no_other_dead_letter_out(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    """Dead letters are pruned, oldest first, to backoffice.dead_letter_max_total_bytes: the
    copies of one result a kiosk sent again for days pushed every other letter out."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"w-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
    }, environ={})
    config = _with_dead_letter_total(config, 4_000)
    worker, store = _start(config, store_url)
    junk = [(f"{topic_prefix}/lab/kiosk-{i}/result", b'{"schema": %d}' % i) for i in (1, 2, 3)]
    _, topic, body = _refused(topic_prefix)
    assert 4 * len(body) > 4_000  # a few copies fill the bound
    reader = open_store(store_url)
    try:
        fleet.publish_messages("127.0.0.1", 1883, junk)
        assert wait_until(lambda: reader.count_dead_letters() == 3, 20)
        fleet.publish_messages("127.0.0.1", 1883, [(topic, body)] * 200)
        assert wait_until(lambda: worker.stats.received == 203, 20)
    finally:
        worker.stop()
        store.close()
    letters = reader.dead_letters()
    reader.close()
    assert sorted(d.topic for d in letters) == sorted([t for t, _ in junk] + [topic])


def test_a_refused_result_the_bounds_prune_at_once_is_not_confirmed(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    """A letter pruned in its own transaction (dead_letter_max_total_bytes smaller than it)
    was confirmed all the same, and its kiosk dropped the one copy of the result."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": 1883, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path),
        "backoffice": {"client_id": f"w-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60},
    }, environ={})
    config = _with_dead_letter_total(config, 500)
    worker, store = _start(config, store_url)
    acks = _AckListener(topic_prefix)
    measurement_id, topic, body = _refused(topic_prefix)
    valid = fleet.sample_result(random.Random(4), "lab", "kiosk-0", 1)
    reader = open_store(store_url)
    try:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, body)])
        assert wait_until(lambda: worker.stats.received == 1, 20)
        fleet.publish_messages("127.0.0.1", 1883, [(topic, valid.to_json())])
        # acks leave the worker in order: the refused result's would come before this one
        assert wait_until(lambda: valid.measurement_id in acks.ids, 20)
        assert measurement_id not in acks.ids
        assert reader.count_dead_letters() == 0
        assert reader.count_results() == 1
    finally:
        acks.close()
        worker.stop()
        store.close()
        reader.close()


def test_retained_birth_and_last_will_show_in_the_fleet(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    topic = f"{topic_prefix}/lab/kiosk-7/status"
    birth = fleet.online_status("lab", "kiosk-7", outbox_depth=3)
    fleet.publish_messages("127.0.0.1", 1883, [(topic, birth.to_json())], retain=True)
    worker, store = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store_url)
    reader = open_store(store_url)
    try:
        assert wait_until(lambda: [d["state"] for d in reader.devices()] == ["online"], 20)
        will = birth.model_copy(update={"state": "offline"}).to_json()
        fleet.publish_messages("127.0.0.1", 1883, [(topic, will)], retain=True)
        assert wait_until(lambda: [d["state"] for d in reader.devices()] == ["offline"], 20)
    finally:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"")], retain=True)
        worker.stop()
        store.close()
    (device,) = reader.devices()
    assert device["outbox_depth"] == 3
    # the retained birth was replayed on subscribe: last seen is when it was sent, not now
    assert device["status_at"] <= device["last_seen"] < iso_utc(datetime.now(UTC))
    assert device["last_seen"] > iso_utc(birth.at)  # the will arrived live, later


def test_the_connect_line_names_every_filter_the_worker_subscribes(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It named the shared results filter alone: an operator reading the journal for why the
    fleet table stays empty saw no status subscription."""
    caplog.set_level(logging.INFO, logger="appliance.backoffice.ingest")
    worker, store = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store_url)
    worker.stop()
    store.close()
    (line,) = [r.getMessage() for r in caplog.records if "subscribed to" in r.getMessage()]
    assert line.endswith(f"subscribed to $share/backoffice/{topic_prefix}/+/+/result, "
                         f"{topic_prefix}/+/+/status, {topic_prefix}/+/+/model/state")


def test_two_workers_on_one_shared_subscription_split_the_load_without_duplicates(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    first = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path, "a"), store_url)
    second = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path, "b"), store_url)
    messages = _results(topic_prefix, 600, seed=3)
    try:
        fleet.publish_messages("127.0.0.1", 1883, messages)
        reader = open_store(store_url)
        assert wait_until(lambda: reader.count_results() == 600, 20)
        assert wait_until(lambda: first[0].stats.received + second[0].stats.received == 600, 20)
    finally:
        for worker, store in (first, second):
            worker.stop()
            store.close()
    assert first[0].stats.stored > 100
    assert second[0].stats.stored > 100
    assert first[0].stats.stored + second[0].stats.stored == 600


def _spawn_worker(config_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE__")}
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "backoffice", "--config", str(config_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_worker_killed_mid_stream_loses_nothing_after_restart(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    config_path = tmp_path / "backoffice.yaml"
    config_path.write_text(yaml.safe_dump({
        "mqtt": {"port": private_broker.port, "topic_prefix": "fleet"},
        "state_dir": str(tmp_path / "state"),
        "backoffice": {"client_id": "office-1", "batch_max_rows": 50, "session_expiry_s": 600},
    }))
    messages = _results("fleet", 4000, seed=4, devices=20)
    reader_url = f"sqlite:///{tmp_path / 'state' / 'backoffice.sqlite3'}"
    session, store = _start(load_config(config_path), reader_url)  # the deployed subscription
    session.stop()
    store.close()
    worker = _spawn_worker(config_path)
    try:
        reader = open_store(reader_url)
        fleet.publish_messages("127.0.0.1", private_broker.port, messages[:2500])
        assert wait_until(lambda: reader.count_results() >= 300, 20)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        stored_at_kill = reader.count_results()
        fleet.publish_messages("127.0.0.1", private_broker.port, messages[2500:])
        worker = _spawn_worker(config_path)
        assert wait_until(lambda: reader.count_results() == 4000, timeout_s=40)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=20)
    assert stored_at_kill < 4000, "the kill came too late to test anything"
    assert worker.returncode == 0, stderr.decode()[-2000:]
    assert b"session present: True" in stderr


@pytest.mark.postgres
def test_ingest_into_postgresql_stores_each_result_once(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path
) -> None:
    schema = f"test_ingest_{uuid.uuid4().hex[:12]}"
    url = "postgresql://postgres@127.0.0.1:5432/test"
    store = open_store(url, pg_schema=schema)
    worker = IngestWorker(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store)
    worker.start()
    reader = open_store(url, pg_schema=schema)
    try:
        assert worker.subscribed.wait(10)
        valid = _results(topic_prefix, 150, seed=8)
        junk = [(f"{topic_prefix}/lab/kiosk-1/result", b'{"schema": 1}')]
        fleet.publish_messages("127.0.0.1", 1883, valid + junk + valid[:40])
        assert wait_until(lambda: worker.stats.received == 191, 20)
        assert reader.count_results() == 150
        assert reader.count_dead_letters() == 1
    finally:
        worker.stop()
        store.close()
        reader.drop_postgres_schema(schema)
        reader.close()


def test_a_retired_worker_s_session_stops_taking_a_share_of_the_results(
    private_broker: PrivateBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a stopped worker's session stays in the share group: the broker queues a share of the
    # results for it; --retire ends that session, so a worker taken out of service holds none
    def config(client: str) -> Path:
        path = tmp_path / f"{client}.yaml"
        path.write_text(yaml.safe_dump({
            "mqtt": {"port": private_broker.port, "topic_prefix": "fleet"},
            "state_dir": str(tmp_path / client),
            "backoffice": {"client_id": client, "session_expiry_s": 600}}))
        return path

    old_path, live_path = config("office-old"), config("office-live")
    old_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old, old_store = _start(load_config(old_path), old_url)
    old.stop()
    old_store.close()
    url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    live, live_store = _start(load_config(live_path), url)
    try:
        fleet.publish_messages("127.0.0.1", private_broker.port,
                               _results("fleet", 200, seed=8))
        assert wait_until(lambda: live.stats.received > 0, 20)
        assert main(["backoffice", "--config", str(old_path), "--retire"]) == 0
        assert "ended the broker session of office-old" in capsys.readouterr().out
        back, back_store = _start(load_config(old_path), old_url)
        try:
            assert back.session_present is False
            new = _results("fleet", 40, seed=9)
            fleet.publish_messages("127.0.0.1", private_broker.port, new)
            new_ids = {json.loads(payload)["measurement_id"] for _, payload in new}
            stores = [open_store(url), open_store(old_url)]

            def ids(store: Store) -> set[str]:
                return {row[0] for row in store.select_results(["measurement_id"])}

            assert wait_until(lambda: new_ids <= ids(stores[0]) | ids(stores[1]), 20)
            # what was queued for the old session would have come first: the restarted
            # worker got new results only, and the first 200 went to the live one alone
            assert ids(stores[1]) <= new_ids
            assert len(ids(stores[0]) - new_ids) < 200  # the stopped session did take a share
        finally:
            back.stop()
            back_store.close()
    finally:
        live.stop()
        live_store.close()


def test_retire_names_a_broker_that_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "office.yaml"
    path.write_text(yaml.safe_dump({"mqtt": {"port": free_port()}, "state_dir": str(tmp_path)}))
    assert main(["backoffice", "--config", str(path), "--retire"]) == 1
    assert "backoffice --retire: cannot reach the broker at 127.0.0.1:" in capsys.readouterr().err


def test_a_flood_of_qos0_results_is_bounded_in_memory_and_qos1_results_still_land(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QoS 0 has no flow control: a hostile login publishing thousands of them while the
    store is slow grew the worker's queue without bound. At most MAX_QOS0_WAITING wait; the
    rest are dropped and counted, and results sent at QoS 1, as kiosks send them, all land.
    The flood comes on kiosk-0's topic, as do those results: its bucket (kiosk_rate.py) is
    made larger than the flood, so that only the QoS 0 bound is met here."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.backoffice.batcher import MAX_QOS0_WAITING

    config = _config("127.0.0.1", 1883, topic_prefix, tmp_path)
    config = config.model_copy(update={
        "backoffice": config.backoffice.model_copy(update={"kiosk_results_burst": 10_000})})
    worker, store = _start(config, store_url)
    released = threading.Event()
    write_batch = store.write_batch

    def slow_store(*args: object, **kwargs: object) -> object:
        released.wait(60)
        return write_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write_batch", slow_store)
    flood = _results(topic_prefix, 2000, seed=5, devices=1)
    hostile = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    hostile.connect("127.0.0.1", 1883)
    hostile.loop_start()
    try:
        sent = [hostile.publish(topic, body, qos=0) for topic, body in flood]
        sent[-1].wait_for_publish(20)
        # the broker may drop QoS 0 messages itself under load: wait until the flood that
        # reaches the worker is over (no new refusal for a second), not for a fixed count
        assert wait_until(lambda: worker.stats.qos0_refused > 0, 20)
        assert _settled(lambda: worker.stats.qos0_refused)
        assert worker.writer.inbox.qsize() <= MAX_QOS0_WAITING
        kiosk = [(f"{topic_prefix}/lab/kiosk-0/result", body) for _, body in
                 _results(topic_prefix, 5, seed=6, devices=1)]
        fleet.publish_messages("127.0.0.1", 1883, kiosk)
        released.set()
        accepted = 2000 - worker.stats.qos0_refused
        reader = open_store(store_url)
        assert wait_until(lambda: worker.stats.received >= accepted + 5, 60)
        assert reader.count_results() <= accepted + 5
        stored = {row[0] for row in reader.select_results(["measurement_id"])}
        assert {json.loads(body)["measurement_id"] for _, body in kiosk} <= stored
    finally:
        released.set()
        hostile.disconnect()
        hostile.loop_stop()
        worker.stop()
        store.close()


@pytest.mark.postgres
def test_the_worker_names_its_store_without_the_password(
    mqtt_broker: Any, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`appliance backoffice` logged "storing to postgresql://user:PASSWORD@..." at start: the
    database password in the journal of every worker, for anyone who reads logs."""
    import psycopg

    schema = f"test_ingest_{uuid.uuid4().hex[:10]}"
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            config = _config(mqtt_broker.host, mqtt_broker.port, topic_prefix, tmp_path)
            config = config.model_copy(update={"store": config.store.model_copy(
                update={"url": url})})
            stop = threading.Event()
            stop.set()  # start, say where it stores, stop
            caplog.set_level(logging.INFO, logger="appliance.backoffice.service")
            assert run_backoffice(config, stop) == 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    said = [r.getMessage() for r in caplog.records if "storing to" in r.getMessage()]
    assert said == [f"back office {config.backoffice.client_id} storing to the PostgreSQL "
                    f"database {url.replace('s3cret-pw', '***')}"]
    assert "s3cret-pw" not in caplog.text


@pytest.mark.parametrize("locking", ["exclusive locking mode", "BEGIN EXCLUSIVE"])
def test_a_store_another_program_holds_locked_stops_the_worker_with_one_line(
    locking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker starting on a store another program keeps locked past the busy timeout said
    'database is locked; check the path' (at connect) or only 'database is locked' (at
    migrate): the path was right, and nothing said to wait for the other program."""
    import sqlite3

    import appliance.backoffice.store as store_module

    path = tmp_path / "backoffice.sqlite3"
    open_store(f"sqlite:///{path}").close()
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    config = _config("127.0.0.1", free_port(), "never-reached", tmp_path)
    config = config.model_copy(update={"store": config.store.model_copy(
        update={"url": f"sqlite:///{path}"})})
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        if locking == "exclusive locking mode":
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM results WHERE 0")
        caplog.set_level(logging.INFO, logger="appliance.backoffice.service")
        assert run_backoffice(config, threading.Event()) == 1
    finally:
        holder.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].exc_info is None  # no traceback
    said = errors[0].getMessage()
    assert f"SQLite store {path}: database is locked (another program held it locked " in said
    assert said.endswith("try again once that program is done)"), said


def _letters_named(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The dead letters the back office named in warnings so far."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.getMessage().startswith("dead letter on ")]


def _letters_reach(worker: IngestWorker, count: int) -> bool:
    """Whether the worker has committed ``count`` dead letters (new or kept already)."""
    return wait_until(lambda: worker.stats.dead_letters == count, 20)


def test_retained_junk_is_named_once_not_again_at_every_start_of_the_back_office(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the broker hands each retained status out again at every subscribe: each start warned
    # "dead letter on <topic>" again of junk the store had kept (once) long before
    junk = {f"{topic_prefix}/lab/kiosk-{name}/status": body for name, body in (
        ("utf8", b"\xff\xfe\x00garbage"), ("deep", b"[" * 100_000 + b"]" * 100_000),
        ("null", b"null"))}
    fleet.publish_messages("127.0.0.1", 1883, list(junk.items()), retain=True)
    config = _config("127.0.0.1", 1883, topic_prefix, tmp_path)  # one back office, restarted
    reader = open_store(store_url)
    try:
        for start in range(3):
            worker, store = _start(config, store_url)
            try:
                assert _letters_reach(worker, 3), start
                if start == 2:  # new junk on a topic whose old junk is kept: named
                    fleet.publish_messages("127.0.0.1", 1883, [(
                        f"{topic_prefix}/lab/kiosk-null/status", b"[]")], retain=True)
                    assert _letters_reach(worker, 4)
            finally:
                worker.stop()
                store.close()
        assert reader.count_dead_letters() == 4
    finally:
        fleet.publish_messages("127.0.0.1", 1883, [(topic, b"") for topic in junk], retain=True)
        reader.close()
    named = _letters_named(caplog)
    assert len(named) == 4, named
    assert sorted(line.split(":")[0] for line in named) == sorted(
        [f"dead letter on {topic}" for topic in junk]
        + [f"dead letter on {topic_prefix}/lab/kiosk-null/status"])


def test_a_result_carrying_megabytes_of_user_properties_never_reaches_the_worker(
    mqtt_broker: object, topic_prefix: str, tmp_path: Path, store_url: str
) -> None:
    """A broker without the shipped max_packet_size (mosquitto's default is MQTT's 256 MB)
    forwards a small result with megabytes of MQTT 5 user properties: the worker's CONNECT
    names the largest packet it takes, so the broker drops such a one for it instead."""
    worker, store = _start(_config("127.0.0.1", 1883, topic_prefix, tmp_path), store_url)
    (hostile, marker) = _results(topic_prefix, 2, seed=7, devices=1)
    padded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    padded.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(40)]  # 2.4 MB
    client = new_client(LinkSettings("127.0.0.1", 1883, ""))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        for (topic, body), properties in ((hostile, padded), (marker, None)):
            sent = client.publish(topic, body, qos=1, properties=properties)
            sent.wait_for_publish(timeout=30)
            assert sent.is_published()  # the broker took both
        reader = open_store(store_url)
        assert wait_until(lambda: reader.count_results() >= 1, 20)  # the marker, sent after
        assert _settled(reader.count_results)
        assert reader.count_results() == 1  # on main: 2, the padded one read whole and stored
        stored = reader.select_results(("measurement_id",))
        assert [row[0] for row in stored] == [json.loads(marker[1])["measurement_id"]]
    finally:
        client.disconnect()
        client.loop_stop()
        worker.stop()
        store.close()
