"""A PostgreSQL server that hangs under ``appliance pathology serve`` while its host stays up
(a stalled disk, a stopped process; tests/pg_cut.py's relay): its kernel goes on acknowledging,
so TCP keepalives never find it, and the server's store calls (a slide's write, the leases'
renewal) waited for ever with nothing said. Now each store call that has no answer after
jobstore.ANSWER_DEADLINE_S has its connection cut and fails as in any outage: said once,
retried, and the job is done once the server answers again; and a server stopped while its
store hangs ends at once, the stop cutting the call that waits, and says no outage."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from appliance.backoffice.store import StoreError
from appliance.config import Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology import jobstore
from appliance.pathology.backends import ModelOutputs, OnnxBackend
from appliance.pathology.jobs import JOB_SCHEMA, request_topic, server_topic
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from appliance.pathology.server import PathologyServer
from appliance.pathology.service_main import run_server
from appliance.synthetic.he import SlideSpec
from tests.he_slides import painted
from tests.pg_cut import CutServer, cut_server
from tests.store_helpers import PG_URL

pytestmark = [pytest.mark.postgres, pytest.mark.broker]
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"


class GatedBackend:
    """The shipped ONNX model on the CPU, scoring a batch only once ``flowing`` is set."""

    def __init__(self) -> None:
        self.inner = OnnxBackend(DEMO, "cpu")
        self.info, self.settings = self.inner.info, self.inner.settings
        self.flowing = threading.Event()

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        self.flowing.wait(120)
        return self.inner.infer(tiles_rgb)


# The test's patience with a store call, not 30 s. Every call on a server that answers must
# be done within it, or it is cut and said as an outage the test did not make: through the
# relay on a 2-vCPU machine at load 11-14 the slowest of 245 such calls took 0.35 s, a third
# of the 1 s this was. Calls on the hung relay wait it out.
DEADLINE_S = 5.0


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store calls' deadline for these tests (DEADLINE_S)."""
    monkeypatch.setattr(jobstore, "ANSWER_DEADLINE_S", DEADLINE_S)


@pytest.fixture
def schema() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped after it."""
    name = f"pathhang_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _config(tmp_path: Path, broker: Any, prefix: str, url: str, **pathology: Any) -> Config:
    """A server's config (a client id of its own), the slide b11.jpg in its slide root."""
    root = tmp_path / "slides"
    if not root.exists():
        root.mkdir()
        spec = SlideSpec("b11", "P11", "MSI", "biopsy", 1, 0.5, seed=11)
        Image.fromarray(painted(spec)).save(root / "b11.jpg", quality=88)
    return config_from_mapping({
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"), "store": {"url": url},
        "pathology": {"client_id": f"pathhang-{uuid.uuid4().hex[:10]}",
                      "slide_roots": [str(root)], "results_dir": str(tmp_path / "out"),
                      "backends": ["onnx-cpu"], "prepare_workers": 1, **pathology}})


@contextmanager
def _serving(server: PathologyServer, stop: threading.Event) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert server.connected.wait(20)
        yield thread
    finally:
        stop.set()
        thread.join(30)


def _submit(config: Config, job_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(config.mqtt.host, config.mqtt.port)
    client.loop_start()
    slide = Path(config.pathology.slide_roots[0]) / "b11.jpg"
    request = {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
               "slides": [{"path": str(slide), "um_per_px": 1.0}]}
    client.publish(request_topic(config.mqtt.topic_prefix, job_id), json.dumps(request).encode(),
                   qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _job_state(schema: str, job_id: str, column: str = "state") -> tuple[Any, int]:
    """The job's state (or another ``column``) and how many slide results it has, read past
    the relay."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"SET search_path TO {schema}")
        job = admin.execute(f"SELECT {column} FROM pathology_jobs WHERE job_id = %s",
                            (job_id,)).fetchone()
        slides = admin.execute("SELECT COUNT(*) FROM pathology_slides WHERE job_id = %s",
                               (job_id,)).fetchone()
    return (job[0] if job else "", int(slides[0]) if slides else 0)


def _said(caplog: pytest.LogCaptureFixture, logger: str,
          threads: set[int | None]) -> list[tuple[str, str]]:
    """What ``logger`` said at WARNING or above on ``threads`` (the test's own server's: a
    server of an earlier test in this process may still be ending, and says its own)."""
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == logger and r.levelno >= logging.WARNING and r.thread in threads]


def test_a_server_that_hangs_before_a_slide_write_and_a_lease_renewal_is_said_and_waited_out(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with cut_server() as relay:
        url = relay.url(query="connect_timeout=2")  # reconnects to the hung server: 2 s
        config = _config(tmp_path, mqtt_broker, topic_prefix, url)
        store = open_pathology_store(url, pg_schema=schema)
        backend = GatedBackend()
        server = PathologyServer(config, store, backend)
        with _serving(server, threading.Event()) as thread:
            threads = {thread.ident, server.finisher.ident}
            _submit(config, "lab/hung")
            assert wait_until(lambda: _job_state(schema, "lab/hung")[0] == "running", 60)
            # the finisher has its connection (its opening is no slide write)
            assert wait_until(lambda: hasattr(server.finisher, "store"), 60)
            relay.hang()  # the next lease renewal, then the slide's write, get no answer
            backend.flowing.set()
            assert wait_until(lambda: len(_said(caplog, "appliance.pathology.finisher", threads))
                              >= 1 and len(_said(caplog, "appliance.pathology.server", threads))
                              >= 1, 60)
            assert _job_state(schema, "lab/hung") == ("running", 0)
            relay.recover()
            assert wait_until(lambda: _job_state(schema, "lab/hung") == ("done", 1), 60)
            assert wait_until(lambda: len(_said(caplog, "appliance.pathology.server", threads))
                              >= 2, 60)
        store.close()
    server_said = _said(caplog, "appliance.pathology.server", threads)
    assert [level for level, _ in server_said] == ["ERROR", "WARNING"], server_said
    assert (f"the PostgreSQL database {url}: a read or write failed (no answer from the "
            f"server within {DEADLINE_S:g} s: the connection was cut)") in server_said[0][1]
    assert " answers again after " in server_said[1][1]
    finisher_said = _said(caplog, "appliance.pathology.finisher", threads)
    assert [level for level, _ in finisher_said] == ["ERROR", "WARNING"], finisher_said
    assert (f"storing a slide result failed (no answer from the server within {DEADLINE_S:g} "
            "s") in finisher_said[0][1]


def test_a_migration_longer_than_a_store_call_s_deadline_is_waited_for(schema: str) -> None:
    """Making the pathology tables waits for another program's migration (its lock), and
    may rebuild a large table: it is not cut at the deadline of a store call (1 s here, the
    lock held 3 s; the store is only opened, its one other call is below)."""
    jobstore.ANSWER_DEADLINE_S = 1.0  # put back by the fixture
    with psycopg.connect(PG_URL, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(7270601)")  # Store.lock_for_migration's
        letting_go = threading.Timer(3.0, other.execute, ("SELECT pg_advisory_unlock_all()",))
        letting_go.start()
        try:
            store = open_pathology_store(PG_URL, pg_schema=schema)
        finally:
            letting_go.join()
    jobstore.ANSWER_DEADLINE_S = DEADLINE_S
    assert store.job("none") is None  # the tables are there
    store.close()


def test_a_server_stopped_while_the_pathology_tables_are_made_on_a_hung_store_ends_at_once(
    schema: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    with cut_server() as relay:
        url = relay.url()
        migrate = PathologyStore.migrate_pathology

        def hung_first(store: PathologyStore, relay: CutServer = relay) -> None:
            relay.hang()
            threading.Thread(target=lambda: relay.cut.wait(30) and stop.set()).start()
            migrate(store)

        monkeypatch.setattr(PathologyStore, "migrate_pathology", hung_first)
        with pytest.raises(StoreError) as raised:
            open_pathology_store(url, pg_schema=schema, stop=stop)
    assert str(raised.value) == (f"cannot create the pathology tables in the PostgreSQL "
                                 f"database {url}: stopped before the server answered: the "
                                 "connection was cut")


@contextmanager
def _online(config: Config) -> Iterator[threading.Event]:
    """Set once the server's presence says online (it serves: its store calls have begun)."""
    online = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: m.payload and json.loads(m.payload).get(
        "state") == "online" and online.set()
    client.connect(config.mqtt.host, config.mqtt.port)
    client.subscribe(server_topic(config.mqtt.topic_prefix, config.pathology.client_id or ""), 1)
    client.loop_start()
    try:
        yield online
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_server_stopped_while_its_store_hangs_ends_at_once_and_says_no_outage(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobstore.ANSWER_DEADLINE_S = 600.0  # only the stop may end the wait (put back by the fixture)
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    with cut_server() as relay:
        url = relay.url(query=f"options=-csearch_path%3D{schema}")  # the schema, as a URL may
        config = _config(tmp_path, mqtt_broker, topic_prefix, url)
        stop, exit_code = threading.Event(), list[int]()
        thread = threading.Thread(target=lambda: exit_code.append(run_server(config, stop)),
                                  daemon=True)
        with _online(config) as online:
            thread.start()
            try:
                assert online.wait(60)
                relay.hang()
                assert relay.cut.wait(30)  # a store call of the main loop waits on the hung server
            finally:
                stop.set()
                thread.join(20)
        assert not thread.is_alive(), "the stop waited on the hung store"
    assert exit_code == [0]
    said = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == []


def test_a_job_taken_over_while_its_server_s_store_hung_is_dropped_there_once_it_answers(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store hangs for one server only (its path to PostgreSQL, or its backend, stalled):
    its leases lapse and a server with a store that answers takes its job over, as it should;
    the hung one, which waited on its renewal for ever, now learns so once its store answers
    and drops the job, which is done once."""
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    in_schema = f"options=-csearch_path%3D{schema}"
    with cut_server() as relay:
        hung = _config(tmp_path, mqtt_broker, topic_prefix,
                       relay.url(query=f"connect_timeout=2&{in_schema}"), lease_s=2.0)
        held = GatedBackend()  # the hung server never scores: only the other one may
        hung_store = open_pathology_store(hung.store.url)
        with _serving(PathologyServer(hung, hung_store, held), threading.Event()):
            _submit(hung, "lab/taken")
            assert wait_until(lambda: _job_state(schema, "lab/taken", "owner")[0] ==
                              hung.pathology.client_id, 60)
            relay.hang()
            other = _config(tmp_path, mqtt_broker, topic_prefix, f"{PG_URL}?{in_schema}",
                            lease_s=2.0)
            other_store = open_pathology_store(other.store.url)
            with _serving(PathologyServer(other, other_store), threading.Event()):
                assert wait_until(lambda: _job_state(schema, "lab/taken") == ("done", 1), 60)
            other_store.close()
            relay.recover()
            assert wait_until(lambda: any("taken over by another server" in r.getMessage()
                                          for r in caplog.records), 60)
            held.flowing.set()
        hung_store.close()
    assert _job_state(schema, "lab/taken", "takeovers") == (1, 1)
