"""The pathology server across a real PostgreSQL restart, crash and read-only start
(tests/pg_cluster.py: a server of the module's own) while a job runs: its slides are scored
while the store is away, each slide result is stored once when it answers again, the job ends
done, and the server says the outage once, and once that it is over, without a traceback."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology import server as server_module
from appliance.pathology.backends import ModelOutputs, OnnxBackend
from appliance.pathology.jobs import JOB_SCHEMA, request_topic
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from appliance.pathology.server import PathologyServer
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pg_cluster import HeldCall, PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.broker]
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"
SLIDES = ("b11", "b12")
LOGGERS = ("appliance.pathology.server", "appliance.pathology.finisher")


class GatedBackend:
    """The shipped ONNX model on the CPU, scoring a batch only once ``flowing`` is set."""

    def __init__(self) -> None:
        self.inner = OnnxBackend(DEMO, "cpu")
        self.info, self.settings = self.inner.info, self.inner.settings
        self.flowing = threading.Event()

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        self.flowing.wait(120)
        return self.inner.infer(tiles_rgb)


@pytest.fixture(scope="module")
def slide_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic H&E slides, made once for the module."""
    root = tmp_path_factory.mktemp("slides")
    for seed, name in enumerate(SLIDES, start=11):
        spec = SlideSpec(name, f"P{seed}", "MSI", "biopsy", 1, 0.5, seed=seed)
        Image.fromarray(painted(spec)).save(root / f"{name}.jpg", quality=88)
    return root


def _config(tmp_path: Path, broker: Any, prefix: str, url: str, root: Path) -> Config:
    return config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"), "store": {"url": url},
        "pathology": {"client_id": f"pgrestart-{uuid.uuid4().hex[:10]}",
                      "slide_roots": [str(root)], "results_dir": str(tmp_path / "out"),
                      "backends": ["onnx-cpu"], "prepare_workers": 1}})


def _submit(config: Config, job_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(config.mqtt.host, config.mqtt.port)
    client.loop_start()
    root = Path(config.pathology.slide_roots[0])
    request = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
               "slides": [{"path": str(root / f"{name}.jpg"), "um_per_px": 1.0}
                          for name in SLIDES]}
    client.publish(request_topic(config.mqtt.topic_prefix, job_id), json.dumps(request).encode(),
                   qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _job(url: str, job_id: str) -> tuple[str, int, int]:
    """The job's state, its slide result rows and their distinct slides; ("", 0, 0) while
    the server is down."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            job = conn.execute("SELECT state FROM pathology_jobs WHERE job_id = %s",
                               (job_id,)).fetchone()
            rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT slide_index) FROM "
                                "pathology_slides WHERE job_id = %s", (job_id,)).fetchone()
    except psycopg.OperationalError:
        return ("", 0, 0)
    assert rows is not None
    return (job[0] if job else "", int(rows[0]), int(rows[1]))


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records
            if r.name in LOGGERS and r.levelno >= logging.WARNING]


@pytest.fixture
def serving(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, pg_cluster: PgCluster,
    slide_root: Path,
) -> Iterator[tuple[Config, GatedBackend]]:
    """A pathology server on a new database of the test's server, its backend gated."""
    config = _config(tmp_path, mqtt_broker, topic_prefix, pg_cluster.database(), slide_root)
    store = open_pathology_store(config.store.url)
    backend = GatedBackend()
    server = PathologyServer(config, store, backend)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    database = config.store.url.rsplit("/", 1)[1]
    sessions = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"
    try:
        assert server.connected.wait(20)
        # the slide finisher opens its own connection in its thread: a restart before that
        # meets its opening (an outage said), not the connection the test means to close
        assert wait_until(lambda: len(pg_cluster.sql(sessions).split()) == 2, 30)
        yield config, backend
    finally:
        backend.flowing.set()
        stop.set()
        thread.join(30)
        store.close()
    assert not thread.is_alive()


def _each_outage_ended(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether each of the server's parts that said an outage has said that it is over."""
    said = _said(caplog)
    return all([level for name, level, _ in said if name == logger][-1:] != ["ERROR"]
               for logger in LOGGERS)


def _outage_said_once_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    said = _said(caplog)
    assert not [r for r in caplog.records if r.exc_info], said  # no traceback
    assert said, "the outage was not said"
    for logger in LOGGERS:  # besides a line naming a new cause (a server back read-only)
        levels = [level for name, level, text in said
                  if name == logger and "now for another cause" not in text]
        assert levels in ([], ["ERROR", "WARNING"]), said
    assert all(" answers again after " in text for _, level, text in said
               if level == "WARNING"), said


@pytest.mark.parametrize("how", ["restarted", "crashed"])
def test_a_job_running_while_postgresql_is_restarted_or_crashed_ends_with_each_slide_once(
    how: str, serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, backend = serving
    url = config.store.url
    _submit(config, "lab/job-1")
    assert wait_until(lambda: _job(url, "lab/job-1")[0] == "running", 60)
    recoveries = pg_cluster.crash_recoveries()
    if how == "restarted":
        pg_cluster.stop("fast")
    else:
        pg_cluster.kill()
    backend.flowing.set()  # the slides are scored while the store is away
    assert wait_until(lambda: any(level == "ERROR" for _, level, _ in _said(caplog)), 60)
    pg_cluster.start()
    assert pg_cluster.crash_recoveries() == recoveries + (how == "crashed")
    assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _said(caplog)
    assert wait_until(lambda: _each_outage_ended(caplog), 30), _said(caplog)
    _outage_said_once_and_its_end(caplog)


def test_a_job_running_while_postgresql_comes_back_read_only_ends_once_it_may_write(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server back read-only (a standby not yet promoted) is an outage, not a refusal of the
    slides' values: nothing failed, stored once it takes writes again."""
    config, backend = serving
    url = config.store.url
    _submit(config, "lab/job-1")
    assert wait_until(lambda: _job(url, "lab/job-1")[0] == "running", 60)
    pg_cluster.stop("fast")
    pg_cluster.configure("default_transaction_read_only", "on")
    pg_cluster.start()
    try:
        backend.flowing.set()
        assert wait_until(lambda: "read-only transaction" in pg_cluster.log_tail(10**6), 60)
        assert wait_until(lambda: any(level == "ERROR" for _, level, _ in _said(caplog)), 60)
        assert _job(url, "lab/job-1") == ("running", 0, 0)
        # named as it begins, not only by the next minute's line
        assert wait_until(lambda: any("read-only transaction" in text
                                      for _, level, text in _said(caplog)
                                      if level == "ERROR"), 30), _said(caplog)
    finally:
        pg_cluster.configure("default_transaction_read_only", "off")
        pg_cluster.reload()
    assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _said(caplog)
    assert wait_until(lambda: _each_outage_ended(caplog), 30), _said(caplog)
    _outage_said_once_and_its_end(caplog)


def test_a_job_requested_while_postgresql_is_down_runs_once_it_is_back(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The request waits unacknowledged on the broker while the store cannot take the job,
    and is taken, run and done once, when it can."""
    config, backend = serving
    url = config.store.url
    backend.flowing.set()
    pg_cluster.stop("fast")
    try:
        _submit(config, "lab/job-2")
        assert wait_until(lambda: any(level == "ERROR" for _, level, _ in _said(caplog)), 60)
    finally:
        pg_cluster.start()
    assert wait_until(lambda: _job(url, "lab/job-2") == ("done", 2, 2), 60), _said(caplog)
    assert wait_until(lambda: _each_outage_ended(caplog), 30), _said(caplog)
    _outage_said_once_and_its_end(caplog)


def test_connections_closed_by_postgresql_while_the_server_idles_are_made_again_quietly(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a restart between two housekeeping rounds leaves, and one while no job runs does
    to the slide finisher's connection: connections the PostgreSQL server closed (here its
    administrator's pg_terminate_backend, the same FATAL a fast shutdown sends). Each is made
    again at its next call, said at INFO, and the job runs with no outage said (before: an
    ERROR, then "answers again", from the server's loop and again from the finisher)."""
    config, backend = serving
    url = config.store.url
    database = url.rsplit("/", 1)[1]
    backend.flowing.set()
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    sessions = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"
    assert wait_until(lambda: len(pg_cluster.sql(sessions).split()) == 2, 30)  # loop, finisher
    pids = pg_cluster.sql(sessions).split()
    pg_cluster.sql(f"SELECT pg_terminate_backend(pid) FROM ({sessions}) AS server")
    assert wait_until(lambda: not set(pids) & set(pg_cluster.sql(sessions).split()), 30)
    _submit(config, "lab/job-1")
    assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _said(caplog)
    assert _said(caplog) == []
    reopened = [r.getMessage() for r in caplog.records if r.name == "appliance.backoffice.store"]
    assert len(reopened) == 2, reopened
    assert all("had closed the connection (terminating connection due to administrator "
               "command); reconnected" in text for text in reopened), reopened


def _loud(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """Every line at WARNING and above, whoever said it."""
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records
            if r.levelno >= logging.WARNING]


def _reopened(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "appliance.backoffice.store"
            and "had closed the connection" in r.getMessage()]


def test_a_restart_that_lands_in_the_housekeepings_store_call_is_one_quiet_reconnect(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The housekeeping (every 0.5 s) renews its leases while PostgreSQL restarts: its call
    fails, and the server is still away when it tries a new connection. The restart is waited
    out and the round run again, said at INFO; before, an ERROR "a read or write failed" and
    a WARNING "answers again" at every restart of the store under an idle server."""
    config, backend = serving
    backend.flowing.set()
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    HeldCall(monkeypatch, PathologyStore, "renew").restart_under_it(pg_cluster)
    _submit(config, "lab/job-1")
    assert wait_until(lambda: _job(config.store.url, "lab/job-1") == ("done", 2, 2), 60), \
        _loud(caplog)
    assert _loud(caplog) == []
    assert len(_reopened(caplog)) == 2, _reopened(caplog)  # the loop's, the finisher's


def test_a_restart_that_lands_in_a_slide_store_is_one_quiet_reconnect_and_one_slide_row(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slide finisher stores a slide's result while PostgreSQL restarts: it waits for the
    server and stores it once, said at INFO (before: its outage, ERROR then WARNING)."""
    config, backend = serving
    url = config.store.url
    held = HeldCall(monkeypatch, PathologyStore, "store_slide")
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    _submit(config, "lab/job-1")
    assert wait_until(lambda: _job(url, "lab/job-1")[0] == "running", 60)
    held.armed.set()
    backend.flowing.set()
    held.restart_under_it(pg_cluster)
    assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _loud(caplog)
    assert _loud(caplog) == []
    assert len(_reopened(caplog)) == 2, _reopened(caplog)  # the finisher's, the loop's


def test_a_restart_that_lands_in_a_job_start_stores_the_job_running_and_ends_it_once(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job is accepted, then PostgreSQL restarts as the server marks it running: the request
    is handled again, finds the job running here, and the job is still stored running (before:
    it stayed queued in the store until it ended), done once, said at INFO only."""
    config, backend = serving
    url = config.store.url
    held = HeldCall(monkeypatch, PathologyStore, "set_running")
    caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
    held.armed.set()
    _submit(config, "lab/job-1")
    held.restart_under_it(pg_cluster)
    assert wait_until(lambda: _job(url, "lab/job-1")[0] == "running", 30), \
        (_job(url, "lab/job-1"), _loud(caplog))
    backend.flowing.set()
    assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _loud(caplog)
    assert _loud(caplog) == []
    assert len(_reopened(caplog)) == 2, _reopened(caplog)


def test_a_restart_that_lands_in_answering_an_ended_jobs_request_again_still_answers_it(
    serving: tuple[Config, GatedBackend], pg_cluster: PgCluster,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ended job's request is sent again; as the housekeeping reads the job's slide results
    to answer it, PostgreSQL restarts: the round is run again on a new connection and the
    request is answered and cleared (before: the job was forgotten as due before its answer,
    so the request stayed retained, unanswered, until the next rescan of the requests)."""
    config, backend = serving
    url, prefix = config.store.url, config.mqtt.topic_prefix
    backend.flowing.set()
    monkeypatch.setattr(server_module, "RESCAN_S", 3600.0)  # only the answer clears it
    payloads: list[bytes] = []
    subscribed = threading.Event()
    recorder = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    recorder.on_message = lambda client, userdata, message: payloads.append(message.payload)
    recorder.on_subscribe = lambda *args: subscribed.set()
    recorder.connect(config.mqtt.host, config.mqtt.port)
    recorder.loop_start()
    try:
        recorder.subscribe(request_topic(prefix, "lab/job-1"), qos=1)
        assert subscribed.wait(10)
        _submit(config, "lab/job-1")
        assert wait_until(lambda: _job(url, "lab/job-1") == ("done", 2, 2), 60), _loud(caplog)
        # the first request's clear, seen before the second is sent: a clear that came late
        # read as the answer to the second (the test then looked before the reconnect)
        assert wait_until(lambda: _sent_then_cleared(payloads), 30), payloads
        payloads.clear()
        held = HeldCall(monkeypatch, PathologyStore, "slide_results")
        caplog.set_level(logging.INFO, logger="appliance.backoffice.store")
        held.armed.set()
        _submit(config, "lab/job-1")  # the same request again
        held.restart_under_it(pg_cluster)
        assert wait_until(lambda: _sent_then_cleared(payloads), 30), payloads
    finally:
        recorder.disconnect()
        recorder.loop_stop()
    assert _job(url, "lab/job-1") == ("done", 2, 2)
    assert _loud(caplog) == []
    assert len(_reopened(caplog)) == 1, _reopened(caplog)


def _sent_then_cleared(payloads: list[bytes]) -> bool:
    """Whether a request came, and then its clear (an empty retained payload)."""
    sent = [index for index, payload in enumerate(payloads) if payload]
    return bool(sent) and b"" in payloads[sent[0]:]
