"""backoffice.leave_group_on_stop: a worker stopped in order leaves the result group and ends
its broker session, so the broker hands every new result to the workers still running, and
takes first what the broker had queued for it, since mosquitto drops a member's queue with its
session (docs/experiments/README.md "smallfix"). Where it cannot take it all (the store down),
it keeps the session, as every worker does without the key."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import Store, open_store
from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker

pytestmark = pytest.mark.broker
PREFIX = "leave"


def _config(port: int, folder: Path, client: str, *, leave: bool) -> Config:
    return config_from_mapping({
        "mqtt": {"port": port, "topic_prefix": PREFIX}, "state_dir": str(folder / client),
        "backoffice": {"client_id": client, "session_expiry_s": 600, "receive_maximum": 10,
                       "leave_group_on_stop": leave}}, environ={})


def _results(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"{PREFIX}/lab/kiosk-{i % 5}/result",
             fleet.sample_result(rng, "lab", f"kiosk-{i % 5}", i).to_json())
            for i in range(count)]


def _ids(messages: list[tuple[str, bytes]]) -> set[str]:
    return {json.loads(body)["measurement_id"] for _, body in messages}


def _stored(url: str) -> set[str]:
    reader = open_store(url)
    try:
        return {row[0] for row in reader.select_results(["measurement_id"])}
    finally:
        reader.close()


def _start(config: Config, url: str, slow_s: float = 0.0) -> tuple[IngestWorker, Store]:
    """A worker on the store at ``url`` whose every commit takes ``slow_s`` longer (so that
    the broker has results in flight and queued for it when it stops)."""
    store = open_store(url)
    if slow_s:
        write_batch = store.write_batch

        def slow(*args: object, **kwargs: object) -> object:
            time.sleep(slow_s)
            return write_batch(*args, **kwargs)  # type: ignore[arg-type]

        store.write_batch = slow  # type: ignore[method-assign]
    worker = IngestWorker(config, store)
    worker.start()
    assert worker.subscribed.wait(10), "worker did not subscribe"
    return worker, store


def _session_present(port: int, client_id: str) -> bool:
    """Whether the broker still keeps a session under ``client_id`` (asked with a clean start
    off and no subscription, then ended: MQTT 5 spec 3.2.2.1.1)."""
    answered, present = threading.Event(), []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def on_connect(*args: object) -> None:
        present.append(bool(getattr(args[2], "session_present", False)))
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, clean_start=False)
    client.loop_start()
    try:
        assert answered.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return present[0]


def test_a_worker_that_leaves_on_stop_takes_its_queue_and_the_rest_go_to_the_live_one(
    private_broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "appliance.backoffice.ingest")
    port = private_broker.port
    live_url, leaver_url = (f"sqlite:///{tmp_path / name}.sqlite3" for name in ("live", "old"))
    live, live_store = _start(_config(port, tmp_path, "office-live", leave=False), live_url)
    leaver, leaver_store = _start(_config(port, tmp_path, "office-old", leave=True), leaver_url,
                                  slow_s=0.05)
    try:
        first = _results(300, seed=1)
        fleet.publish_messages("127.0.0.1", port, first)
        assert wait_until(lambda: leaver.stats.received >= 20, 20)
        leaver.stop()  # with results in flight and queued for it: it takes them first
        leaver_store.close()
        assert "office-old left the result group and ended its session" in caplog.text
        assert not _session_present(port, "office-old")  # on main: kept for 600 s
        later = _results(100, seed=2)
        fleet.publish_messages("127.0.0.1", port, later)
        # every new result to the live worker (on main about half queued for office-old),
        # and not one of the first the broker had handed office-old dropped with its session
        assert wait_until(lambda: _ids(later) <= _stored(live_url), 20)
        assert _stored(live_url) | _stored(leaver_url) == _ids(first) | _ids(later)
        assert _stored(leaver_url)  # it did take a share before it left
    finally:
        live.stop()
        live_store.close()


def test_a_worker_that_cannot_commit_keeps_its_session_and_what_it_was_sent(
    private_broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The store fails: what the worker holds is not acknowledged, so ending the session would
    drop it; the worker keeps the session, and back with a store it gets every result."""
    caplog.set_level(logging.INFO, "appliance.backoffice.ingest")
    port = private_broker.port
    url = f"sqlite:///{tmp_path / 'office.sqlite3'}"
    config = _config(port, tmp_path, "office-1", leave=True)
    worker, store = _start(config, url)

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError("disk gone")

    store.write_batch = refuse  # type: ignore[method-assign]
    sent = _results(40, seed=3)
    fleet.publish_messages("127.0.0.1", port, sent)
    assert wait_until(lambda: "refused a batch (disk gone)" in caplog.text, 20)
    worker.stop(timeout_s=3)
    store.close()
    assert "office-1 keeps its session: what the broker sent it is not all committed" in (
        caplog.text)
    assert worker.stats.received == 0  # none of it stored
    back, back_store = _start(config, url)
    try:
        assert back.session_present is True
        assert wait_until(lambda: _ids(sent) <= _stored(url), 20)
    finally:
        back.stop()
        back_store.close()
