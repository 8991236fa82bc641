"""Two kiosks with one device id (a cloned SD card) on a real mosquitto: the later one holds
back (off the broker, not measuring, its screen and journal saying why) and the first keeps
delivering; a kiosk killed with -9 leaves a presence that stops nobody."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import appliance.edge.daemon as daemon_module
from appliance.config import config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.testing import ResultCollector, fast_daemon, wait_until
from appliance.transport.broker import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
PREFIX = "dupid"
DEVICE = {"id": "kiosk-twin", "site": "shop-1"}
EDGE = {"synthetic_fps": 60, "reconnect_initial_s": 0.2, "reconnect_cap_s": 1.0}
pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as started:
        yield started


@pytest.fixture
def collector(broker: PrivateBroker) -> Iterator[ResultCollector]:
    received = ResultCollector(broker.host, broker.port, f"{PREFIX}/+/+/result", "dupid-office")
    yield received
    received.close()


def start_kiosk(tmp_path: Path, port: int, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The first kiosk: the real daemon wiring as its own process (appliance/edge/testing.py)."""
    config, log_path = tmp_path / f"{name}.yaml", tmp_path / f"{name}.log"
    config.write_text(
        f"device: {{id: {DEVICE['id']}, site: {DEVICE['site']}}}\n"
        "camera: {source: synthetic, limit: null}\n"
        f"mqtt: {{port: {port}, topic_prefix: {PREFIX}}}\n"
        f"state_dir: {tmp_path / name}\n"
        "edge: {synthetic_fps: 60, reconnect_initial_s: 0.2, reconnect_cap_s: 1.0}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "appliance.edge.testing", str(config)],
                                   cwd=REPO, stdout=log, stderr=log, env=env)
    return process, log_path


def committed(log_path: Path) -> set[str]:
    return set(re.findall(r"measurement ([0-9a-f-]{36}) committed", log_path.read_text()))


def takeovers(log_path: Path) -> int:
    return log_path.read_text().count("lost the broker")


def clone(tmp_path: Path, port: int, state: str, **edge: Any) -> EdgeDaemon:
    """A second kiosk with the same device id, in this test's process."""
    data = {"device": DEVICE, "camera": {"source": "synthetic", "limit": None},
            "mqtt": {"port": port, "topic_prefix": PREFIX},
            "state_dir": str(tmp_path / state), "edge": {**EDGE, **edge}}
    return fast_daemon(config_from_mapping(data, "test", environ={}))


def run_in_thread(daemon: EdgeDaemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return thread


def stop(process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(how)
        process.wait(15)


def test_the_later_kiosk_holds_back_and_the_first_keeps_delivering(
    broker: PrivateBroker, collector: ResultCollector, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, first_log = start_kiosk(tmp_path, broker.port, "first")
    later = clone(tmp_path, broker.port, "later")
    try:
        assert wait_until(lambda: len(committed(first_log) & collector.ids()) >= 3, 30)
        with caplog.at_level(logging.ERROR):
            thread = run_in_thread(later)
            assert wait_until(later.presence.held.is_set, 30), first_log.read_text()[-2000:]
        said = " ".join(r.getMessage() for r in caplog.records if "in use by" in r.getMessage())
        assert "device id kiosk-twin (client id edge-shop-1-kiosk-twin) is in use" in said
        assert f"(pid {first.pid})" in said
        assert "came later" in said
        assert wait_until(lambda: later.display.state.snapshot()["guidance"]
                          == "guide_duplicate_device", 5)
        assert later.status.text().startswith("HELD BACK: device id kiosk-twin in use by host")
        assert later.status.metrics()["appliance_edge_held_back"] == 1.0
        back = committed(first_log)  # the first has its connection back once these arrive
        assert wait_until(lambda: len(committed(first_log) - back) >= 2, 30)
        assert wait_until(lambda: committed(first_log) - back <= collector.ids(), 15)
        taken, measured = takeovers(first_log), later.committer.committed
        before = committed(first_log)
        assert wait_until(lambda: len(committed(first_log) - before) >= 10, 30)
        fresh = committed(first_log) - before
        assert wait_until(lambda: fresh <= collector.ids(), 15)  # the first keeps delivering
        assert takeovers(first_log) == taken  # nobody took its connection meanwhile
        assert later.committer.committed == measured
        assert not later.link.connected
        # the first says so once it has seen the later one alive on two connections (its
        # first and a look's), which a loaded host may bring after the checks above
        assert wait_until(lambda: "it came later and holds back" in first_log.read_text(),
                          30), first_log.read_text()[-2000:]
    finally:
        later.request_stop()
        stop(first)
    thread.join(10)
    catalogue = json.loads((REPO / "appliance/edge/screen_static/messages.json").read_text())
    assert "device ID" in catalogue["en"]["guide_duplicate_device"]
    assert "機器ID" in catalogue["ja"]["guide_duplicate_device"]


def test_a_kiosk_killed_with_sigkill_leaves_a_presence_that_stops_nobody(
    broker: PrivateBroker, collector: ResultCollector, tmp_path: Path,
) -> None:
    """Its last presence stays retained (there is no will for it) and never changes."""
    killed, killed_log = start_kiosk(tmp_path, broker.port, "kiosk")
    try:
        # a result of its own arrived: it was connected, its presence published first
        assert wait_until(lambda: bool(committed(killed_log) & collector.ids()), 30)
    finally:
        stop(killed, signal.SIGKILL)
    restarted = clone(tmp_path, broker.port, "kiosk")  # the same kiosk, started again
    thread = run_in_thread(restarted)
    try:
        assert wait_until(lambda: restarted.committer.committed >= 10, 30)
        assert wait_until(restarted.link.idle, 15)  # every result confirmed
        assert len(restarted.presence.own.found) == 1  # it heard the dead one's presence
        assert not restarted.presence.held.is_set()
        assert restarted.status.metrics()["appliance_edge_held_back"] == 0.0
        assert restarted.presence.rival is None
    finally:
        restarted.request_stop()
    thread.join(10)


def test_a_kiosk_that_held_back_measures_again_once_the_other_stopped(
    broker: PrivateBroker, collector: ResultCollector, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the first has stopped, the later one's look and then its probe window find nobody
    alive, and it measures again. Both last a second here (ten at least in a kiosk: the daemon's
    PROBE_FLOOR_S): with nobody left to show itself, a longer wait would show nothing more."""
    monkeypatch.setattr(daemon_module, "PROBE_FLOOR_S", 1.0)
    first, first_log = start_kiosk(tmp_path, broker.port, "first")
    later = clone(tmp_path, broker.port, "later", duplicate_retry_s=1, reconnect_cap_s=0.25)
    thread = None
    try:
        assert wait_until(lambda: bool(committed(first_log) & collector.ids()), 30)
        thread = run_in_thread(later)
        assert wait_until(later.presence.held.is_set, 30)
        stop(first)  # a clean stop clears its presence
        assert wait_until(lambda: not later.presence.held.is_set(), 30)
        assert wait_until(lambda: later.committer.committed >= 3, 30)
        assert wait_until(later.link.idle, 15)
    finally:
        later.request_stop()
        stop(first)
    if thread is not None:
        thread.join(10)



def test_a_held_back_kiosk_looks_again_without_dropping_the_live_kiosks_connection(
    broker: PrivateBroker, collector: ResultCollector, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each look used to connect with the shared client id, so the broker ended the live
    kiosk's connection (two or three times a look); a look now asks under a client id of its
    own, and the live kiosk answers it."""
    first, first_log = start_kiosk(tmp_path, broker.port, "first")
    later = clone(tmp_path, broker.port, "later", duplicate_retry_s=1)
    thread = None
    try:
        assert wait_until(lambda: bool(committed(first_log) & collector.ids()), 30)
        with caplog.at_level(logging.INFO, logger="appliance.transport.presence"):
            thread = run_in_thread(later)
            assert wait_until(later.presence.held.is_set, 30)
            back = committed(first_log)  # the first has its connection back once these arrive
            assert wait_until(lambda: len(committed(first_log) - back) >= 2, 30)
            taken, looks = takeovers(first_log), looked(caplog)
            measured = later.committer.committed
            assert wait_until(lambda: looked(caplog) >= looks + 3, 30)
            assert takeovers(first_log) == taken, first_log.read_text()[-2000:]
            assert later.presence.held.is_set()
            assert "is still in use by host" in caplog.text
        assert later.committer.committed == measured
        assert not later.link.connected
    finally:
        later.request_stop()
        stop(first)
    if thread is not None:
        thread.join(10)


def looked(caplog: pytest.LogCaptureFixture) -> int:
    return caplog.text.count("looking again whether another kiosk still uses it")
