"""The daemon replaying a folder of saved captures: one result per file whatever restarts."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.capture.replayed import FileStamp
from appliance.capture.sources import Frame
from appliance.config import config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.pipeline import measurement_id_for
from appliance.edge.testing import ResultCollector, fast_daemon, wait_until
from appliance.synthetic.camera import textured_skin
from appliance.transport.broker import PrivateBroker
from appliance.transport.payloads import Result
from tests.hung_share import HungShare

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker
UUID7 = Result.model_fields["measurement_id"].metadata[0].pattern


def _save_captures(folder: Path, names: list[str]) -> None:
    """Each name its own picture (one picture under two names is measured once)."""
    folder.mkdir(exist_ok=True)
    skin = textured_skin(11)
    for name in names:
        assert cv2.imwrite(str(folder / name), skin(zlib.crc32(name.encode()))[..., ::-1])


def _expected_ids(device_id: str, folder: Path) -> set[str]:
    """The measurement id each saved file gets, whenever and however often it is measured."""
    ids = set()
    for path in folder.glob("*.jpg"):
        info = path.stat()
        stamp = FileStamp(path.name, info.st_size, info.st_mtime_ns)
        ids.add(measurement_id_for(device_id, Frame(np.zeros(1), 0, stamp=stamp)))
    return ids


def _run(daemon: EdgeDaemon) -> list[int]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    thread.join(60)
    return codes


def test_a_saved_file_keeps_its_measurement_id_when_measured_again(tmp_path: Path) -> None:
    _save_captures(tmp_path, ["0001.jpg"])
    info = (tmp_path / "0001.jpg").stat()
    stamp = FileStamp("0001.jpg", info.st_size, info.st_mtime_ns)
    frame = Frame(np.zeros(1), 1, stamp=stamp)
    first = measurement_id_for("kiosk-a", frame)
    assert measurement_id_for("kiosk-a", Frame(np.zeros(1), 2, stamp=stamp)) == first
    assert re.fullmatch(UUID7, first)
    assert measurement_id_for("kiosk-b", frame) != first  # another kiosk's file of that name
    rewritten = FileStamp("0001.jpg", info.st_size + 1, info.st_mtime_ns)
    assert measurement_id_for("kiosk-a", Frame(np.zeros(1), 1, stamp=rewritten)) != first


def test_a_restarted_daemon_measures_only_the_files_it_has_not_measured(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    folder = tmp_path / "captures"
    _save_captures(folder, ["0001.jpg", "0002.jpg", "0003.jpg"])
    received = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )

    def daemon(limit: int) -> EdgeDaemon:
        data = {
            "device": {"id": "kiosk-dir", "site": "lab"},
            "camera": {"source": "directory", "path": str(folder), "limit": limit},
            "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port,
                     "topic_prefix": topic_prefix},
            "state_dir": str(tmp_path / "state"),
        }
        return fast_daemon(config_from_mapping(data, "test", environ={}))

    assert _run(daemon(limit=3)) == [0]
    _save_captures(folder, ["0004.jpg"])  # saved while the daemon was stopped
    restarted = daemon(limit=1)
    assert _run(restarted) == [0]
    assert restarted.analysis.measurements == 1  # 0004 only: 0001..0003 were not read again
    assert received.wait_for(4, timeout_s=10)
    assert received.ids() == _expected_ids("kiosk-dir", folder)
    received.close()


def _committed_ids(log_text: str) -> list[str]:
    return re.findall(r"measurement ([0-9a-f-]{36}) committed", log_text)


def _start_daemon(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "appliance.edge.testing", str(config)],
            cwd=REPO, stdout=log, stderr=log, env=env,
        )


@pytest.mark.slow
def test_sigkill_while_replaying_then_restart_gives_each_file_one_result(
    private_broker: PrivateBroker, tmp_path: Path
) -> None:
    folder = tmp_path / "captures"
    _save_captures(folder, [f"{index:04d}.jpg" for index in range(30)])
    config = tmp_path / "edge.yaml"
    config.write_text(
        "device: {id: kiosk-kill, site: test}\n"
        f"camera: {{source: directory, path: {folder}}}\n"
        f"mqtt: {{port: {private_broker.port}, topic_prefix: dirkill}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    received = ResultCollector(
        private_broker.host, private_broker.port, "dirkill/+/+/result", "collector-dirkill"
    )
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    daemon = _start_daemon(config, first_log)
    try:
        assert wait_until(lambda: len(_committed_ids(first_log.read_text())) >= 10, 60)
    finally:
        daemon.send_signal(signal.SIGKILL)  # in the middle of the folder
        daemon.wait(10)
    before = _committed_ids(first_log.read_text())
    restarted = _start_daemon(config, second_log)
    try:
        assert received.wait_for(30, timeout_s=60), second_log.read_text()[-2000:]
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(10)
    after = _committed_ids(second_log.read_text())
    expected = _expected_ids("kiosk-kill", folder)
    assert received.ids() == expected  # every file's result, under the file's own id
    # the logs name no other id (the kill may fall between a commit and its log line, so the
    # first run's log can miss one the collector got; that file is then not measured again)
    assert set(before) | set(after) <= expected
    assert len(before) == len(set(before))  # nothing measured twice within a run
    assert len(after) == len(set(after))
    # a file is recorded before its "committed" line is logged: no file the first run logged
    # is measured again (a kill between the outbox commit and the record would measure one
    # again, unlogged, under the same id)
    assert not set(after) & set(before)
    received.close()


def test_a_hung_share_keeps_the_watchdog_fed_the_camera_offline_and_recovers(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The captures folder on a share that stops answering (every stat and listing blocks):
    the capture thread blocked with it, the watchdog pings stopped and systemd killed the kiosk
    and restarted it into the same hang, again and again."""
    folder = tmp_path / "share"
    _save_captures(folder, ["0001.jpg"])
    notify = _NotifySocket(tmp_path / "notify.sock", monkeypatch)
    share = HungShare(folder, monkeypatch)
    daemon = fast_daemon(config_from_mapping({
        "device": {"id": "kiosk-share", "site": "lab"},
        "camera": {"source": "directory", "path": str(folder)},
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "topic_prefix": topic_prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"watchdog_stall_s": 2.4, "camera_reopen_cap_s": 1.0},  # answer_s 0.8 s
    }, "test", environ={}))
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: daemon.committer.committed == 1, 20)
        with caplog.at_level(logging.WARNING, logger="appliance.capture.supervisor"):
            share.hang()
            for _second in range(5):  # twice watchdog_stall_s: pinged all along
                assert notify.pinged_within(1.0)
                time.sleep(0.8)
            assert daemon.capture.failed
        assert daemon.stalled_threads() == []
        assert daemon.display.state.snapshot()["guidance"] == "guide_camera_offline"
        assert any(f"camera offline: {folder}: still no answer" in r.getMessage()
                   for r in caplog.records)
        assert share.blocked == 1  # one thread waits for the share
        share.answer()
        _save_captures(folder, ["0002.jpg"])
        assert wait_until(lambda: daemon.committer.committed == 2, 20)
        assert daemon.capture.online
    finally:
        share.answer()
        daemon.request_stop()
        runner.join(10)
        notify.close()


class _NotifySocket:
    """systemd's notify socket as the daemon sees it, read all the time as systemd reads it (a
    full one drops the daemon's messages)."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.1)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages += self._socket.recv(4096).decode().splitlines()
            except TimeoutError:
                continue

    def pinged_within(self, seconds: float) -> bool:
        """Whether a WATCHDOG=1 comes within ``seconds`` from now."""
        pinged = self.messages.count("WATCHDOG=1")
        return wait_until(lambda: self.messages.count("WATCHDOG=1") > pinged, seconds)

    def close(self) -> None:
        """Stop reading and close the socket."""
        self._closed.set()
        self._reader.join(1.0)
        self._socket.close()
