"""The back office's ingest worker and the pathology server say that their broker cannot be
reached (paho's own loop retried a failed connection without a word: `appliance backoffice`
with a wrong broker port logged its store and its empty stats, nothing else), again once a
minute while it lasts, and when the broker answers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import config_from_mapping
from appliance.pathology.service_main import run_server
from appliance.transport.broker import PrivateBroker, free_port
from appliance.transport.unreachable import BrokerReach

pytestmark = pytest.mark.broker


def _wait_for(condition: Callable[[], bool], deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_ingest_worker_says_its_broker_cannot_be_reached_and_when_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = config_from_mapping(
        {"mqtt": {"port": port, "topic_prefix": "unreachable"}, "state_dir": str(tmp_path),
         "backoffice": {"client_id": "bo-unreachable"}}, "test", environ={})
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    worker = IngestWorker(config, store)
    unreachable = f"bo-unreachable: broker 127.0.0.1:{port} unreachable ("
    with caplog.at_level(logging.INFO, logger="appliance.backoffice.ingest"):
        worker.start()
        try:
            assert _wait_for(lambda: unreachable in caplog.text, 30), caplog.text
            assert "Connection refused" in caplog.text
            with PrivateBroker(port=port, workdir=tmp_path / "broker"):
                assert _wait_for(worker.connected.is_set, 60)
                assert _wait_for(lambda: "failed tries" in caplog.text, 10)
        finally:
            worker.stop()
            store.close()
    assert caplog.text.count(unreachable) == 1  # said once, not at every try
    assert f"bo-unreachable: broker 127.0.0.1:{port} reached after " in caplog.text


def test_the_pathology_server_says_its_broker_cannot_be_reached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    (tmp_path / "slides").mkdir()
    config = config_from_mapping(
        {"mqtt": {"port": port}, "state_dir": str(tmp_path / "state"),
         "pathology": {"slide_roots": [str(tmp_path / "slides")], "client_id": "path-unreach",
                       "backends": ["onnx-cpu"], "results_dir": str(tmp_path / "results")}},
        "test", environ={})
    stop = threading.Event()
    codes: list[int] = []
    server = threading.Thread(target=lambda: codes.append(run_server(config, stop)))
    with caplog.at_level(logging.WARNING, logger="appliance.pathology.server"):
        server.start()
        try:
            said = f"path-unreach: broker 127.0.0.1:{port} unreachable ("
            assert _wait_for(lambda: said in caplog.text, 60), caplog.text
        finally:
            stop.set()
            server.join(30)
    assert codes == [0]


class _Client:
    on_connect_fail: Any = None


def test_a_long_outage_is_said_once_a_minute_with_its_tries_and_its_end(
    caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    reach = BrokerReach("w1", "broker.example.org", 1883, logging.getLogger("reach-test"),
                        clock=lambda: now[0])
    client = _Client()
    reach.attach(client)  # type: ignore[arg-type]

    def fail_at(when_s: float) -> None:
        now[0] = when_s
        try:  # paho calls on_connect_fail inside the except that caught the failure
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            client.on_connect_fail(client, None)

    with caplog.at_level(logging.INFO, logger="reach-test"):
        for when_s in (100.0, 101.0, 130.0, 161.0, 170.0):
            fail_at(when_s)
        now[0] = 175.0
        reach.reached()
        reach.reached()  # connected again later: nothing to say
    assert [record.getMessage() for record in caplog.records] == [
        "w1: broker broker.example.org:1883 unreachable ([Errno 111] Connection refused); "
        "retrying (said again each minute while it lasts)",
        "w1: broker broker.example.org:1883 still unreachable after 4 tries in 61 s ([Errno "
        "111] Connection refused); retrying",
        "w1: broker broker.example.org:1883 reached after 5 failed tries in 75 s",
    ]
