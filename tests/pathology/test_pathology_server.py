"""``appliance pathology serve`` against the real mosquitto: shared batches, cancel, takeover
after a killed server, hostile jobs."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from appliance.backoffice.outage import StoreOutage
from appliance.backoffice.storeerrors import StoreError
from appliance.cli import main
from appliance.config import PASSWORD_ENV, Config, config_from_mapping
from appliance.edge.testing import wait_until
from appliance.pathology import preparing, requestcheck
from appliance.pathology import server as server_module
from appliance.pathology.admission import MAX_CLAIM_DELAY_S
from appliance.pathology.backends import ModelOutputs, OnnxBackend
from appliance.pathology.jobs import (
    ANY_JOB,
    FINAL_STATES,
    JOB_ID,
    JOB_ID_RULE,
    JOB_SCHEMA,
    cancel_topic,
    errors_topic,
    job_id_of_topic,
    parse_job,
    request_topic,
    server_topic,
    state_payload,
    state_topic,
)
from appliance.pathology.jobs_display import describe_state
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from appliance.pathology.server import PathologyServer
from appliance.pathology.serverlink import MAX_QOS0_WAITING
from appliance.synthetic.he import SlideSpec
from appliance.transport.broker import PrivateBroker, free_port
from tests import pathology_worker_hooks as hooks
from tests.disk_helpers import fill, small_tmpfs
from tests.gpu import needs_cuda
from tests.he_slides import painted
from tests.pathology_helpers import SteppedClock, caught_up, counting_subacks, serving, subscribed
from tests.store_helpers import PG_URL

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic biopsies and a corrupt JPEG inside a slide root."""
    root = tmp_path_factory.mktemp("slides")
    for seed, label in ((11, "MSI"), (12, "MSS")):
        spec = SlideSpec(f"b{seed}", f"P{seed}", label, "biopsy", 1, 0.5, seed=seed)
        Image.fromarray(painted(spec)).save(root / f"b{seed}.jpg", quality=88)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    return root


def _config(tmp_path: Path, prefix: str, broker: Any, slides: Path, **pathology: Any) -> Config:
    data = {"mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
            "state_dir": str(tmp_path / "state"),
            "store": {"url": f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}"},
            "pathology": {"client_id": f"test-{uuid.uuid4().hex[:12]}",  # runs side by side
                          "slide_roots": [str(slides)], "results_dir": str(tmp_path / "out"),
                          "backends": ["onnx-cpu"], "prepare_workers": 1, "lease_s": 2.0,
                          **pathology}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    return config_from_mapping(data)


class Watcher:
    """Collects every job state (and refusal) published under a prefix."""

    def __init__(self, broker: Any, prefix: str) -> None:
        self.states: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.presence: queue.Queue[dict[str, Any]] = queue.Queue()
        self.answered_on: dict[str, list[str]] = {}  # errors topic -> the job ids answered
        self.client.on_message = self._heard
        self.client.connect(broker.host, broker.port)
        counting_subacks(self.client)
        self.client.loop_start()
        errors = errors_topic(prefix, "#")  # every login's, and the servers' own
        subscribed(self.client, [(state_topic(prefix, ANY_JOB), 1), (errors, 1),
                                 (server_topic(prefix, "+"), 1)])  # nothing after it missed
        self.prefix = prefix

    def _heard(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return
        said = json.loads(message.payload)
        if "/servers/" in message.topic:
            self.presence.put(said)
            return
        if "/pathology/errors" in message.topic:
            self.answered_on.setdefault(message.topic, []).append(said["job_id"])
        self.states.put(said)

    def submit(self, payload: bytes | dict[str, Any], job_id: str | None = None) -> str:
        """Publish a request, retained, on the request topic of job_id (default: the payload's
        job id when it is a usable one, else a fresh one); returns that id."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if job_id is None:
            try:
                named = json.loads(raw)["job_id"]
            except Exception:
                named = None
            job_id = named if isinstance(named, str) and JOB_ID.match(named) else \
                f"anonymous/raw-{uuid.uuid4().hex[:10]}"
        self.client.publish(request_topic(self.prefix, job_id), raw, qos=1,
                            retain=True).wait_for_publish(5)
        return job_id

    def wait(self, job_id: str, states: set[str], timeout_s: float = 60.0,
             min_done: int = 0) -> dict[str, Any]:
        """The first state of job_id in states (with at least min_done slides done)."""
        deadline = time.monotonic() + timeout_s
        for state in self.seen:
            if state["job_id"] == job_id and state["state"] in states and \
                    state.get("slides_done", 0) >= min_done:
                return state
        while time.monotonic() < deadline:
            try:
                state = self.states.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(state)
            if state["job_id"] == job_id and state["state"] in states and \
                    state.get("slides_done", 0) >= min_done:
                return state
        raise AssertionError(f"job {job_id!r} never reached {states}; saw {self.seen[-5:]}")

    def wait_server(self, server_id: str, state: str, timeout_s: float = 30.0) -> None:
        """Wait for a server's presence message (online once subscribed; offline as its will)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                seen = self.presence.get(timeout=0.5)
            except queue.Empty:
                continue
            if (seen["server"], seen["state"]) == (server_id, state):
                return
        raise AssertionError(f"server {server_id} never said {state}")

    def wait_refusal(self, fragment: str, timeout_s: float = 20.0) -> None:
        """A refusal without a job id whose reason contains fragment."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(not s["job_id"] and fragment in s["reason"] for s in self.seen):
                return
            try:
                self.seen.append(self.states.get(timeout=0.5))
            except queue.Empty:
                continue
        raise AssertionError(f"no refusal saying {fragment!r}; saw {self.seen[-5:]}")

    def wait_cancel_answer(self, job_id: str, timeout_s: float = 20.0,
                           request: str = "cancel") -> dict[str, Any]:
        """A server's answer (errors topic) to a cancel request of job_id (``request``: to
        a job request)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for seen in self.seen:
                if seen["job_id"] == job_id and seen.get("request") == request:
                    return seen
            try:
                self.seen.append(self.states.get(timeout=0.5))
            except queue.Empty:
                continue
        raise AssertionError(f"no answer to the {request} of {job_id}; saw {self.seen[-5:]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(mqtt_broker: Any, topic_prefix: str) -> Iterator[Watcher]:
    watch = Watcher(mqtt_broker, topic_prefix)
    yield watch
    watch.close()


@dataclass
class Env:
    """One test's folder, broker, topic prefix, slides and state watcher."""

    tmp_path: Path
    broker: Any
    prefix: str
    slides: Path
    watcher: Watcher

    def config(self, **pathology: Any) -> Config:
        """A config for this test's servers, also written to config.yaml."""
        return _config(self.tmp_path, self.prefix, self.broker, self.slides, **pathology)


@pytest.fixture
def env(tmp_path: Path, mqtt_broker: Any, topic_prefix: str, slides: Path,
        watcher: Watcher) -> Env:
    return Env(tmp_path, mqtt_broker, topic_prefix, slides, watcher)


def _job(job_id: str, paths: list[Path], um_per_px: float = 1.0) -> dict[str, Any]:
    return {"schema": JOB_SCHEMA, "job_id": job_id, "submitted_at": "",
            "slides": [{"path": str(p), "um_per_px": um_per_px} for p in paths]}


class SlowBackend:
    """The real ONNX backend behind an accelerator that takes delay_s per batch."""

    def __init__(self, delay_s: float) -> None:
        self.inner = OnnxBackend(DEMO, "cpu")
        self.info, self.settings, self.delay_s = self.inner.info, self.inner.settings, delay_s

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        time.sleep(self.delay_s)
        return self.inner.infer(tiles_rgb)


class GatedBackend(SlowBackend):
    """A slow backend that scores a batch only while ``flowing`` is set."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.flowing = threading.Event()
        self.flowing.set()

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        self.flowing.wait(60)
        return super().infer(tiles_rgb)


class Servers:
    """Servers running in threads of this test; ``stop`` ends one, the fixture ends the rest."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: dict[int, tuple[threading.Thread, threading.Event, PathologyStore]] = {}

    def __call__(self, config: Config, backend: Any = None) -> PathologyServer:
        store = _store(self.tmp_path)
        server = PathologyServer(config, store, backend)
        stop = threading.Event()
        thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
        with _online(config, server) as online:
            thread.start()
            assert online.wait(60), f"server {server.server_id} never said it is online"
        self.running[id(server)] = (thread, stop, store)
        return server

    def stop(self, server: PathologyServer) -> None:
        thread, stop, store = self.running.pop(id(server))
        stop.set()
        thread.join(15)
        store.close()


@contextmanager
def _online(config: Config, server: PathologyServer) -> Iterator[threading.Event]:
    """Set once ``server`` says it is online: it subscribes to the requests before it
    publishes that on the same connection, so the broker then sends it every request."""
    online = threading.Event()

    def heard(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        said = json.loads(message.payload) if message.payload else {}
        if (said.get("process"), said.get("state")) == (server.presence.process, "online"):
            online.set()

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = heard
    counting_subacks(listener)
    listener.connect(config.mqtt.host, config.mqtt.port)
    listener.loop_start()
    try:
        subscribed(listener, server_topic(config.mqtt.topic_prefix, server.server_id))
        yield online
    finally:
        listener.disconnect()
        listener.loop_stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Servers]:
    """Start servers in threads; every one is stopped at the end."""
    servers = Servers(tmp_path)
    yield servers
    for server_id in list(servers.running):
        thread, stop, store = servers.running.pop(server_id)
        stop.set()
        thread.join(15)
        store.close()


def _store(tmp_path: Path) -> PathologyStore:
    return open_pathology_store(f"sqlite:///{tmp_path / 'state' / 'store.sqlite3'}")


def test_two_jobs_submitted_together_share_batches(
    env: Env, serve: Servers,
) -> None:
    tmp_path, slides, watcher = env.tmp_path, env.slides, env.watcher
    port = free_port()
    config = env.config(max_batch=512, max_wait_ms=3000, prepare_workers=2, metrics_port=port)
    server = serve(config)
    watcher.submit(_job("lab/job-a", [slides / "b11.jpg"]))
    watcher.submit(_job("lab/job-b", [slides / "b12.jpg"]))
    done = [watcher.wait(job, {"done", "failed"}) for job in ("lab/job-a", "lab/job-b")]
    assert [state["state"] for state in done] == ["done", "done"]
    assert server.batcher.stats.shared_batches >= 1
    row = done[0]["results"][0]
    assert row["label"] in ("MSI", "MSS")
    assert row["in_distribution_share"] >= 0.9
    assert Path(row["heatmap_path"]).is_file()
    assert Path(row["cam_path"]).is_file()
    assert done[0]["backend"]["backend"] == "onnx-cpu"
    assert set(done[0]["metrics"]) >= {"tiles_per_s", "batch_fill", "queue_depth_tiles",
                                       "accelerator_busy"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    tiles = sum(int(float(line.split()[-1])) for line in exposition.splitlines()
                if line.startswith("pathology_tiles_total"))
    assert tiles == sum(r["tile_count"] for state in done for r in state["results"]) > 0
    assert "pathology_accelerator_busy_fraction" in exposition
    store = _store(tmp_path)
    assert [r["slide_index"] for r in store.slide_results("lab/job-a")] == [0]
    assert store.job("lab/job-b")["state"] == "done"  # type: ignore[index]
    store.close()


def test_a_cleanly_stopped_server_leaves_the_share_so_new_jobs_reach_the_running_one(
    env: Env, serve: Servers,
) -> None:
    # a stopped server keeps its session (for jobs delivered but not yet stored); still
    # subscribed to the share, it would be handed new jobs, queued until it came back
    stopped = serve(env.config())
    serve.stop(stopped)
    serve(env.config())
    for index in range(3):
        env.watcher.submit(_job(f"lab/job-{index}", [env.slides / "b11.jpg"]))
    for index in range(3):
        final = env.watcher.wait(f"lab/job-{index}", {"done", "failed"}, timeout_s=30)
        assert final["state"] == "done"


def _submitted_by_the_cli(env: Env, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    """``job submit`` of one slide with this test's config file; its --config and job id."""
    cfg = ["--config", str(env.tmp_path / "config.yaml")]
    assert main(["pathology", "job", "submit", str(env.slides / "b11.jpg"), "--um-per-px", "1",
                 *cfg]) == 0
    return cfg, capsys.readouterr().out.split()[0]


def test_a_job_submitted_while_no_server_runs_waits_and_is_done_once_one_starts(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    config = env.config()
    cfg, job_id = _submitted_by_the_cli(env, capsys)
    assert main(["pathology", "job", "list", *cfg]) == 0
    listed = capsys.readouterr().out
    assert f"{job_id} waiting: no server has taken it yet" in listed
    assert "1 request(s) waiting for a server" in listed
    serve(config)
    assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=60)["state"] == "done"
    # the request is cleared after the final state goes out: once the state has expired
    # (final_state_keep_s) a request left retained would be listed as waiting again
    assert wait_until(lambda: not _retained_on(env.broker, request_topic(env.prefix, job_id)),
                      30, poll_s=0.2), "the done job's request is still retained"
    assert main(["pathology", "job", "list", *cfg]) == 0
    listed = capsys.readouterr().out
    assert f"{job_id} done 1/1 slides" in listed
    assert "waiting" not in listed


def test_a_waiting_job_is_withdrawn_by_cancel_and_never_runs(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    config = env.config()
    cfg, job_id = _submitted_by_the_cli(env, capsys)
    assert main(["pathology", "job", "cancel", job_id, *cfg]) == 0
    assert f"job {job_id} withdrawn: no server had taken it" in capsys.readouterr().out
    serve(config)
    kept = env.watcher.submit(_job("lab/kept", [env.slides / "b12.jpg"]))  # after the withdrawn one
    assert env.watcher.wait(kept, {"done", "failed"}, timeout_s=60)["state"] == "done"
    answer = env.watcher.wait_cancel_answer(job_id)  # the server cleared the cancel request
    assert answer["state"] == "unknown"
    assert all(state["job_id"] != job_id for state in env.watcher.seen if "request" not in state)
    store = _store(env.tmp_path)
    assert store.job(job_id) is None
    store.close()


def test_a_busy_server_puts_a_request_off_and_drops_it_if_withdrawn_meanwhile(
    env: Env, monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, clock, store = _queue_server(env, monkeypatch, limit=3)
    server.runs = {"lab/one": None, "lab/two": None}  # type: ignore[dict-item]  # two jobs running
    feed = server._event_job  # noqa: SLF001 - the server's events, fed by hand
    waiting = server._waiting  # noqa: SLF001 - the requests it put off
    for job_id, withdrawn in (("lab/put-off", True), ("lab/taken", False)):
        payload = json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode()
        feed(job_id, payload, 1, 0)
        assert store.job(job_id) is None  # 0.4 s later, so an idle server gets it first
        due = waiting[job_id][0]
        assert due - clock.now_s == pytest.approx(0.4)
        if withdrawn:
            feed(job_id, b"", 2, 0)  # `job cancel` cleared the request
        clock.now_s += 0.3
        server._take_waiting()  # noqa: SLF001 - the main loop's turn: not due yet
        assert store.job(job_id) is None
        clock.now_s = due
        server._take_waiting()  # noqa: SLF001 - due now
        assert (store.job(job_id) is None) == withdrawn
    assert not waiting
    store.close()


def test_a_server_at_its_limit_keeps_no_more_requests_than_it_could_take(env: Env) -> None:
    # thousands of retained requests must not all wait in its memory: it keeps as many as it
    # may run, notes that it left some, and reads them all again once it has room
    store = _store(env.tmp_path)
    server = PathologyServer(env.config(max_running_jobs=2), store)  # never connected
    server.runs = {"lab/one": None, "lab/two": None}  # type: ignore[dict-item]  # at its limit
    for index in range(50):
        job_id = f"lab/many-{index}"
        server._event_job(  # noqa: SLF001 - the server's events, fed by hand
            job_id, json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode(), index, 0)
    waiting = server._waiting  # noqa: SLF001 - what it kept
    assert list(waiting) == ["lab/many-0", "lab/many-1"]
    assert server._missed  # noqa: SLF001 - it left the others retained
    due = waiting["lab/many-0"][0]
    time.sleep(0.05)  # read again (every job end may send them all again): it keeps its turn
    server._event_job(  # noqa: SLF001 - the server's events, fed by hand
        "lab/many-0", json.dumps(_job("lab/many-0", [env.slides / "b12.jpg"])).encode(), 99, 0)
    assert waiting["lab/many-0"][0] == due
    assert b"b12.jpg" in waiting["lab/many-0"][1]  # the request as it is now
    assert all(store.job(f"lab/many-{index}") is None for index in range(50))
    store.close()


def test_a_server_at_its_limit_leaves_a_dead_server_s_job_to_one_with_room(env: Env) -> None:
    store = _store(env.tmp_path)
    server = PathologyServer(env.config(max_running_jobs=2), store)  # never connected
    settings = server.settings
    for job_id in ("lab/one", "lab/two"):
        server._take(  # noqa: SLF001 - the server's events, fed by hand
            job_id, json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode())
    orphan = parse_job(json.dumps(_job("lab/orphan", [env.slides / "b12.jpg"])).encode(),
                       [env.slides], settings.max_job_bytes, settings.max_slides_per_job)
    assert store.accept(orphan, "dead", 0.01)
    time.sleep(0.05)  # its lease ran out
    server._event_housekeeping()  # noqa: SLF001 - the main loop's turn
    assert sorted(server.runs) == ["lab/one", "lab/two"]
    assert store.job("lab/orphan")["owner"] == "dead"  # type: ignore[index]
    del server.runs["lab/one"]  # a job of its own ended
    server._event_housekeeping()  # noqa: SLF001 - the main loop's turn
    assert sorted(server.runs) == ["lab/orphan", "lab/two"]
    store.close()


def test_a_restarted_server_resumes_its_own_jobs_one_after_another(env: Env) -> None:
    config = env.config(max_running_jobs=3)
    store = _store(env.tmp_path)
    before = PathologyServer(config, store)  # its jobs stored, then it stopped
    payloads = {job_id: json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode()
                for job_id in ("lab/mine-0", "lab/mine-1")}
    for job_id, payload in payloads.items():
        before._take(job_id, payload)  # noqa: SLF001 - the server's events, fed by hand
    server = PathologyServer(config, store)  # the same client id, restarted: nothing runs
    for mid, (job_id, payload) in enumerate(payloads.items()):
        server._event_job(job_id, payload, mid, 0)  # noqa: SLF001 - the retained requests
    assert list(server.runs) == ["lab/mine-0"]  # the second is put off: it is busy
    time.sleep(0.3)
    server._take_waiting()  # noqa: SLF001 - the main loop's turn
    assert sorted(server.runs) == ["lab/mine-0", "lab/mine-1"]
    store.close()


def _queue_server(env: Env, monkeypatch: pytest.MonkeyPatch,
                  limit: int) -> tuple[PathologyServer, SteppedClock, PathologyStore]:
    """A server never connected, fed by hand, on a clock the test moves."""
    clock = SteppedClock()
    monkeypatch.setattr(server_module.time, "monotonic", clock)
    store = _store(env.tmp_path)
    return PathologyServer(env.config(max_running_jobs=limit), store), clock, store


def _request(env: Env, job_id: str) -> bytes:
    return json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode()


def test_a_server_takes_waiting_requests_oldest_first(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that came while jobs ran was put off; one that came after they ended was
    taken at once, ahead of it, and one put off for less time (fewer jobs running) was due,
    and taken, first."""
    server, clock, store = _queue_server(env, monkeypatch, limit=1)
    feed = server._event_job  # noqa: SLF001 - the server's events, fed by hand
    server.runs = {"lab/one": None}  # type: ignore[dict-item]  # at its limit
    feed("lab/older", _request(env, "lab/older"), 1, 0)
    del server.runs["lab/one"]  # that job ended: nothing runs
    feed("lab/newer", _request(env, "lab/newer"), 2, 0)
    assert list(server.runs) == []  # it queues behind the older one
    clock.now_s += 0.3
    server._take_waiting()  # noqa: SLF001 - the main loop's turn
    assert list(server.runs) == ["lab/older"]
    assert server._missed  # noqa: SLF001 - "newer" is read again once there is room
    store.close()
    server, clock, store = _queue_server(env, monkeypatch, limit=2)
    feed = server._event_job  # noqa: SLF001 - the server's events, fed by hand
    server.runs = {"lab/one": None, "lab/two": None}  # type: ignore[dict-item]  # at its limit
    feed("lab/first", _request(env, "lab/first"), 1, 0)  # tried 0.4 s later (two jobs running)
    del server.runs["lab/two"]
    clock.now_s += 0.05
    feed("lab/second", _request(env, "lab/second"), 2, 0)  # tried 0.2 s later: due before "first"
    clock.now_s += 0.25
    server._take_waiting()  # noqa: SLF001 - the main loop's turn
    assert sorted(server.runs) == ["lab/one"]  # "second" waits for "first"
    clock.now_s += 0.15
    server._take_waiting()  # noqa: SLF001 - the main loop's turn
    assert sorted(server.runs) == ["lab/first", "lab/one"]
    store.close()


def test_a_request_after_some_were_left_out_waits_for_them(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At its limit a server keeps as many requests as it may run and leaves the rest for the
    next read; one that came later was kept as soon as there was space, ahead of them."""
    server, clock, store = _queue_server(env, monkeypatch, limit=1)
    feed = server._event_job  # noqa: SLF001 - the server's events, fed by hand
    server.runs = {"lab/one": None}  # type: ignore[dict-item]  # at its limit
    feed("lab/kept", _request(env, "lab/kept"), 1, 0)
    feed("lab/left", _request(env, "lab/left"), 2, 0)  # left for the next read
    del server.runs["lab/one"]
    clock.now_s += 0.3
    server._take_waiting()  # noqa: SLF001 - the main loop's turn
    assert list(server.runs) == ["lab/kept"]
    feed("lab/later", _request(env, "lab/later"), 3, 0)
    assert "lab/later" not in server._waiting  # noqa: SLF001 - it queues behind "left"
    del server.runs["lab/kept"]
    server.connected.set()
    clock.now_s += 0.5
    server._take_waiting()  # noqa: SLF001 - with room, it subscribes again: all are read again
    assert not server._missed  # noqa: SLF001
    for mid, job_id in enumerate(("lab/left", "lab/later")):  # what the broker sends again ("kept"
        # ended, its request cleared), in the order they were first published
        feed(job_id, _request(env, job_id), mid, 0)
    assert list(server.runs) == ["lab/left"]
    store.close()


class PeakRuns:
    """The most jobs a server ran at once, sampled every 10 ms in a thread of this test."""

    def __init__(self, server: PathologyServer) -> None:
        self.server, self.peak, self.stop = server, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, len(self.server.runs))

    def close(self) -> int:
        """Stop sampling; the peak."""
        self.stop.set()
        self.thread.join(5)
        return self.peak


def _handled_before(watcher: Watcher) -> None:
    """Wait until the server has handled what the broker sent it before now, and ended that
    turn of its main loop (which ends by trying the requests it put off): two requests sent
    after it, on topics naming no job id, are refused, one a turn, in the order they came."""
    names = [f"lab/marker:{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for name in names:
        watcher.submit(b"{}", job_id=name)
    watcher.wait_refusal(f"naming {names[-1]!r}")


def _past_every_put_off(watcher: Watcher) -> None:
    """Wait until a busy server has read every request sent so far and, their put-off time
    (at most MAX_CLAIM_DELAY_S) up, has had its turn to take them."""
    _handled_before(watcher)
    time.sleep(MAX_CLAIM_DELAY_S)  # at least: load on the machine only lengthens it
    _handled_before(watcher)


def test_a_server_at_its_limit_leaves_requests_to_a_server_started_later(
    env: Env, serve: Servers,
) -> None:
    slow = {"max_running_jobs": 1, "max_batch": 8, "max_wait_ms": 0}
    first = serve(env.config(**slow), SlowBackend(delay_s=0.15))
    peak = PeakRuns(first)
    two = [env.slides / "b11.jpg", env.slides / "b12.jpg"]
    jobs = [env.watcher.submit(_job(f"lab/spread-{index}", two)) for index in range(6)]
    env.watcher.wait(jobs[0], {"running"}, min_done=0)
    _past_every_put_off(env.watcher)
    store = _store(env.tmp_path)
    assert store.job(jobs[0])["state"] == "running"  # type: ignore[index]
    assert [job_id for job_id in jobs if store.job(job_id)] == [jobs[0]]  # the rest wait
    second = serve(env.config(**slow), SlowBackend(delay_s=0.15))
    for job_id in jobs:
        assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=90)["state"] == "done"
    owners = [store.job(job_id)["owner"] for job_id in jobs]  # type: ignore[index]
    store.close()
    time.sleep(1.0)  # a second run would publish a second final state
    while not env.watcher.states.empty():
        env.watcher.seen.append(env.watcher.states.get())
    finals = [state["job_id"] for state in env.watcher.seen if state["state"] == "done"]
    assert sorted(finals) == jobs  # each job ran once
    assert peak.close() == 1
    assert owners.count(first.server_id) >= 2  # it took more as its jobs ended
    assert owners.count(second.server_id) >= 2, owners


def test_a_request_withdrawn_while_a_server_at_its_limit_left_it_never_runs(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    config = env.config(max_running_jobs=1, max_batch=8, max_wait_ms=0)
    server = serve(config, SlowBackend(delay_s=0.15))
    busy = env.watcher.submit(_job("lab/busy", [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
    env.watcher.wait(busy, {"running"})
    cfg, job_id = _submitted_by_the_cli(env, capsys)
    _past_every_put_off(env.watcher)
    assert list(server._waiting) == [job_id]  # noqa: SLF001 - kept for when it has room
    assert main(["pathology", "job", "cancel", job_id, *cfg]) == 0
    assert f"job {job_id} withdrawn: no server had taken it" in capsys.readouterr().out
    assert env.watcher.wait(busy, {"done", "failed"}, timeout_s=60)["state"] == "done"
    kept = env.watcher.submit(_job("lab/kept", [env.slides / "b12.jpg"]))  # room again
    assert env.watcher.wait(kept, {"done", "failed"}, timeout_s=60)["state"] == "done"
    store = _store(env.tmp_path)
    assert store.job(job_id) is None
    store.close()
    assert all(state["job_id"] != job_id for state in env.watcher.seen if "request" not in state)


def test_a_server_at_its_limit_takes_the_next_request_as_a_job_ends_without_a_rescan(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "RESCAN_S", 3600.0)
    server = serve(env.config(max_running_jobs=2))
    peak = PeakRuns(server)
    jobs = [env.watcher.submit(_job(f"lab/next-{index}", [env.slides / "b11.jpg"]))
            for index in range(7)]
    for job_id in jobs:  # one left out waited for the next rescan, an hour away
        assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=60)["state"] == "done"
    assert peak.close() <= 2
    time.sleep(0.5)
    assert not server._waiting  # noqa: SLF001 - nothing left behind
    store = _store(env.tmp_path)
    assert {store.job(job_id)["owner"] for job_id in jobs} == {  # type: ignore[index]
        server.server_id}
    store.close()


def test_a_full_results_disk_stores_the_scores_without_pictures_and_ends_the_job(
    env: Env, serve: Servers,
) -> None:
    with small_tmpfs(env.tmp_path / "disk", size="64k") as disk:
        filler = fill(disk)
        serve(env.config(results_dir=str(disk)))
        job_id = env.watcher.submit(_job("lab/full", [env.slides / "b11.jpg"]))
        final = env.watcher.wait(job_id, {"done", "failed"}, timeout_s=60)
        filler.unlink()
    assert final["state"] == "done"
    (row,) = final["results"]
    assert row["label"] in ("MSI", "MSS")
    assert (row["heatmap_path"], row["cam_path"], row["tiles_path"]) == ("", "", "")
    (line,) = describe_state(final).splitlines()[1:]  # as `job submit --wait` says it
    assert line.endswith("; heatmap, CAMs and tile table not written (the server's log says "
                         "why)"), line


def test_a_slide_result_the_store_refuses_fails_its_slide_and_the_job_still_ends(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slide's error naming a file whose name is not UTF-8 (a surrogate, as Python reads
    it) is text no store takes: the finisher dropped the slide with a line in the log and the
    job stayed running for ever. Now the slide is stored as failed saying why, its text
    escaped, the job's other slide is scored, and the job ends."""
    serve(env.config())
    with monkeypatch.context() as patch:
        patch.setattr(preparing, "prepare_for_model", hooks.prepare_or_name_an_undecodable_file)
        env.watcher.submit(_job("lab/odd-name", [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
        final = env.watcher.wait("lab/odd-name", {"done", "failed", "cancelled"}, timeout_s=60)
    assert final["state"] == "done", final
    errors = {row["slide_index"]: row["error"] for row in final["results"]}
    assert errors[0].startswith(f"{env.slides / 'b11.jpg'}: its result could not be stored "
                                "(UnicodeEncodeError: 'utf-8' codec can't encode character "
                                "'\\udcff' in position "), errors
    assert errors[1] == "", errors


def test_a_request_rewritten_while_its_job_runs_does_not_change_the_job(
    env: Env, caplog: pytest.LogCaptureFixture,
) -> None:
    """Resumed from the stored request, and the rewritten one refused naming the id."""
    store = _store(env.tmp_path)
    server = PathologyServer(env.config(), store)  # never connected: events are fed by hand
    feed = server._event_job  # noqa: SLF001 - the server's events, fed by hand
    first = json.dumps(_job("lab/rewritten", [env.slides / "b11.jpg"] * 3)).encode()
    feed("lab/rewritten", first, 1, 0)
    assert len(server.runs["lab/rewritten"].request.slides) == 3
    server.runs.clear()  # as after a restart: the job is stored, ours, and runs nowhere
    second = json.dumps(_job("lab/rewritten", [env.slides / "b12.jpg"])).encode()
    feed("lab/rewritten", second, 2, 0)
    resumed = server.runs["lab/rewritten"].request
    assert [Path(slide.path).name for slide in resumed.slides] == ["b11.jpg"] * 3  # the stored
    store.close()
    assert "request refused: job id lab/rewritten is taken: a job under it is running with other " \
        "slides" in caplog.text


def test_a_store_error_a_retry_cannot_fix_is_said_once_and_the_message_dropped(
    env: Env, caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that refuses an event's write for its values (a constraint it breaks) refuses
    it each time: the server took every store error for an outage and tried the event again
    each second, for ever, saying the store was out. Now it is said once, with the error, and
    the message dropped, as for any fault of its own; an outage is still retried."""
    store = _store(env.tmp_path)
    server = PathologyServer(env.config(), store)  # never connected: events are fed by hand
    refusals = iter([sqlite3.IntegrityError("CHECK constraint failed: cancel_requested"),
                     sqlite3.OperationalError("database is locked")])

    def refused(job_id: str) -> bool:
        raise next(refusals)

    store.request_cancel = refused  # type: ignore[method-assign]
    server._handle("cancel", ("lab/refused-cancel", 7, 1, True))  # noqa: SLF001 - fed by hand
    assert server._retry == []  # noqa: SLF001 - nothing kept to try again
    server._handle("cancel", ("lab/locked-cancel", 8, 1, True))  # noqa: SLF001 - fed by hand
    assert [kind for _, kind, _ in server._retry] == ["cancel"]  # noqa: SLF001 - the outage's
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "appliance.pathology.server"]
    assert said[0] == ("ERROR", "could not handle cancel; dropped"), said
    assert "CHECK constraint failed" in caplog.records[0].exc_text  # type: ignore[operator]
    assert [level for level, _ in said] == ["ERROR", "ERROR"], said
    assert "a read or write failed (database is locked" in said[1][1]
    store.close()


def test_a_slide_the_finisher_could_not_store_even_as_failed_fails_its_run_only(
    env: Env,
) -> None:
    """The finisher says that a slide of a run could not be stored, not even as failed
    (``unstored``): that run's job cannot complete, so it ends failed with the reason once
    the finisher has dropped the run; a late word about an earlier run of the job ends
    nothing."""
    store = _store(env.tmp_path)
    server = PathologyServer(env.config(), store)  # never connected: events are fed by hand
    server.finisher = SimpleNamespace(inbox=queue.Queue())  # type: ignore[assignment]
    server._event_job("lab/unstored", json.dumps(  # noqa: SLF001 - the server's events, by hand
        _job("lab/unstored", [env.slides / "b11.jpg"])).encode(), 1, 0)
    run_id = server.runs["lab/unstored"].run_id
    server._handle("unstored", ("lab/unstored", run_id - 1, "an earlier run"))  # noqa: SLF001
    assert server.runs["lab/unstored"].ending is None
    server._handle("unstored", ("lab/unstored", run_id,  # noqa: SLF001
                                "slide 0 (b11) could not be stored"))
    assert server.finisher.inbox.get_nowait() == ("drop", ("lab/unstored", run_id))
    server._handle("dropped", ("lab/unstored", run_id))  # noqa: SLF001 - the finisher's answer
    job = store.job("lab/unstored")
    store.close()
    assert "lab/unstored" not in server.runs
    assert (job["state"], job["reason"]) == (  # type: ignore[index]
        "failed", "slide 0 (b11) could not be stored")


def test_a_request_the_broker_dropped_comes_in_a_later_round(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a broker drops what exceeds a client's queue (mosquitto's max_queued_messages): here
    # the first delivery of every request is lost on the way in, as such a drop would lose it
    monkeypatch.setattr(server_module, "RESCAN_S", 1.0)
    delivered = PathologyServer._on_message  # noqa: SLF001 - paho's callback, wrapped
    seen: set[str] = set()

    def lossy(self: PathologyServer, client: Any, userdata: Any, message: Any) -> None:
        if message.topic.endswith("/request") and message.topic not in seen:
            seen.add(message.topic)
            return
        delivered(self, client, userdata, message)

    monkeypatch.setattr(PathologyServer, "_on_message", lossy)
    jobs = [env.watcher.submit(_job(f"lab/dropped-{index}", [env.slides / "b11.jpg"]))
            for index in range(3)]
    serve(env.config())
    for job_id in jobs:
        assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=60)["state"] == "done"


def test_a_request_the_server_fails_on_is_refused_cleared_and_the_server_goes_on(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = requestcheck.parse_job

    def failing(payload: bytes, *args: Any) -> Any:
        if b'"lab/bug"' in payload:
            raise RuntimeError("a bug met by one request")
        return checked(payload, *args)

    monkeypatch.setattr(requestcheck, "parse_job", failing)
    serve(env.config())
    env.watcher.submit(_job("lab/bug", [env.slides / "b11.jpg"]))
    reason = env.watcher.wait("lab/bug", {"failed"}, timeout_s=30)["reason"]
    assert "could not handle this request (RuntimeError)" in reason
    good = env.watcher.submit(_job("lab/after", [env.slides / "b12.jpg"]))
    assert env.watcher.wait(good, {"done", "failed"}, timeout_s=60)["state"] == "done"
    listener, heard = _listen(env.broker, [request_topic(env.prefix, "lab/bug")])
    listener.disconnect()
    listener.loop_stop()
    assert heard == []  # cleared: no restart meets it again


def _unreadable_slide(tmp_path: Path) -> tuple[Path, Path]:
    """A slide root and a file in it this process may not read (a slide copied with the wrong
    owner): mode 000 when not root; as root, a write-only kernel attribute (open says EACCES)."""
    if os.geteuid() != 0:
        root = tmp_path / "locked"
        root.mkdir()
        path = root / "locked.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
        path.chmod(0)
        return root, path
    path = Path("/sys/bus/pci/rescan")
    if not path.is_file():
        pytest.skip("no write-only file to stand for an unreadable slide")
    return path.parent, path


def test_a_slide_the_server_may_not_read_fails_alone_and_the_server_goes_on(
    env: Env, serve: Servers,
) -> None:
    root, locked = _unreadable_slide(env.tmp_path)
    serve(env.config(slide_roots=[str(env.slides), str(root)]))
    env.watcher.submit(_job("lab/locked", [locked, env.slides / "b12.jpg"]))
    state = env.watcher.wait("lab/locked", {"done", "failed"}, timeout_s=60)
    assert state["state"] == "done", state
    errors = {row["slide"]: row["error"] for row in state["results"]}
    assert "cannot be read" in errors[locked.stem], errors
    assert errors["b12"] == ""
    after = env.watcher.submit(_job("lab/after-locked", [env.slides / "b11.jpg"]))
    assert env.watcher.wait(after, {"done", "failed"}, timeout_s=60)["state"] == "done"


@pytest.mark.parametrize("moment", [
    # a process pool whose workers share one result pipe waited for the rest of the slide
    # for ever: the job stayed "running" at 0 slides (seen under load, 0.3 s after a kill)
    "killed while it hands back a slide",
    # the process pool noticed this one, but said only that "a process in the process pool
    # was terminated abruptly"
    "killed while it prepares a slide",
])
def test_a_killed_preparation_worker_fails_its_slide_only_and_the_server_goes_on(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch, moment: str,
) -> None:
    """A worker the kernel kills (out of memory on a huge slide), at any moment of its slide:
    that slide fails saying so, the job's other slides are scored, later jobs run."""
    hook = {"killed while it hands back a slide": hooks.prepare_then_die_while_answering,
            "killed while it prepares a slide": hooks.prepare_or_die}[moment]
    serve(env.config(prepare_workers=2))
    with monkeypatch.context() as patch:
        patch.setattr(preparing, "prepare_for_model", hook)  # slide 0's worker dies
        env.watcher.submit(_job("lab/killed", [env.slides / "b11.jpg", env.slides / "b12.jpg"] * 2))
        final = env.watcher.wait("lab/killed", {"done", "failed", "cancelled"}, timeout_s=60)
    assert final["state"] == "done", final
    errors = {row["slide_index"]: row["error"] for row in final["results"]}
    assert re.fullmatch(r".*b11.jpg: could not be prepared \(tried twice: the preparation "
                        r"worker \(pid \d+\) died: killed by SIGKILL; then the preparation "
                        r"worker \(pid \d+\) died: killed by SIGKILL\)", errors[0]), errors
    assert [errors[index] for index in (1, 2, 3)] == ["", "", ""], errors
    after = env.watcher.submit(_job("lab/after-killed", [env.slides / "b11.jpg"]))
    assert env.watcher.wait(after, {"done", "failed"}, timeout_s=60)["state"] == "done"


def test_a_slide_whose_preparation_worker_is_killed_once_is_scored_by_a_new_worker(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel may kill a worker for another worker's memory: on main its slide failed for
    good; now it is prepared once more in a new worker and scored."""
    serve(env.config(prepare_workers=1))
    job_id = f"lab/killed-once-{uuid.uuid4().hex[:8]}"  # names the hook's marker file
    marker = Path(tempfile.gettempdir()) / f"pathology-hook-{job_id.replace('/', '-')}"
    try:
        with monkeypatch.context() as patch:
            patch.setattr(preparing, "prepare_for_model", hooks.prepare_or_die_once)
            env.watcher.submit(_job(job_id, [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
            final = env.watcher.wait(job_id, {"done", "failed", "cancelled"}, timeout_s=60)
        assert marker.exists()  # its first worker was there, and was killed
    finally:
        marker.unlink(missing_ok=True)
    assert final["state"] == "done", final
    assert [row["error"] for row in final["results"]] == ["", ""], final
    assert final["slides_failed"] == 0


def test_a_slide_whose_preparation_runs_past_the_limit_fails_and_the_job_goes_on(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slide slow to decode within every bound on its file held its worker as long as it
    took (a codec's own loop); past pathology.prepare_timeout_s it now fails naming the
    limit, its worker is ended, and the next slides are scored by a new one."""
    # the limit leaves the next slide's preparation in a new worker room on a loaded host (at
    # 2 s it failed there once, under load 17-20 on 2 vCPUs); slide 0 runs for 120 s
    serve(env.config(prepare_workers=1, prepare_timeout_s=10))
    with monkeypatch.context() as patch:
        patch.setattr(preparing, "prepare_for_model", hooks.prepare_slowly)  # slide 0: 120 s
        env.watcher.submit(_job("lab/slow", [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
        final = env.watcher.wait("lab/slow", {"done", "failed", "cancelled"}, timeout_s=60)
    assert final["state"] == "done", final
    errors = {row["slide_index"]: row["error"] for row in final["results"]}
    found = re.fullmatch(r".*b11.jpg: could not be prepared \(its preparation ran past its "
                         r"time limit of 10 s; its worker \(pid (\d+)\) was ended, a new one "
                         r"takes the next slide; the limit is pathology.prepare_timeout_s\)",
                         errors[0])
    assert found, errors
    assert errors[1] == "", errors
    ended = int(found.group(1))
    assert wait_until(lambda: not _running(ended), 30, poll_s=0.05), f"worker {ended} runs on"


class NanBackend(SlowBackend):
    """The real ONNX backend whose first tiles of each batch come back NaN (what a
    half-precision backend gives where its activations overflow)."""

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        outputs = super().infer(tiles_rgb)
        probability = outputs.probability.copy()
        probability[:2] = np.nan
        return ModelOutputs(probability, outputs.cam, outputs.features)


def test_tiles_the_model_answers_with_nan_fail_their_slide_instead_of_labelling_it(
    env: Env, serve: Servers,
) -> None:
    """A NaN tile made the slide's mean NaN, stored as no score and read as below the
    threshold: the job ended done, each slide labelled MSS. Now each such slide fails, naming
    its file and the tiles, with no label and no pictures; the job fails as none scored."""
    serve(env.config(), NanBackend(delay_s=0.0))
    paths = [env.slides / "b11.jpg", env.slides / "b12.jpg"]
    env.watcher.submit(_job("lab/nan-tiles", paths))
    state = env.watcher.wait("lab/nan-tiles", {"done", "failed"})
    assert state["state"] == "failed"
    assert state["slides_failed"] == 2
    store = _store(env.tmp_path)
    rows = store.slide_results("lab/nan-tiles")
    store.close()
    assert [row["label"] for row in rows] == ["", ""]
    for row, path in zip(rows, paths, strict=True):
        assert row["error"].startswith(f"{path}: the model answered ")
        assert "with no probability (NaN, infinite or outside 0-1)" in row["error"]
        assert row["heatmap_path"] == ""
    assert not (env.tmp_path / "out" / "lab" / "nan-tiles" / "heatmaps").exists()


class NanCamBackend(SlowBackend):
    """The real ONNX backend whose CAMs come back NaN on every tile: a model finite on the
    blank tiles it is checked with as it loads, and not on tissue."""

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        outputs = super().infer(tiles_rgb)
        assert outputs.cam is not None
        return ModelOutputs(outputs.probability, np.full_like(outputs.cam, np.nan),
                            outputs.features)


def test_cams_the_model_answers_not_finite_are_not_drawn_and_the_slide_keeps_its_score(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture,
) -> None:
    """On main such CAMs were drawn as they came, with a NumPy warning on stderr and no word
    in the result; now no CAM panel is drawn, the heatmap is, and the log says why."""
    serve(env.config(), NanCamBackend(delay_s=0.0))
    with caplog.at_level(logging.WARNING, logger="appliance.pathology.finisher"):
        env.watcher.submit(_job("lab/nan-cams", [env.slides / "b11.jpg"]))
        final = env.watcher.wait("lab/nan-cams", {"done", "failed"}, timeout_s=60)
    assert final["state"] == "done", final
    (row,) = final["results"]
    assert (row["error"], row["label"] in ("MSI", "MSS")) == ("", True), row
    assert np.isfinite(row["score"]), row
    assert row["cam_path"] == "", row
    assert Path(row["heatmap_path"]).is_file(), row
    assert re.search(r"slide 0 of job lab/nan-cams: the model answered \d+ tiles' CAMs that "
                     r"are not finite \(NaN or infinite\); those are not drawn", caplog.text)


class _HungShare:
    """A slide folder whose stat and lstat calls wait while it is hung, as the kernel holds
    them on a network share that stopped answering (tests/hung_share.py blocks stat and
    listings; resolving a path goes through lstat)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.answering = os.fsdecode(folder), threading.Event()
        self.answering.set()
        for name in ("stat", "lstat"):
            monkeypatch.setattr(os, name, self._blocking(getattr(os, name)))

    def _blocking(self, call: Any) -> Any:
        def blocked(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, str | bytes | os.PathLike) and \
                    os.fsdecode(path).startswith(self.folder):
                self.answering.wait(60)
            return call(path, *args, **kwargs)
        return blocked


def test_a_request_on_a_share_that_stopped_answering_is_refused_and_other_jobs_run(
    env: Env, serve: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checking a request resolves its slide paths on the server's main loop; one on a share
    that stopped answering held that loop, so no other job was taken, prepared or finished
    (and no lease renewed) until the share answered. The check runs apart now: the request is
    refused after the time limit, saying why, and a job elsewhere is done meanwhile."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "s1.jpg").write_bytes((env.slides / "b11.jpg").read_bytes())
    server = serve(env.config(slide_roots=[str(env.slides), str(share)]))
    server.request_checks.limit_s = 1.0
    hung = _HungShare(share, monkeypatch)
    hung.answering.clear()
    try:
        env.watcher.submit(_job("lab/on-the-share", [share / "s1.jpg"]))
        reason = env.watcher.wait("lab/on-the-share", {"failed"}, 30)["reason"]
        assert "its slide paths could not be looked at within 1 s" in reason
        env.watcher.submit(_job("lab/elsewhere", [env.slides / "b12.jpg"]))
        assert env.watcher.wait("lab/elsewhere", {"done", "failed"}, 60)["state"] == "done"
    finally:
        hung.answering.set()


def test_an_ended_job_s_request_cleared_soon_after_it_is_read_is_not_answered_again(
    env: Env, serve: Servers,
) -> None:
    """Every server reads every request, and one that reads it in the moment between the
    job's server storing its end and clearing the request finds the job ended: it published
    the stored end again at once, a second final state naming a server that did not run it
    (a fresh-clone run met 'both-1' ended twice). It now waits ENDED_GRACE_S for the clear;
    a request sent again and left retained is still answered from the store."""
    serve(env.config())
    request = _job("lab/ended-once", [env.slides / "b12.jpg"])
    env.watcher.submit(request)
    assert env.watcher.wait("lab/ended-once", {"done", "failed"})["state"] == "done"
    topic = request_topic(env.prefix, "lab/ended-once")
    assert wait_until(lambda: not _retained_on(env.broker, topic), 30)
    env.watcher.seen.clear()
    env.watcher.submit(request)  # read while its server is about to clear it ...
    _publish_retained(env.broker, topic, b"")  # ... as it does right after
    env.watcher.submit(request)  # sent again and left: answered once the grace has passed
    assert env.watcher.wait("lab/ended-once", {"done"}, timeout_s=30)["state"] == "done"
    assert wait_until(lambda: not _retained_on(env.broker, topic), 30)
    while not env.watcher.states.empty():
        env.watcher.seen.append(env.watcher.states.get())
    assert [state["state"] for state in env.watcher.seen
            if state["job_id"] == "lab/ended-once"] == ["done"]


def test_every_server_reads_every_request_and_each_job_runs_once(
    env: Env, serve: Servers,
) -> None:
    first, second = serve(env.config()), serve(env.config())
    jobs = [env.watcher.submit(_job(f"lab/both-{index}", [env.slides / "b12.jpg"]))
            for index in range(4)]
    for job_id in jobs:
        assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=90)["state"] == "done"
    time.sleep(1.0)  # a second run would publish a second final state
    while not env.watcher.states.empty():
        env.watcher.seen.append(env.watcher.states.get())
    finals = [state for state in env.watcher.seen if state["state"] in ("done", "failed")]
    assert sorted(state["job_id"] for state in finals) == jobs
    store = _store(env.tmp_path)
    owners = {job_id: store.job(job_id)["owner"] for job_id in jobs}  # type: ignore[index]
    assert len(store.slide_results(jobs[0])) == 1
    store.close()
    assert set(owners.values()) <= {first.server_id, second.server_id}


@needs_cuda
def test_a_job_on_torch_cuda_scores_slides_as_onnx_cpu_does(env: Env, serve: Servers) -> None:
    slides, watcher = env.slides, env.watcher
    states = {}
    for backend in ("onnx-cpu", "torch-cuda"):
        server = serve(env.config(backends=[backend], max_batch=512, prepare_workers=2))
        watcher.submit(_job(f"lab/job-{backend}", [slides / "b11.jpg", slides / "b12.jpg"]))
        states[backend] = watcher.wait(f"lab/job-{backend}", {"done", "failed"}, timeout_s=120)
        serve.stop(server)
    cpu, gpu = states["onnx-cpu"], states["torch-cuda"]
    assert (cpu["state"], gpu["state"]) == ("done", "done")
    assert gpu["backend"]["backend"] == "torch-cuda"
    assert gpu["backend"]["device_name"] not in ("", "cpu")
    for ours, theirs in zip(gpu["results"], cpu["results"], strict=True):
        assert ours["tile_count"] == theirs["tile_count"] > 0
        assert ours["label"] == theirs["label"]
        assert abs(ours["score"] - theirs["score"]) <= 0.02
        assert abs(ours["in_distribution_share"] - theirs["in_distribution_share"]) <= 0.05
        assert Path(ours["heatmap_path"]).is_file()


def test_cancelled_job_stops_midway_and_frees_its_tiles(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp_path, slides, watcher = env.tmp_path, env.slides, env.watcher
    config = env.config(max_batch=8, max_wait_ms=0,
                     max_pending_tiles=64)
    backend = GatedBackend(delay_s=0.15)
    note_stored = PathologyServer._stored  # noqa: SLF001 - the finisher's "slide stored" callback

    def stored_then_hold_the_model(server: PathologyServer, *slide: Any) -> None:
        backend.flowing.clear()  # tiles now wait for the model, however loaded the machine is
        note_stored(server, *slide)

    monkeypatch.setattr(PathologyServer, "_stored", stored_then_hold_the_model)
    server = serve(config, backend)
    watcher.submit(_job("anonymous/long", [slides / "b11.jpg", slides / "b12.jpg"] * 4))
    watcher.wait("anonymous/long", {"running"}, min_done=1)
    # the next slide is prepared
    wait_until(lambda: server.batcher.pending_for("anonymous/long") > 0, 60)
    assert main(["pathology", "job", "cancel", "long", "--config",
                 str(tmp_path / "config.yaml")]) == 0
    final = watcher.wait("anonymous/long", {"done", "cancelled", "failed"})
    backend.flowing.set()
    assert final["state"] == "cancelled"
    assert server.batcher.pending_for("anonymous/long") == 0
    assert server.batcher.stats.dropped_tiles > 0
    store = _store(tmp_path)
    stored = len(store.slide_results("anonymous/long"))
    assert 1 <= stored < 8
    time.sleep(1.0)
    assert len(store.slide_results("anonymous/long")) == stored  # nothing more is written
    assert store.job("anonymous/long")["state"] == "cancelled"  # type: ignore[index]
    store.close()
    # back-pressure: preparation paused while the slow model worked through the queue
    assert server.batcher.stats.peak_pending_tiles < 64 + 200


class HeldSlideWrites(PathologyStore):
    """The finisher's store: each slide result waits until ``release`` is set, then notes the
    job's stored state just before it is written."""

    def __init__(self, url: str, release: threading.Event) -> None:
        super().__init__(url)
        self.release = release
        self.writing = threading.Event()
        self.states_when_written: list[str] = []

    def store_slide(self, row: dict[str, Any]) -> bool:
        self.writing.set()
        self.release.wait(60)
        job = self.job(row["job_id"])
        self.states_when_written.append(job["state"] if job else "unknown")
        return super().store_slide(row)


def test_a_slide_finishing_while_its_job_is_cancelled_is_stored_before_the_cancel(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load a slide result was stored after its job was stored and published cancelled:
    the finisher was writing it while the server carried out the cancel. Here the write is held
    until the server has handled the cancel request; it must still land before the cancelled
    state, and be among the cancelled job's published results."""
    cancel_handled = threading.Event()
    finisher_store = HeldSlideWrites(f"sqlite:///{env.tmp_path / 'state' / 'store.sqlite3'}",
                                     cancel_handled)
    handle_cancel = PathologyServer._cancel  # noqa: SLF001 - the cancel request's handler

    def cancel_then_release(server: PathologyServer, run: Any) -> None:
        handle_cancel(server, run)
        cancel_handled.set()

    monkeypatch.setattr(PathologyServer, "_cancel", cancel_then_release)
    monkeypatch.setattr(PathologyServer, "store_for_thread", lambda server: finisher_store)
    serve(env.config())
    env.watcher.submit(_job("anonymous/held",
                            [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
    assert finisher_store.writing.wait(60)
    assert main(["pathology", "job", "cancel", "held", "--config",
                 str(env.tmp_path / "config.yaml")]) == 0
    final = env.watcher.wait("anonymous/held", {"done", "cancelled", "failed"})
    assert final["state"] == "cancelled"
    assert finisher_store.states_when_written  # the held slide was written
    assert set(finisher_store.states_when_written) == {"running"}  # none after the cancel
    store = _store(env.tmp_path)
    stored = [row["slide_index"] for row in store.slide_results("anonymous/held")]
    store.close()
    assert stored == [row["slide_index"] for row in final["results"]]
    assert final["slides_done"] == len(stored)


class _Said(logging.Handler):
    """Sets ``event`` once a record saying ``words`` is logged."""

    def __init__(self, words: str, event: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.words, self.event = words, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


def _threads_of(server: PathologyServer) -> list[str]:
    """The names of the live threads of ``server`` (each names its server id)."""
    return sorted(t.name for t in threading.enumerate() if server.server_id in t.name)


def test_a_stopped_server_waits_for_the_slide_in_hand_and_leaves_no_thread_running(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's stop did not wait for its slide finisher (one was still alive after a
    takeover test): systemd then kills a finisher mid-write, and a test's next server shares
    the store with it. Here the finisher's write is held until the stopping server says it
    waits for its threads: the slide is stored before run() returns, and then no thread of
    the server is alive."""
    release = threading.Event()
    finisher_store = HeldSlideWrites(f"sqlite:///{env.tmp_path / 'state' / 'store.sqlite3'}",
                                     release)
    monkeypatch.setattr(PathologyServer, "store_for_thread", lambda server: finisher_store)
    config = env.config(metrics_port=free_port())
    store = _store(env.tmp_path)
    server, stop = PathologyServer(config, store), threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    server_log = logging.getLogger(server_module.__name__)
    said = _Said("waiting for the slide finisher", release)
    try:
        with _online(config, server) as online:
            thread.start()
            assert online.wait(60), f"server {server.server_id} never said it is online"
        env.watcher.submit(_job("lab/held", [env.slides / "b11.jpg"]))
        assert finisher_store.writing.wait(60)
        sid = server.server_id
        running = _threads_of(server)
        assert {f"SlideFinisher {sid}", f"InferenceRunner {sid}", f"metrics-http {sid}",
                f"paho-mqtt-client-{sid}"} <= set(running)
        assert any(name.startswith(f"SlidePreparation {sid}") for name in running)
        server_log.addHandler(said)
        with caplog.at_level(logging.DEBUG, logger=server_module.__name__):
            stop.set()
            thread.join(60)
        assert not thread.is_alive()
        assert _threads_of(server) == []
        assert finisher_store.states_when_written == ["running"]  # written before run() ended
        assert [row["slide_index"] for row in store.slide_results("lab/held")] == [0]
    finally:
        server_log.removeHandler(said)
        release.set()
        stop.set()
        thread.join(60)
        finisher_store.close()
        store.close()


class BrokenBackend(SlowBackend):
    """An accelerator that fails on every batch."""

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        raise RuntimeError("accelerator lost")


def test_a_batch_the_model_fails_on_fails_its_job_and_the_server_goes_on(
    env: Env, serve: Servers,
) -> None:
    """The job ends failed (stored and published) once the finisher has dropped it, as a
    cancelled one does, and the server stays up for the next job."""
    serve(env.config(), BrokenBackend(delay_s=0))
    for job_id in ("lab/broken-1", "lab/broken-2"):
        env.watcher.submit(_job(job_id, [env.slides / "b11.jpg"]))
        final = env.watcher.wait(job_id, {"done", "cancelled", "failed"})
        assert final["state"] == "failed"
        assert final["reason"] == "model failed on a batch: accelerator lost"
        assert final["results"] == []
        store = _store(env.tmp_path)
        assert store.job(job_id)["state"] == "failed"  # type: ignore[index]
        store.close()


class BackendLostNaming(SlowBackend):
    """A backend whose every batch fails with an error naming ``what``."""

    def __init__(self, what: str) -> None:
        super().__init__(delay_s=0)
        self.what = what

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        raise RuntimeError(f"accelerator lost at {self.what}")


@pytest.mark.parametrize("backend", [
    # a device file whose name is not UTF-8: no driver encodes the text (UnicodeEncodeError),
    # the server dropped the job's end with a line in the log, and the job ran for ever
    "sqlite",
    # PostgreSQL's text refuses NUL (DataError): taken for an outage, the job's end was tried
    # again each second for ever
    pytest.param("postgres", marks=pytest.mark.postgres),
])
def test_a_model_error_no_store_takes_as_it_is_still_fails_the_job_saying_it(
    env: Env, backend: str, caplog: pytest.LogCaptureFixture,
) -> None:
    what = {"sqlite": os.fsdecode(b"/dev/gpu\xff"), "postgres": "/dev/gpu\x00"}[backend]
    shown = {"sqlite": "/dev/gpu\\udcff", "postgres": "/dev/gpu\\u0000"}[backend]
    schema = f"test_pathology_{uuid.uuid4().hex[:12]}"
    store = _store(env.tmp_path) if backend == "sqlite" else \
        open_pathology_store(PG_URL, pg_schema=schema)
    server = PathologyServer(env.config(), store, BackendLostNaming(what))
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert server.connected.wait(10)
        env.watcher.submit(_job("lab/lost-odd", [env.slides / "b11.jpg"]))
        final = env.watcher.wait("lab/lost-odd", {"done", "failed", "cancelled"}, timeout_s=60)
        assert store.job("lab/lost-odd")["reason"] == final["reason"]  # type: ignore[index]
    finally:
        stop.set()
        thread.join(15)
        if backend == "postgres":
            store.drop_postgres_schema(schema)
        store.close()
    assert (final["state"], final["reason"]) == (
        "failed", f"model failed on a batch: accelerator lost at {shown}")
    assert "a read or write failed" not in caplog.text  # no store outage said


class FirstBatchHeld(SlowBackend):
    """The real ONNX backend whose first batch waits in the model until ``release`` is set,
    then is scored, or fails (``fail_held``)."""

    def __init__(self, *, fail_held: bool) -> None:
        super().__init__(delay_s=0)
        self.fail_held = fail_held
        self.holding, self.release = threading.Event(), threading.Event()
        self.batches = 0

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        self.batches += 1  # one caller: the server's inference thread
        if self.batches == 1:
            self.holding.set()
            self.release.wait(60)
            if self.fail_held:
                raise RuntimeError("accelerator lost")
        return super().infer(tiles_rgb)


def _claimed_by_a_server_that_dies(tmp_path: Path, job_id: str, lease_s: float) -> None:
    """The job's lease runs out (its owner stalled past it) and another server claims it, as
    any server does (claim_expired), then dies: its own lease runs out lease_s later."""
    store = _store(tmp_path)
    deadline = time.monotonic() + 30
    try:
        while True:
            with closing(sqlite3.connect(tmp_path / "state" / "store.sqlite3")) as db, db:
                db.execute("UPDATE pathology_jobs SET lease_until = 0 WHERE job_id = ?",
                           (job_id,))
            if [job.job_id for job in store.claim_expired("ghost", lease_s)] == [job_id]:
                return
            assert time.monotonic() < deadline, "the owner renewed its lease each time"
    finally:
        store.close()


def _same_scores(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Each slide with the same index, label, tile count and score (to 1e-4: batches cut
    otherwise may round otherwise)."""
    def plain(row: dict[str, Any]) -> tuple[Any, ...]:
        return row["slide_index"], row["label"], row["tile_count"]
    return [plain(row) for row in rows] == [plain(row) for row in expected] and \
        [row["score"] for row in rows] == pytest.approx([row["score"] for row in expected],
                                                        abs=1e-4)


@pytest.mark.parametrize("held_batch", ["scored", "failed"])
def test_a_job_lost_to_another_server_and_taken_back_is_finished_by_the_run_that_took_it_back(
    env: Env, serve: Servers, held_batch: str,
) -> None:
    """A server that lost a job (its lease ran out and another server claimed it), then took
    it back once that server died, ignored every slide of it for ever: the job stayed running
    at 0 slides. Here the lost run's first batch is in the model across the loss and the
    taking back, and is then scored or fails: neither may touch the new run, which scores
    every slide as a run of the same slides undisturbed does."""
    backend = FirstBatchHeld(fail_held=held_batch == "failed")
    server = serve(env.config(max_batch=8, max_wait_ms=0), backend)
    slides = [env.slides / "b11.jpg", env.slides / "b12.jpg"]
    env.watcher.submit(_job("lab/back", slides))
    assert backend.holding.wait(60)
    lost = server.runs["lab/back"]
    _claimed_by_a_server_that_dies(env.tmp_path, "lab/back", lease_s=1.0)
    deadline = time.monotonic() + 60
    while (taken_back := server.runs.get("lab/back")) is None or taken_back is lost:
        assert time.monotonic() < deadline, "the server never took the job back"
        time.sleep(0.05)
    while server.batcher.pending_for("lab/back") == 0:  # the new run's first slide is prepared
        assert time.monotonic() < deadline, "the job taken back prepared no slide"
        time.sleep(0.05)
    backend.release.set()  # the lost run's batch comes out of the model now
    final = env.watcher.wait("lab/back", {"done", "failed", "cancelled"})
    assert (final["state"], final["server"]) == ("done", server.server_id)
    store = _store(env.tmp_path)
    rows = store.slide_results("lab/back")
    job = store.job("lab/back")
    store.close()
    assert job is not None
    assert (job["state"], job["owner"], job["takeovers"]) == ("done", server.server_id, 2)
    env.watcher.submit(_job("lab/undisturbed", slides))
    undisturbed = env.watcher.wait("lab/undisturbed", {"done", "failed", "cancelled"})
    assert undisturbed["state"] == "done"
    assert all(isinstance(row["score"], float) for row in rows)
    assert _same_scores(rows, final["results"])
    assert _same_scores(rows, undisturbed["results"])


def test_killed_server_job_is_taken_over_and_stored_exactly_once(
    env: Env, serve: Servers,
) -> None:
    tmp_path, slides, watcher = env.tmp_path, env.slides, env.watcher
    config = env.config(client_id="first")
    first = subprocess.Popen(
        [sys.executable, "-m", "appliance", "pathology", "serve", "--config",
         str(tmp_path / "config.yaml")], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "first.log").open("w"))
    try:
        watcher.wait_server("first", "online")  # subscribed: the job cannot be missed
        watcher.submit(_job("lab/takeover", [slides / "b11.jpg", slides / "b12.jpg"] * 3))
        running = watcher.wait("lab/takeover", {"running"}, min_done=1, timeout_s=90)
        assert running["server"] == "first"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the server and its preparation workers
        first.wait(10)
    watcher.wait_server("first", "offline")  # its last will
    second = config.model_copy(update={"pathology": config.pathology.model_copy(
        update={"client_id": "second"})})
    serve(second)
    final = watcher.wait("lab/takeover", {"done", "failed", "cancelled"}, timeout_s=90)
    assert final["state"] == "done"
    assert final["server"] == "second"
    assert [row["slide_index"] for row in final["results"]] == list(range(6))
    store = _store(tmp_path)
    rows = store.slide_results("lab/takeover")
    assert [row["slide_index"] for row in rows] == list(range(6))  # each slide once
    assert {row["server"] for row in rows} == {"first", "second"}
    job = store.job("lab/takeover")
    assert job is not None
    assert (job["state"], job["takeovers"], job["owner"]) == (
        "done", 1, "second")
    store.close()


KILL_BEFORE_THE_FINAL_STATE = """
import os, signal, sys
from appliance.pathology.server import PathologyServer
publish = PathologyServer._publish
def publish_or_die(self, job_id, state, **fields):
    if "results" in fields:  # the end is stored: killed before anyone hears of it
        os.kill(os.getpid(), signal.SIGKILL)
    publish(self, job_id, state, **fields)
PathologyServer._publish = publish_or_die
from appliance.cli import main
sys.exit(main(["pathology", "serve", "--config", sys.argv[1]]))
"""


def test_a_server_killed_between_storing_a_job_s_end_and_publishing_it_leaves_no_stale_state(
    env: Env, serve: Servers,
) -> None:
    """The store said done, the retained state still said running (job list, --wait), and the
    next server only cleared the request. Now it publishes the stored end again."""
    config = env.config(client_id="first")
    first = subprocess.Popen(
        [sys.executable, "-c", KILL_BEFORE_THE_FINAL_STATE, str(env.tmp_path / "config.yaml")],
        start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=(env.tmp_path / "first.log").open("w"))
    try:
        env.watcher.wait_server("first", "online")
        env.watcher.submit(_job("lab/ended", [env.slides / "b11.jpg", env.slides / "corrupt.jpg"]))
        assert first.wait(90) == -signal.SIGKILL
    finally:
        with suppress(ProcessLookupError):  # its preparation workers (or itself, had it hung)
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    retained = _retained_on(env.broker, state_topic(env.prefix, "lab/ended"))
    assert json.loads(retained[0][1])["state"] == "running"  # stale: the store says done
    serve(config.model_copy(update={"pathology": config.pathology.model_copy(
        update={"client_id": "second"})}))
    final = env.watcher.wait("lab/ended", {"done", "failed", "cancelled"})
    assert (final["state"], final["slides_done"], final["slides_failed"]) == ("done", 2, 1)
    assert [row["slide"] for row in final["results"]] == ["b11", "corrupt"]
    # the request is cleared after the final state is published (a kill between the two leaves
    # the request, so the next server publishes the stored end again): it may lag the state
    assert wait_until(lambda: not _retained_on(env.broker, request_topic(env.prefix, "lab/ended")),
                      30), "the ended job's request is still retained"


def test_a_relative_results_dir_is_the_config_file_s_folder_not_the_working_one(
    env: Env,
) -> None:
    env.config(client_id="relative", results_dir="pictures")  # written to tmp_path/config.yaml
    elsewhere = env.tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "appliance", "pathology", "serve", "--config",
         str(env.tmp_path / "config.yaml")], cwd=elsewhere, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=(env.tmp_path / "server.log").open("w"))
    try:
        env.watcher.wait_server("relative", "online")
        env.watcher.submit(_job("lab/relative", [env.slides / "b11.jpg"]))
        final = env.watcher.wait("lab/relative", {"done", "failed"}, timeout_s=90)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert final["state"] == "done"
    heatmap = Path(final["results"][0]["heatmap_path"])
    assert heatmap.is_relative_to(env.tmp_path / "pictures")
    assert heatmap.is_file()
    assert list(elsewhere.iterdir()) == []


def test_a_server_under_its_units_filters_runs_a_job_and_stops_cleanly(env: Env) -> None:
    """The whole server (broker link, store, preparation workers, onnx-cpu, heatmaps, /metrics
    off) under deploy/appliance-pathology@.service's system call, namespace and address family
    filters as systemd loads them (tests/unit_syscalls.py): nothing it calls is refused."""
    env.config(client_id="confined")
    unit = Path(__file__).resolve().parents[2] / "deploy" / "appliance-pathology@.service"
    log = env.tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.unit_syscalls", str(unit), "--", sys.executable, "-m",
         "appliance", "pathology", "serve", "--config", str(env.tmp_path / "config.yaml")],
        cwd=unit.parents[1], start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=log.open("w"))
    try:
        env.watcher.wait_server("confined", "online")
        env.watcher.submit(_job("lab/confined", [env.slides / "b11.jpg", env.slides / "b12.jpg"]))
        final = env.watcher.wait("lab/confined", {"done", "failed"}, timeout_s=90)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(30)
    assert final["state"] == "done", final
    assert code == 0, log.read_text()[-3000:]
    assert "not permitted" not in log.read_text().lower(), log.read_text()[-3000:]


def test_hostile_jobs_are_refused_with_a_reason_and_the_server_keeps_going(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    tmp_path, slides, watcher = env.tmp_path, env.slides, env.watcher
    config = env.config(max_slides_per_job=5, max_job_bytes=4096)
    serve(config)
    not_json = watcher.submit(b"{not json")
    assert "not JSON" in watcher.wait(not_json, {"failed"})["reason"]
    deep = watcher.submit(b"[" * 1000 + b"]" * 1000)  # refused and acknowledged, not a crash
    assert "nested too deeply" in watcher.wait(deep, {"failed"})["reason"]
    large = watcher.submit(b"[" + b"1," * 3000 + b"1]")
    assert "at most 4096" in watcher.wait(large, {"failed"})["reason"]
    watcher.submit(_job("anonymous/inside", [slides / "b11.jpg"]), job_id="anonymous/outside")
    assert "published for job 'anonymous/outside'" in \
        watcher.wait("anonymous/outside", {"failed"})["reason"]
    watcher.submit(_job("anonymous/named", [slides / "b11.jpg"]), job_id="anonymous/no job id!")
    watcher.wait_refusal("'anonymous/no job id!' (20 characters), not a job id")
    for job_id, field in (("anonymous/surrogate-path", "path"),
                          ("anonymous/surrogate-time", "submitted_at")):
        raw = json.dumps(_job(job_id, [slides / "b11.jpg"]))  # a JSON escape no text can hold
        raw = raw.replace('"submitted_at": ""', '"submitted_at": "\\ud800"') if \
            field == "submitted_at" else raw.replace("b11.jpg", "\\udcff.jpg")
        watcher.submit(raw.encode(), job_id=job_id)
        assert "not Unicode" in watcher.wait(job_id, {"failed"})["reason"]  # and not a crash
    watcher.submit(_job("anonymous/escape", [slides / ".." / ".." / "etc" / "passwd"]))
    assert "outside the slide roots" in watcher.wait("anonymous/escape", {"failed"})["reason"]
    watcher.submit(_job("anonymous/many", [slides / "b11.jpg"] * 6))
    assert "at most 5" in watcher.wait("anonymous/many", {"failed"})["reason"]
    watcher.submit({**_job("anonymous/badres", [slides / "b11.jpg"]), "slides": [
        {"path": str(slides / "b11.jpg"), "um_per_px": "fast"}]})
    assert "um_per_px must be a number" in watcher.wait("anonymous/badres", {"failed"})["reason"]
    implausible = {"anonymous/nanres": "NaN", "anonymous/infres": "Infinity",
                   "anonymous/zerores": "0", "anonymous/negres": "-0.5"}
    for job_id, raw in implausible.items():  # refused, not accepted to fail slide by slide
        watcher.submit(json.dumps(_job(job_id, [slides / "b11.jpg"], 1.25)).replace(
            "1.25", raw).encode())
        reason = watcher.wait(job_id, {"queued", "done", "failed"})["reason"]
        assert f"slides[0].um_per_px: {float(raw)} µm/px is not a plausible" in reason
    watcher.submit(_job("anonymous/broken", [slides / "corrupt.jpg"]))
    assert "no slide could be scored" in \
        watcher.wait("anonymous/broken", {"done", "failed"})["reason"]
    capsys.readouterr()
    cfg = str(tmp_path / "config.yaml")  # the server kept going: a good job still runs
    assert main(["pathology", "job", "submit", str(slides / "b12.jpg"), "--um-per-px", "1",
                 "--wait", "--timeout", "60", "--config", cfg]) == 0
    followed, err = capsys.readouterr()
    assert "no pathology server is online" not in err
    assert " done 1/1 slides" in followed
    assert "b12: MS" in followed
    assert main(["pathology", "job", "list", "--config", cfg]) == 0
    listed = capsys.readouterr().out
    assert "anonymous/escape failed" in listed
    assert ": online since " in listed  # the server's presence
    # 3 unreadable, outside, 2 surrogates, escape, many, badres, 4 implausible, broken, the
    # submitted one
    assert "15 job(s)" in listed
    # every request, refused or run, was cleared (the run one's clear follows its final state)
    every = request_topic(env.prefix, ANY_JOB)
    assert wait_until(lambda: _retained_on(env.broker, every) == [], 30), \
        _retained_on(env.broker, every)
    store = _store(tmp_path)
    assert store.job("anonymous/escape")["state"] == "failed"  # type: ignore[index]
    for job_id in implausible:
        assert store.job(job_id)["request"] == {}  # type: ignore[index]
        assert store.slide_results(job_id) == []
    store.close()


@pytest.mark.postgres
def test_a_request_holding_a_nul_is_refused_on_postgresql_not_taken_for_an_outage(
    env: Env, caplog: pytest.LogCaptureFixture,
) -> None:
    """A NUL character (JSON's \\u0000) in a request's submitted_at: PostgreSQL's text refuses
    it, and the server took that for the store failing: it said the store was out, tried the
    request again each second for ever and never answered it. It is refused now, as any
    malformed request, and the server goes on."""
    schema = f"test_pathology_{uuid.uuid4().hex[:12]}"
    store = open_pathology_store(PG_URL, pg_schema=schema)
    server = PathologyServer(env.config(), store)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert server.connected.wait(10)
        raw = json.dumps(_job("lab/nul-time", [env.slides / "b11.jpg"])).replace(
            '"submitted_at": ""', '"submitted_at": "2026-12-05\\u0000"')
        env.watcher.submit(raw.encode(), job_id="lab/nul-time")
        assert "a NUL character" in env.watcher.wait("lab/nul-time", {"failed"}, 30)["reason"]
        env.watcher.submit(_job("lab/after-the-nul", [env.slides / "b12.jpg"]))
        assert env.watcher.wait("lab/after-the-nul", {"done", "failed"})["state"] == "done"
        assert "a read or write failed" not in caplog.text  # no store outage said
    finally:
        stop.set()
        thread.join(15)
        store.drop_postgres_schema(schema)
        store.close()


def test_requests_beyond_the_retained_limit_are_refused_and_leave_nothing_behind(
    env: Env, serve: Servers,
) -> None:
    """A job client that sends more requests than max_retained_requests: the further ones are
    cleared from the broker as they come, their submitter told (a state not retained), nothing
    stored; the ones within the limit wait and run."""
    jobs = [f"lab/flood-{index}" for index in range(6)]
    for job_id in jobs:  # all retained before the server reads them, in this order
        _publish_retained(env.broker, request_topic(env.prefix, job_id),
                          json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode())
    serve(env.config(max_retained_requests=3, max_running_jobs=1), SlowBackend(delay_s=0.5))
    for job_id in jobs[3:]:
        reason = env.watcher.wait(job_id, {"failed"})["reason"]
        assert "3 job requests wait or run already (pathology.max_retained_requests)" in reason
    for job_id in jobs[:3]:
        env.watcher.wait(job_id, {"done"})
        # a job's request is cleared just after its final state is published: a listener
        # between the two found the last done job's request still retained (CI, under load)
        topic = request_topic(env.prefix, job_id)
        assert wait_until(lambda topic=topic: not _retained_on(env.broker, topic), 30)
    listener, heard = _listen(env.broker, [request_topic(env.prefix, ANY_JOB),
                                           state_topic(env.prefix, ANY_JOB)])
    listener.disconnect()
    listener.loop_stop()
    latest = dict(heard)  # a request cleared as the listener subscribed: its clear came last
    retained = sorted(job_id_of_topic(topic) for topic, payload in latest.items() if payload)
    assert retained == jobs[:3]  # the states of the three done; no request, no refusal
    store = _store(env.tmp_path)
    assert [store.job(job_id) is None for job_id in jobs] == [False] * 3 + [True] * 3
    store.close()


def test_one_login_s_flood_of_requests_leaves_another_login_its_share(
    env: Env, serve: Servers,
) -> None:
    """max_retained_requests was one limit for every login: one job login's flood of retained
    requests filled it, and another login's request was refused (on main: "4 job requests
    wait or run already") until some of the flood ended. Now each login has its share,
    max_retained_requests_per_login: the flood beyond its share is refused, and the other
    login's request is taken and runs."""
    flood = [f"lab-a/flood-{index}" for index in range(6)]
    for job_id in flood:  # all retained before the server reads them, in this order
        _publish_retained(env.broker, request_topic(env.prefix, job_id),
                          json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode())
    backend = GatedBackend(delay_s=0.0)
    backend.flowing.clear()  # the flood's first job runs and ends only once B's is read
    serve(env.config(max_retained_requests=4, max_retained_requests_per_login=2,
                     max_running_jobs=1), backend)
    for job_id in flood[2:]:
        reason = env.watcher.wait(job_id, {"failed"})["reason"]
        assert ("refused: 2 job requests of login lab-a wait or run already "
                "(pathology.max_retained_requests_per_login)") in reason, reason
    theirs = env.watcher.submit(_job("lab-b/own", [env.slides / "b12.jpg"]))
    _handled_before(env.watcher)  # B's request read (and not refused) before the flood ends
    assert not [s for s in env.watcher.seen if s["job_id"] == theirs and s["state"] == "failed"]
    backend.flowing.set()
    assert env.watcher.wait(theirs, {"done", "failed"}, timeout_s=120)["state"] == "done"
    for job_id in flood[:2]:
        assert env.watcher.wait(job_id, {"done", "failed"}, timeout_s=120)["state"] == "done"


def test_a_login_s_refused_requests_leave_its_share_to_its_next_jobs_at_once(
    env: Env, serve: Servers,
) -> None:
    """A request the server refused counted in its login's share until the server's clear of
    it came back from the broker: a login's burst of refused requests had its own next job
    refused ("2 job requests of login lab wait or run already") though none of them waited.
    A refused request counts no more once the server refuses it; the share still bounds what
    the login has waiting or running. All retained before the server reads them, so the
    broker sends the jobs before any of the server's clears comes back."""
    refused = [f"lab/a-garbage-{index}" for index in range(3)]
    jobs = [f"lab/b-job-{index}" for index in range(3)]
    for job_id in refused:
        _publish_retained(env.broker, request_topic(env.prefix, job_id), b"{not json")
    for job_id in jobs:
        _publish_retained(env.broker, request_topic(env.prefix, job_id),
                          json.dumps(_job(job_id, [env.slides / "b11.jpg"])).encode())
    backend = GatedBackend(delay_s=0.0)
    backend.flowing.clear()  # the first job runs until the last one is answered
    serve(env.config(max_retained_requests_per_login=2, max_running_jobs=1), backend)
    for job_id in refused:
        assert "not JSON" in env.watcher.wait(job_id, {"failed"})["reason"]
    reason = env.watcher.wait(jobs[2], {"failed"})["reason"]
    assert ("refused: 2 job requests of login lab wait or run already "
            "(pathology.max_retained_requests_per_login)") in reason, reason
    backend.flowing.set()
    for job_id in jobs[:2]:
        ended = env.watcher.wait(job_id, {"done", "failed"}, timeout_s=120)
        assert ended["state"] == "done", ended.get("reason")


def _flood_qos0(broker: PrivateBroker, prefix: str, messages: list[tuple[str, bytes]]) -> None:
    """A job client's flood: each (topic, payload) at QoS 0, then a QoS 1 marker on a topic
    nobody reads, whose PUBACK the broker sends once it has read the packets before it (one
    TCP stream, read in turn), and only then the DISCONNECT. Disconnected right after the
    publishes, the client closed its socket while a broker slow on a loaded machine had not
    read them yet: the CONNACK it sent then met a closed socket, the kernel answered with a
    reset, and the broker lost what it had not read (63 of 200 requests came through once)."""
    flood = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    flood.connect(broker.host, broker.port)
    flood.loop_start()
    try:
        for topic, payload in messages:
            flood.publish(topic, payload, qos=0)
        marker = flood.publish(f"{prefix}-flood-sent", b"", qos=1)
        marker.wait_for_publish(120)
        assert marker.is_published(), "the broker did not read the flood within 120 s"
        flood.disconnect()
    finally:
        flood.loop_stop()


def test_a_flood_of_qos0_requests_is_bounded_in_the_server_and_jobs_still_run(
    tmp_path: Path, private_broker: PrivateBroker, slides: Path, serve: Servers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """QoS 0 messages are not flow-controlled by the broker: a job client that sent thousands
    of QoS 0 requests (here 2000 of 64 kB, each refused, a store write apiece) had them all
    wait in the server's queue at once, its memory growing with them. At most
    MAX_QOS0_WAITING wait now; the rest are dropped, counted and logged, and a job sent as
    the job commands send it (QoS 1) by the flooding login still runs (its refused requests
    count in its share, max_retained_requests_per_login, no more once refused; they counted
    until their clears came back, and that job was refused now and then). On a private
    broker: the flood is its own."""
    prefix = "test/qos0-flood"
    watcher = Watcher(private_broker, prefix)
    server = serve(_config(tmp_path, prefix, private_broker, slides))
    peak, flooding = [0], threading.Event()
    flooding.set()

    def sample() -> None:  # the request bytes waiting in the server's queue
        while flooding.is_set():
            with server.events.mutex:
                waiting = list(server.events.queue)
            peak[0] = max(peak[0], sum(len(event[1]) for kind, event in waiting
                                       if kind == "job"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    body = json.dumps({**_job("lab/other", [slides / "b11.jpg"]), "pad": "x" * 64_000}).encode()
    _flood_qos0(private_broker, prefix,
                [(request_topic(prefix, f"lab/flood-{index}"), body) for index in range(2000)])
    try:
        watcher.submit(_job("lab/after-the-flood", [slides / "b12.jpg"]))
        ended = watcher.wait("lab/after-the-flood", {"done", "failed"}, 120)
        assert ended["state"] == "done", {k: v for k, v in ended.items() if k != "schema"}
    finally:
        flooding.clear()
        sampler.join(5)
        watcher.close()
    # the QoS 0 flood at most, beside the QoS 1 request sent after it (the clears are empty)
    assert peak[0] <= MAX_QOS0_WAITING * len(body) + 4096
    assert server.qos0_dropped > 0
    assert "dropped a QoS 0 job on job 'lab/flood-" in caplog.text


def test_a_flood_of_qos0_requests_while_the_store_fails_is_not_kept_for_its_return(
    tmp_path: Path, private_broker: PrivateBroker, slides: Path, serve: Servers,
) -> None:
    """While the store fails, the server keeps the requests it could not store and tries them
    again each second. QoS 0 ones left the bounded queue at once, failing fast, and so a job
    client's flood of them piled up there instead, every one tried again and again. They are
    dropped now (a retained one is read again at the next rescan); a job sent at QoS 1 is
    still tried again, and done once the store answers."""
    prefix = "test/qos0-outage"
    watcher = Watcher(private_broker, prefix)
    # the flood is one login's: its share as large as the limit, so that none is refused
    server = serve(_config(tmp_path, prefix, private_broker, slides,
                           max_retained_requests_per_login=1000))
    accept, store_down, tries = server.store.accept, threading.Event(), Counter[str]()
    store_down.set()

    def failing(request: Any, owner: str, lease_s: float) -> bool:
        tries[request.job_id] += 1
        if store_down.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        return accept(request, owner, lease_s)

    server.store.accept = failing  # type: ignore[method-assign]
    _flood_qos0(private_broker, prefix, [
        (request_topic(prefix, f"lab/flood-{index}"),
         (json.dumps(_job(f"lab/flood-{index}", [slides / "b11.jpg"]))
          + " " * 16_000).encode())  # padded with JSON's own blanks: a key is refused
        for index in range(200)])
    try:
        watcher.submit(_job("lab/kept-for-the-store", [slides / "b12.jpg"]))
        deadline = time.monotonic() + 60
        while (len(tries) < 201 or tries["lab/kept-for-the-store"] < 3) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        seen = dict(tries)  # the server goes on trying meanwhile
        assert server.qos0_dropped == 0  # 200 never fill the bound on waiting ones
        assert seen.pop("lab/kept-for-the-store") >= 3  # tried again each second
        assert len(seen) == 200
        assert set(seen.values()) == {1}  # each tried once, then dropped, not kept
        store_down.clear()
        assert watcher.wait("lab/kept-for-the-store", {"done", "failed"}, 120)["state"] == "done"
    finally:
        watcher.close()


def test_refused_requests_leave_no_more_retained_states_than_the_limit(
    env: Env, serve: Servers,
) -> None:
    """Each refused request (its job id usable) gets a retained failed state: a job client
    sending garbage under ever new ids would fill the broker with them. Beyond
    max_retained_requests the oldest such state is cleared, and the store keeps as many
    refusals (it kept every one)."""
    serve(env.config(max_retained_requests=2))
    jobs = [f"lab/garbage-{index}" for index in range(4)]
    for job_id in jobs:
        env.watcher.submit(b"{not json", job_id=job_id)
        env.watcher.wait(job_id, {"failed"})
    retained = {job_id_of_topic(topic) for topic, _ in
                _retained_on(env.broker, state_topic(env.prefix, ANY_JOB))}
    assert retained == set(jobs[2:])
    for job_id in jobs[:2]:  # sent again: the stored refusal is published again, and counted
        env.watcher.seen.clear()
        env.watcher.submit(b"{not json", job_id=job_id)
        env.watcher.wait(job_id, {"failed"})
    retained = {job_id_of_topic(topic) for topic, _ in
                _retained_on(env.broker, state_topic(env.prefix, ANY_JOB))}
    assert retained == set(jobs[:2])
    store = _store(env.tmp_path)
    assert [store.job(job_id)["state"] for job_id in jobs[:2]] == ["failed"] * 2  # type: ignore[index]
    assert [store.job(job_id) for job_id in jobs[2:]] == [None, None]
    store.close()


def test_one_login_s_refused_requests_leave_another_login_s_refusal_state(
    env: Env, serve: Servers,
) -> None:
    """The refusal states a server left retained were bounded by max_retained_requests for
    every login together: one login's garbage cleared the oldest, another login's refusal
    among them, and the store removed it as well. Each login keeps its share now
    (max_retained_requests_per_login), within that total: login A's garbage clears A's
    oldest refusal states only."""
    serve(env.config(max_retained_requests=4, max_retained_requests_per_login=2))
    theirs = env.watcher.submit(b"{not json", job_id="lab-b/garbage")
    env.watcher.wait(theirs, {"failed"})
    flood = [f"lab-a/garbage-{index}" for index in range(4)]
    for job_id in flood:
        env.watcher.submit(b"{not json", job_id=job_id)
        env.watcher.wait(job_id, {"failed"})
    _handled_before(env.watcher)  # the last refusal's clears published before the markers'
    retained = {job_id_of_topic(topic) for topic, _ in
                _retained_on(env.broker, state_topic(env.prefix, ANY_JOB))}
    assert retained == {theirs, *flood[2:]}
    store = _store(env.tmp_path)
    assert [store.job(job_id) is not None for job_id in [theirs, *flood]] == [
        True, False, False, True, True]
    store.close()


def test_a_job_whose_results_exceed_a_message_still_ends_for_its_submitter(
    tmp_path: Path, topic_prefix: str, slides: Path, serve: Servers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The final state of a job of many failed slides can outgrow the broker's
    message_size_limit (the fleet's is 256 KiB, max_job_bytes; 1000 failed slides made about
    300 KB): the broker dropped it, and job submit --wait waited for ever. The state carries
    the results that fit, failed slides first, and says how many failed and how many it
    leaves out. Here both limits are 16 KiB, met by 60 slides."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write("message_size_limit 16384\n")
    broker.start()
    try:
        config = _config(tmp_path, topic_prefix, broker, slides, max_job_bytes=16384)
        serve(config)
        paths = [str(slides / "b11.jpg")] + [str(slides / "corrupt.jpg")] * 59
        capsys.readouterr()
        code = main(["pathology", "job", "submit", *paths, "--um-per-px", "1", "--wait",
                     "--timeout", "60", "--config", str(tmp_path / "config.yaml")])
        out, err = capsys.readouterr()
        assert code == 1, err[-2000:]
        omitted = re.search(r"\(59 failed; (\d+) slides' results are not in this message", out)
        assert omitted, out[-2000:]
        named = err.count("slide corrupt failed: ")  # as many as fit, the good slide left out
        assert named + int(omitted.group(1)) == 60
        assert 0 < named < 59
        assert "59 of 60 slides failed" in err
        assert len(_retained_on(broker, state_topic(topic_prefix, ANY_JOB))[0][1]) <= 16384
    finally:
        broker.close()


def test_a_job_state_fits_the_packet_size_the_broker_announces(
    tmp_path: Path, topic_prefix: str, slides: Path, serve: Servers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A broker may announce a maximum packet size (mosquitto's max_packet_size, in its
    CONNACK) below pathology.max_job_bytes (256 KiB here, the default): 8 KiB; it drops the
    connection of a client that sends a larger packet. The final state of 60 slides went out
    whole: the server was cut off, sent it again at each reconnect, and job submit --wait never
    heard the end. Now every state fits the packet beside its topic."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write("max_packet_size 8192\n")  # the request fits, its results do not
    broker.start()
    try:
        config = _config(tmp_path, topic_prefix, broker, slides)
        serve(config)
        paths = [str(slides / "b11.jpg")] + [str(slides / "corrupt.jpg")] * 59
        capsys.readouterr()
        code = main(["pathology", "job", "submit", *paths, "--um-per-px", "1", "--wait",
                     "--timeout", "60", "--config", str(tmp_path / "config.yaml")])
        out, err = capsys.readouterr()
        assert code == 1, err[-2000:]
        assert re.search(r"\(59 failed; \d+ slides' results are not in this message", out), \
            out[-2000:]
        assert "59 of 60 slides failed" in err
        (topic, state), = _retained_on(broker, state_topic(topic_prefix, ANY_JOB))
        assert len(state) + len(topic) < 8192
        assert "oversize packet" not in broker.log_path.read_text(errors="replace")
    finally:
        broker.close()


def test_a_request_larger_than_the_broker_s_packet_size_is_refused_before_it_is_sent(
    tmp_path: Path, topic_prefix: str, slides: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """job submit checked its request against pathology.max_job_bytes only: a broker that
    announces a smaller maximum packet size dropped its connection for it, and the job was
    lost (without --wait the command still printed its id)."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write("max_packet_size 2048\n")
    broker.start()
    try:
        _config(tmp_path, topic_prefix, broker, slides)
        capsys.readouterr()
        code = main(["pathology", "job", "submit", *[str(slides / "b11.jpg")] * 40,
                     "--um-per-px", "1", "--config", str(tmp_path / "config.yaml")])
        out, err = capsys.readouterr()
        assert (code, out) == (2, "")  # no job id: nothing was sent
        assert re.search(rf"pathology job submit: the request of 40 slides is \d+ bytes; broker "
                         rf"127.0.0.1:{broker.port} takes packets of at most 2048 bytes", err), err
        assert _retained_on(broker, request_topic(topic_prefix, ANY_JOB)) == []
        assert "oversize packet" not in broker.log_path.read_text(errors="replace")
    finally:
        broker.close()


def test_a_broker_whose_packet_limit_is_below_the_connect_stops_the_server_saying_so(
    tmp_path: Path, topic_prefix: str, slides: Path,
) -> None:
    """mosquitto drops, without a CONNACK, a CONNECT larger than its max_packet_size; the
    server's last will (its presence) is some 400 bytes, so under a smaller limit it logged
    "disconnected (Unspecified error); reconnecting" for ever."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    with (broker.workdir / "mosquitto.conf").open("a") as conf:
        conf.write("max_packet_size 256\n")
    broker.start()
    store = _store(tmp_path)
    try:
        server = PathologyServer(_config(tmp_path, topic_prefix, broker, slides), store)
        will_bytes = len(server.presence.will())
        assert will_bytes > 256
        thread = threading.Thread(target=server.run, args=(threading.Event(),), daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()  # it gave up instead of reconnecting for ever
        assert server.exit_code == 3  # the broker refuses us: systemd does not restart it
        assert server.failed is not None
        assert f"broker 127.0.0.1:{broker.port} refuses this server's CONNECT: its " \
               "max_packet_size is 256 bytes" in server.failed
        assert f"is {will_bytes} bytes); raise max_packet_size" in server.failed, server.failed
    finally:
        store.close()
        broker.close()


def _listen(broker: Any, topics: list[str]) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    """A client collecting every message (retained ones included) on topics; the retained
    ones have come when it returns."""
    heard: list[tuple[str, bytes]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: heard.append((m.topic, bytes(m.payload)))
    counting_subacks(client)
    client.connect(broker.host, broker.port)
    client.loop_start()
    subscribed(client, [(topic, 1) for topic in topics])
    caught_up(client)  # the retained messages come after the SUBACK
    return client, heard


def test_an_implausible_um_per_px_is_refused_at_the_command_line_and_nothing_is_sent(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    env.config()
    listener, heard = _listen(env.broker, [request_topic(env.prefix, ANY_JOB)])
    slide = str(env.slides / "b11.jpg")
    try:
        for value in ("nan", "inf", "-inf", "0", "-1", "50", "fast"):
            for command in (["job", "submit", slide, "--config", str(env.tmp_path / "config.yaml")],
                            ["submit", slide, "--out", str(env.tmp_path / "results")]):
                with pytest.raises(SystemExit) as refused:
                    main(["pathology", *command, f"--um-per-px={value}"])
                assert refused.value.code == 2
                err = capsys.readouterr().err
                assert f"argument --um-per-px: {value!r} is not a number" in err or \
                    f"argument --um-per-px: {float(value)} µm/px is not a plausible" in err, err
        caught_up(listener)
        assert heard == []
        assert not (env.tmp_path / "results").exists()
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_a_request_larger_than_a_server_takes_is_refused_at_the_command_line(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    """The fleet's broker drops a message over its message_size_limit (256 KiB, as
    pathology.max_job_bytes) and closes the link: the job was lost while submit said its id."""
    env.config(max_job_bytes=4096)
    listener, heard = _listen(env.broker, [request_topic(env.prefix, ANY_JOB)])
    try:
        many = [str(env.slides / "b11.jpg")] * 60
        assert main(["pathology", "job", "submit", *many, "--um-per-px", "1", "--config",
                     str(env.tmp_path / "config.yaml")]) == 2
        out, err = capsys.readouterr()
        assert out == ""  # no job id: nothing was sent
        assert re.search("pathology job submit: "
                         r"the request of 60 slides is \d+ bytes; at most 4096 "
                         r"\(pathology.max_job_bytes", err), err
        caught_up(listener)
        assert heard == []
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_wait_exits_1_naming_each_failed_slide_and_an_ended_job_cannot_be_cancelled(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    serve(env.config())
    cfg = ["--config", str(env.tmp_path / "config.yaml")]
    good, corrupt = str(env.slides / "b12.jpg"), str(env.slides / "corrupt.jpg")
    capsys.readouterr()
    assert main(["pathology", "job", "submit", good, corrupt, "--um-per-px", "1", "--wait",
                 "--timeout", "60", *cfg]) == 1  # done, but one slide failed
    out, err = capsys.readouterr()
    job_id = out.splitlines()[0]
    assert f"{job_id} done 2/2 slides" in out
    assert "b12: MS" in out
    assert f"job {job_id}: slide corrupt failed: " in err
    assert "1 of 2 slides failed" in err
    assert main(["pathology", "job", "submit", corrupt, "--um-per-px", "1", "--wait",
                 "--timeout", "60", *cfg]) == 1  # failed: no slide could be scored
    out, err = capsys.readouterr()
    failed_id = out.splitlines()[0]
    assert f"job {failed_id}: slide corrupt failed: " in err
    assert f"job {failed_id} failed: no slide could be scored" in err
    listener, heard = _listen(env.broker, [cancel_topic(env.prefix, ANY_JOB)])
    try:
        for ended, state in ((job_id, "done"), (failed_id, "failed")):
            assert main(["pathology", "job", "cancel", ended, *cfg]) == 1
            assert ("pathology job cancel: "
                    f"{ended} already ended: {state}" in capsys.readouterr().err)
        caught_up(listener)
        assert heard == []  # no cancel request was left behind
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_cancel_of_an_unknown_job_says_so_and_sends_nothing(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = ["--config", str(env.tmp_path / "config.yaml")]
    env.config()
    listener, heard = _listen(env.broker, [cancel_topic(env.prefix, ANY_JOB)])
    try:
        assert main(["pathology", "job", "cancel", "20991231T000000-000000000000", *cfg]) == 1
        captured = capsys.readouterr()
        assert "20991231T000000-000000000000 is unknown" in captured.err
        assert "cancel requested" not in captured.out
        with pytest.raises(SystemExit) as refused:
            main(["pathology", "job", "cancel", "a/#", *cfg])
        assert refused.value.code == 2
        assert "'a/#' is no job id" in capsys.readouterr().err
        caught_up(listener)
        assert heard == []
    finally:
        listener.disconnect()
        listener.loop_stop()


def _publish_retained(broker: Any, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _retained_on(broker: Any, topic: str) -> list[tuple[str, bytes]]:
    """What a new subscriber to topic gets: the retained message, if the broker keeps one."""
    listener, heard = _listen(broker, [topic])
    listener.disconnect()
    listener.loop_stop()
    return [(t, payload) for t, payload in heard if payload]


def test_a_cancel_for_an_unknown_job_is_cleared_and_answered(env: Env, serve: Servers) -> None:
    ghost = cancel_topic(env.prefix, "lab/ghost")
    _publish_retained(env.broker, ghost, b'{"job_id": "ghost", "requested_at": 0}')
    assert len(_retained_on(env.broker, ghost)) == 1  # on the broker before any server runs
    serve(env.config())  # the retained request arrives with the subscription
    answer = env.watcher.wait_cancel_answer("lab/ghost")
    assert answer["state"] == "unknown"
    assert "job lab/ghost is unknown" in answer["reason"]
    assert _retained_on(env.broker, ghost) == []
    store = _store(env.tmp_path)
    assert store.job("lab/ghost") is None  # nothing was made of it
    store.close()


def test_refused_cancels_sent_in_a_loop_are_said_within_a_budget_a_minute(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refused request or cancel was a warning of its own: a job client sending them in
    a loop wrote as many lines as the server read messages. Past ten a minute they are
    counted (each is still cleared and answered)."""
    ghosts = [f"lab/ghost-{index}" for index in range(15)]
    for ghost in ghosts:
        _publish_retained(env.broker, cancel_topic(env.prefix, ghost),
                          f'{{"job_id": "{ghost}", "requested_at": 0}}'.encode())
    serve(env.config())
    for ghost in ghosts:
        assert env.watcher.wait_cancel_answer(ghost)["state"] == "unknown"
    said = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("cancel request for unknown job")]
    assert len(said) == 10, said  # on main: 15


def test_a_cancel_on_a_topic_naming_no_job_id_is_cleared_and_answered_in_brief(
    env: Env, serve: Servers
) -> None:
    name = "lab/" + "g" * 60_000
    topic = cancel_topic(env.prefix, name)
    _publish_retained(env.broker, topic, b'{"requested_at": 0}')
    serve(env.config())
    shown = name[:140] + "..."
    answer = env.watcher.wait_cancel_answer(shown)
    assert answer["state"] == "unknown"
    assert answer["reason"] == (f"cancel request for {shown!r} (60004 characters) names no "
                                f"job: a job id is {JOB_ID_RULE}; nothing to cancel")
    assert _retained_on(env.broker, topic) == []


def test_a_cancel_for_an_ended_job_is_cleared_and_answered(env: Env, serve: Servers) -> None:
    serve(env.config())
    env.watcher.submit(_job("lab/ended", [env.slides / "b12.jpg"]))
    assert env.watcher.wait("lab/ended", {"done", "failed"})["state"] == "done"
    topic = cancel_topic(env.prefix, "lab/ended")
    _publish_retained(env.broker, topic, b'{"job_id": "ended", "requested_at": 0}')
    answer = env.watcher.wait_cancel_answer("lab/ended")
    assert answer["state"] == "done"
    assert "job lab/ended already ended (done)" in answer["reason"]
    assert _retained_on(env.broker, topic) == []
    store = _store(env.tmp_path)
    assert store.job("lab/ended")["state"] == "done"  # type: ignore[index]
    store.close()


def test_each_refusal_goes_to_the_errors_topic_of_the_login_its_topic_names(
    env: Env, serve: Servers,
) -> None:
    """Every refusal and cancel answer went to one errors topic that every job login read, so
    each read the others' job ids and why they were refused. Now one about a topic under
    jobs/LOGIN/ goes to errors/LOGIN (the broker lets only LOGIN publish there, and only LOGIN
    read that errors topic: test_pathology_broker_identity.py), and one whose topic names no
    login to the servers' own errors topic."""
    serve(env.config())
    errors = errors_topic(env.prefix, None)
    env.watcher.submit(_job("lab/reused", [env.slides / "b11.jpg"]))
    assert env.watcher.wait("lab/reused", {"done", "failed"})["state"] == "done"
    env.watcher.submit(_job("lab/reused", [env.slides / "b12.jpg"]))  # its id is taken
    env.watcher.wait_cancel_answer("lab/reused", request="job")
    _publish_retained(env.broker, cancel_topic(env.prefix, "rival/ghost"), b"{}")
    env.watcher.wait_cancel_answer("rival/ghost")
    env.watcher.submit(b"{}", job_id="rival/not a name!")
    env.watcher.wait_refusal("'rival/not a name!' (17 characters), not a job id")
    env.watcher.submit(b"{}", job_id="-no-login/j1")  # a first level no login can have
    env.watcher.wait_refusal("'-no-login/j1' (12 characters), not a job id")
    _publish_retained(env.broker, cancel_topic(env.prefix, "_no_login/j2"), b"{}")
    env.watcher.wait_cancel_answer("_no_login/j2")
    assert env.watcher.answered_on == {f"{errors}/lab": ["lab/reused"],
                                       f"{errors}/rival": ["rival/ghost", ""],
                                       errors: ["", "_no_login/j2"]}


def test_cancel_of_a_job_that_ended_meanwhile_says_what_the_server_answered(
    env: Env, serve: Servers, capsys: pytest.CaptureFixture[str],
) -> None:
    """`job cancel` read the job's retained state (running), sent the cancel and said "cancel
    requested", exit 0, whatever came of it; a server that found nothing to cancel (the job
    ended meanwhile, or a state that no server of this store published) answered on the
    errors topic, which no command read. Now `job cancel` reads its login's errors topic for
    a moment after sending: that answer is said, exit 1."""
    serve(env.config())
    cfg = ["--config", str(env.tmp_path / "config.yaml")]
    job_id = "anonymous/gone"  # the job commands' login without mqtt.username
    running = state_payload(job_id, "running", server="elsewhere")
    _publish_retained(env.broker, state_topic(env.prefix, job_id), running)
    assert main(["pathology", "job", "cancel", job_id, *cfg]) == 1
    captured = capsys.readouterr()
    assert f"cancel requested for {job_id} (running on elsewhere)" in captured.out
    assert ("pathology job cancel: "
            f"nothing cancelled: {job_id}: job {job_id} is unknown: no server "
            "stored it") in captured.err, captured.err


def test_a_request_under_an_ended_job_s_id_is_answered_again_if_the_same_else_refused(
    env: Env, serve: Servers,
) -> None:
    """A client that names its own job ids sends other slides under the id of a job that
    ended: the server published that job's final state again, and the client read another
    job's results as its own. Now the request is cleared and refused on the errors topic,
    naming the id, and the ended job's state is not published again; the same request sent
    again (stamped anew) still gets the job's answer again."""
    serve(env.config())
    env.watcher.submit(_job("lab/reused", [env.slides / "b11.jpg"]))
    assert env.watcher.wait("lab/reused", {"done", "failed"})["state"] == "done"
    env.watcher.submit(_job("lab/reused", [env.slides / "b12.jpg"]))
    answer = env.watcher.wait_cancel_answer("lab/reused", request="job")
    assert answer["state"] == "done"
    assert answer["reason"] == ("job id lab/reused is taken: a job under it already ended (done) "
                                "with other slides; a job id names one request for good: "
                                "submit this one under a new id")
    assert _retained_on(env.broker, request_topic(env.prefix, "lab/reused")) == []
    finals = [s for s in env.watcher.seen if s["job_id"] == "lab/reused" and
              s["state"] in FINAL_STATES and "request" not in s]
    assert len(finals) == 1  # the job's own end, not published again for the other request
    resent = {**_job("lab/reused", [env.slides / "b11.jpg"]), "submitted_at": "again"}
    env.watcher.submit(resent)
    again = _next_final_state(env.watcher, "lab/reused")
    assert [row["slide"] for row in again["results"]] == ["b11"]  # the job's own answer
    assert again["results"] == finals[0]["results"]
    store = _store(env.tmp_path)
    assert [row["slide"] for row in store.slide_results("lab/reused")] == ["b11"]
    store.close()


def test_a_request_under_a_running_job_s_id_for_other_slides_is_refused_and_the_job_goes_on(
    env: Env, serve: Servers,
) -> None:
    """The job's owner left a request for other slides under a running job's id waiting
    unanswered (it replaced the job's retained request), then cleared it as the job ended and
    published that job's results: read as the answer to the other request. Now the owner
    refuses it at once on the errors topic; the job's own request sent again is left to the
    job, which ends with its own slide."""
    backend = GatedBackend(delay_s=0)
    backend.flowing.clear()  # the job's tiles wait in the model until the test lets them
    serve(env.config(), backend)
    own = _job("lab/busy-id", [env.slides / "b11.jpg"])
    env.watcher.submit(own)
    env.watcher.wait("lab/busy-id", {"running"})
    env.watcher.submit({**own, "submitted_at": "again"})  # its own, sent again
    env.watcher.submit(_job("lab/busy-id", [env.slides / "b12.jpg"]))
    answer = env.watcher.wait_cancel_answer("lab/busy-id", request="job")
    assert (answer["state"], answer["reason"]) == ("running", (
        "job id lab/busy-id is taken: a job under it is running with other slides; a job id names "
        "one request for good: submit this one under a new id"))
    backend.flowing.set()
    final = _next_final_state(env.watcher, "lab/busy-id", timeout_s=60)
    assert (final["state"], [row["slide"] for row in final["results"]]) == ("done", ["b11"])
    assert [s for s in env.watcher.seen if s.get("request") == "job"] == [answer]  # one


def _next_final_state(watcher: Watcher, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The next final state of job_id to arrive (not one seen before)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = watcher.states.get(timeout=0.5)
        except queue.Empty:
            continue
        watcher.seen.append(state)
        if state["job_id"] == job_id and state["state"] in FINAL_STATES and \
                "request" not in state:
            return state
    raise AssertionError(f"no new final state of {job_id}; saw {watcher.seen[-5:]}")


def test_wait_without_a_server_ends_with_exit_3_at_its_timeout(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    env.config()
    assert main(["pathology", "job", "submit", str(env.slides / "b11.jpg"), "--um-per-px", "1",
                 "--wait", "--timeout", "2", "--config", str(env.tmp_path / "config.yaml")]) == 3
    err = capsys.readouterr().err
    assert "no pathology server is online; the request waits, retained, until one starts" in err
    assert "no final state within 2 s" in err


def test_job_commands_name_an_unreachable_broker(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    env.config()
    config = env.tmp_path / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["mqtt"]["port"] = free_port()  # nothing listens there
    config.write_text(yaml.safe_dump(data))
    assert main(["pathology", "job", "list", "--config", str(config)]) == 1
    assert f"pathology job list: broker {env.broker.host}:{data['mqtt']['port']} unreachable" in \
        capsys.readouterr().err


def test_job_commands_name_a_refused_login_at_once_with_exit_2(
    tmp_path: Path, topic_prefix: str, slides: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.yaml"
    with PrivateBroker(workdir=tmp_path / "broker", passwords={"office": "right"}) as broker:
        config.write_text(yaml.safe_dump({"mqtt": {
            "host": broker.host, "port": broker.port, "username": "office",
            "topic_prefix": topic_prefix}}))
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        for command in (["submit", str(slides / "b11.jpg"), "--um-per-px", "1", "--wait"],
                        ["list"], ["cancel", "20991231T000000-000000000000"]):
            assert main(["pathology", "job", *command, "--config", str(config)]) == 2, command
            captured = capsys.readouterr()
            assert re.search(rf"^pathology job {command[0]}: broker 127.0.0.1:{broker.port} "
                             r"refused office \(reason code 0x8[67]: .*\): check "
                             r"mqtt.username and the password", captured.err), captured.err
            assert captured.out == ""  # no job id: nothing was sent
        monkeypatch.setenv(PASSWORD_ENV, "right")  # the same config with the right password
        assert main(["pathology", "job", "list", "--config", str(config)]) == 0
        assert capsys.readouterr().out == "0 job(s)\n"


def test_a_job_is_acknowledged_only_once_stored(env: Env, serve: Servers) -> None:
    config = env.config(client_id="same-id")
    first = serve(config)
    attempts: list[str] = []

    def store_is_down(request: Any, owner: str, lease_s: float) -> bool:
        attempts.append(request.job_id)
        raise sqlite3.OperationalError("disk I/O error")

    first.store.accept = store_is_down  # type: ignore[method-assign]
    env.watcher.submit(_job("lab/durable", [env.slides / "b11.jpg"]))
    wait_until(lambda: len(attempts) >= 2, 20, poll_s=0.1)  # it retries, never acks
    assert attempts[:2] == ["lab/durable", "lab/durable"]
    serve.stop(first)  # dies with the job unacknowledged
    serve(config)  # same client id: the broker hands the unacknowledged job back
    final = env.watcher.wait("lab/durable", {"done", "failed"}, timeout_s=60)
    assert final["state"] == "done"
    store = _store(env.tmp_path)
    assert [row["slide_index"] for row in store.slide_results("lab/durable")] == [0]
    store.close()


def test_a_job_s_end_stored_whose_answer_was_lost_is_still_published(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture,
) -> None:
    """The store committed a job's end but its answer was lost (the server restarted or the
    connection broke in between): the lease no longer renewed, so the housekeeping said the
    job was "taken over by another server" and dropped it unpublished, and the retained state
    said running until a rescan of the requests a minute later; a retried end was not
    published either (the store said the job was not this server's to end)."""
    server = serve(env.config())
    finish, calls = server.store.finish, []

    def committed_then_lost(job_id: str, owner: str, state: str, reason: str = "") -> bool:
        calls.append(state)
        ended = finish(job_id, owner, state, reason)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return ended

    server.store.finish = committed_then_lost  # type: ignore[method-assign]
    env.watcher.submit(_job("lab/answer-lost", [env.slides / "b11.jpg"]))
    final = env.watcher.wait("lab/answer-lost", {"done", "failed", "cancelled"}, timeout_s=60)
    assert (final["state"], final["slides_done"]) == ("done", 1)
    assert "taken over" not in caplog.text


def _store_said(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[str, str]]:
    """The warnings and errors a logger said about the store."""
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == logger and r.levelno >= logging.WARNING and "store" in r.getMessage()]


def test_a_store_outage_is_said_once_and_when_it_ends_not_at_each_retry(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture,
) -> None:
    # each retry (every second) was one more "store unavailable (...) while handling job"
    # error line for as long as the store was down, and nothing said when it answered again
    server = serve(env.config())
    accept, tries = server.store.accept, []

    def down_three_times(request: Any, owner: str, lease_s: float) -> bool:
        tries.append(request.job_id)
        if len(tries) <= 3:
            raise sqlite3.OperationalError("disk I/O error")
        return accept(request, owner, lease_s)

    server.store.accept = down_three_times  # type: ignore[method-assign]
    env.watcher.submit(_job("lab/outage", [env.slides / "b11.jpg"]))
    assert env.watcher.wait("lab/outage", {"done", "failed"}, timeout_s=60)["state"] == "done"
    said = _store_said(caplog, "appliance.pathology.server")
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert ": a read or write failed (disk I/O error" in said[0][1]
    assert "stay unacknowledged on the broker" in said[0][1]
    assert said[1][1].startswith(f"the SQLite store {env.tmp_path / 'state'}")
    assert " answers again after 3 failed tries in " in said[1][1]


def test_a_job_sent_while_the_store_s_disk_is_full_is_said_once_and_done_once_space_returns(
    env: Env, caplog: pytest.LogCaptureFixture,
) -> None:
    with small_tmpfs(env.tmp_path / "disk", size="2m") as disk:
        path = disk / "store.sqlite3"
        config = env.config()
        config = config.model_copy(update={"store": config.store.model_copy(
            update={"url": f"sqlite:///{path}"})})
        with serving(config) as server:
            accept, tries = server.store.accept, []

            def counted(request: Any, owner: str, lease_s: float) -> bool:
                tries.append(request.job_id)
                return accept(request, owner, lease_s)

            server.store.accept = counted  # type: ignore[method-assign]
            time.sleep(0.3)  # SUBACK
            filler = fill(disk)
            env.watcher.submit(_job("lab/full-store", [env.slides / "b11.jpg"]))
            wait_until(lambda: len(tries) >= 4, 20, poll_s=0.1)
            assert len(tries) >= 4  # tried again each second, never acknowledged
            filler.unlink()
            final = env.watcher.wait("lab/full-store", {"done", "failed"}, timeout_s=60)
    assert final["state"] == "done"
    said = _store_said(caplog, "appliance.pathology.server")
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert f"the disk holding {path} is full" in said[0][1]
    assert " answers again after " in said[1][1]


def test_leases_the_store_fails_to_renew_are_said_once_and_when_it_renews_them_again(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture,
) -> None:
    # housekeeping (every 0.5 s) said "store unavailable (...) while handling housekeeping"
    server = serve(env.config())
    renew, tries = server.store.renew, []

    def down_three_times(owner: str, job_ids: list[str], lease_s: float) -> set[str]:
        tries.append(owner)
        if len(tries) <= 3:
            raise sqlite3.OperationalError("database is locked")
        return renew(owner, job_ids, lease_s)

    server.store.renew = down_three_times  # type: ignore[method-assign]
    wait_until(lambda: len(tries) >= 5, 20, poll_s=0.1)
    said = _store_said(caplog, "appliance.pathology.server")
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert ": a read or write failed (database is locked" in said[0][1]
    assert " answers again after 3 failed tries in " in said[1][1]


def test_a_slide_result_the_store_fails_to_take_is_said_once_and_when_it_is_stored(
    env: Env, serve: Servers, caplog: pytest.LogCaptureFixture,
) -> None:
    # the finisher said "store unavailable (...); slide 0 of job J waits" every second
    server = serve(env.config())
    store_slide, tries = server.finisher.store.store_slide, []

    def down_three_times(row: dict[str, Any]) -> bool:
        tries.append(row["slide_index"])
        if len(tries) <= 3:
            raise sqlite3.OperationalError("database or disk is full")
        return store_slide(row)

    server.finisher.store.store_slide = down_three_times  # type: ignore[method-assign]
    env.watcher.submit(_job("lab/slide-outage", [env.slides / "b11.jpg"]))
    assert env.watcher.wait("lab/slide-outage", {"done", "failed"}, timeout_s=60)["state"] == "done"
    said = _store_said(caplog, "appliance.pathology.finisher")
    assert [level for level, _ in said] == ["ERROR", "WARNING"], said
    assert ": storing a slide result failed (database or disk is full" in said[0][1]
    assert " answers again after 3 failed tries in " in said[1][1]


def test_a_long_store_outage_is_said_again_once_a_minute_by_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    now_s = [0.0]
    outage = StoreOutage(f"sqlite:///{tmp_path / 'store.sqlite3'}", server_module.log,
                         server_module.SERVER_OUTAGE, clock=lambda: now_s[0])
    for _ in range(61):  # housekeeping's retries, each half second, for 30 s
        outage.failed(sqlite3.OperationalError("disk I/O error"))
        now_s[0] += 0.5
    assert len(caplog.records) == 1
    for _ in range(100):  # and 50 s more
        outage.failed(sqlite3.OperationalError("disk I/O error"))
        now_s[0] += 0.5
    outage.passed()
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.pathology.server"]
    assert len(said) == 3, said
    assert "reads or writes still fail after 121 tries in 60 s (disk I/O error)" in said[1]
    assert said[2].endswith("answers again after 161 failed tries in 80 s")


def test_a_finisher_whose_store_cannot_be_opened_at_start_waits_for_it(
    env: Env, serve: Servers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The finisher's own connection was opened as the server started: a store that could not
    be reached at that moment raised out of the server's run, and the server was gone. Now it
    is an outage of the finisher (said once, tried again each second): once the store answers,
    the job is done."""
    tries: list[int] = []

    def unreachable_twice(server: PathologyServer) -> PathologyStore:
        tries.append(1)
        if len(tries) <= 2:
            raise StoreError("cannot connect to the test store: it is not there yet")
        return _store(env.tmp_path)

    monkeypatch.setattr(PathologyServer, "store_for_thread", unreachable_twice)
    caplog.set_level(logging.WARNING, logger="appliance.pathology.finisher")
    serve(env.config())
    env.watcher.submit(_job("lab/late-store", [env.slides / "b11.jpg"]))
    final = env.watcher.wait("lab/late-store", {"done", "failed", "cancelled"})
    assert final["state"] == "done"
    said = [record.getMessage() for record in caplog.records
            if record.name == "appliance.pathology.finisher"]
    assert len(said) == 2, said
    assert "opening the slide finisher's connection failed (cannot connect to the test store: " \
           "it is not there yet)" in said[0]
    assert "answers again after 2 failed tries" in said[1]


def _running(pid: int) -> bool:
    """Whether a process of that id is there (a worker ended is reaped by its fork server)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
