"""The edge daemon end to end on the machine's mosquitto, with the fast fake analyser."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance.capture.synthetic import CustomerScript
from appliance.config import Config, config_from_mapping
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.measure import Measurement
from appliance.edge.service import reload_config
from appliance.edge.testing import (
    FIXED_FEATURES,
    FlakySource,
    ResultCollector,
    fast_daemon,
    fast_source,
    subscribed_since,
    wait_until,
)
from appliance.transport.broker import free_port
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.outbox import Outbox
from appliance.transport.payloads import new_measurement_id

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def site_of(prefix: str) -> str:
    """The test's own site: the kiosk's MQTT client id (edge-SITE-DEVICE) is then its own too,
    where one shared by tests running at once (xdist, other checkouts on the same broker) made
    the broker take each one's session over by the other's."""
    return f"lab-{prefix[-10:]}"


def kiosk_topic(prefix: str) -> str:
    """The test kiosk's topic root."""
    return f"{prefix}/{site_of(prefix)}/kiosk-t"


def edge_config(tmp_path: Path, broker: Any, prefix: str, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "device": {"id": "kiosk-t", "site": site_of(prefix)},
        "camera": {"source": "synthetic", "limit": 3},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"synthetic_fps": 60},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_mapping(data, "test", environ={})


def run_in_thread(daemon: EdgeDaemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    return thread, codes




def test_limit_run_publishes_each_result_once_and_exits_0_after_all_pubacks(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    collector = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    daemon = fast_daemon(edge_config(tmp_path, mqtt_broker, topic_prefix))
    thread, codes = run_in_thread(daemon)
    thread.join(30)
    assert codes == [0]
    assert daemon.outbox.depth() == 0
    assert collector.wait_for(3, timeout_s=5)
    assert len(collector.ids()) == 3
    shown = json.loads((tmp_path / "state" / "screen" / "last_result.json").read_text())
    assert shown["measurement_id"] in collector.ids()
    assert shown["device_id"] == "kiosk-t"
    # the daemon has stopped: its last status, left by the clean stop, is on its way
    assert wait_until(lambda: bool(collector.statuses) and
                      collector.statuses[-1].state == "offline", 5), collector.statuses
    assert collector.statuses[0].state == "online"
    collector.close()


def test_a_clean_stop_leaves_the_status_of_its_stop_not_the_will_built_at_its_start(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    collector = ResultCollector(
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    daemon = fast_daemon(edge_config(tmp_path, mqtt_broker, topic_prefix))
    thread, codes = run_in_thread(daemon)
    thread.join(30)
    assert codes == [0]
    assert wait_until(lambda: bool(collector.statuses) and
                      collector.statuses[-1].state == "offline", 5)
    last = collector.statuses[-1]
    # the back office keeps a device's numbers from its newest status: the will, dated at
    # the start, lost to the last "online" one (published before the last ack: depth 1)
    assert last.at >= max(status.at for status in collector.statuses)
    assert last.outbox_depth == 0
    assert last.dropped == 0
    assert last.camera == "online"  # as it last was (the fleet: "last said online, 5s ago")
    collector.close()


def test_cmd_measure_measures_again_while_the_scope_rests(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    resting = fast_source(config, CustomerScript(approach_frames=1, rest_frames=10**6))
    daemon = fast_daemon(config, source=resting)
    thread, _codes = run_in_thread(daemon)
    try:
        assert wait_until(lambda: daemon.committer.committed >= 1, 10)
        # one contact, one result: the scope rests on, and the frames that would have made a
        # second burst twice over are judged without one being measured
        _assert_measured_after_two_more_bursts(daemon, config.edge.burst_frames, 1)
        assert daemon.committer.committed == 1
        sender = new_client(LinkSettings(mqtt_broker.host, mqtt_broker.port, ""))
        sender.connect(mqtt_broker.host, mqtt_broker.port)
        sender.loop_start()
        sender.publish(f"{kiosk_topic(topic_prefix)}/cmd/measure", b"{}", qos=1).wait_for_publish()
        sender.disconnect()
        sender.loop_stop()
        assert wait_until(lambda: daemon.committer.committed >= 2, 10)
        _assert_measured_after_two_more_bursts(daemon, config.edge.burst_frames, 2)
        assert daemon.committer.committed == 2
    finally:
        daemon.request_stop()
        thread.join(10)


def _assert_measured_after_two_more_bursts(daemon: EdgeDaemon, burst: int, count: int) -> None:
    """Once the analysis has judged two bursts' worth of frames more than it had, it has
    measured ``count`` results (it counts one before it judges its next frame)."""
    judged = daemon.analysis.frames_assessed
    assert wait_until(lambda: daemon.analysis.frames_assessed >= judged + 2 * burst, 10)
    assert daemon.analysis.measurements == count


def test_a_command_on_a_topic_of_60000_characters_is_logged_cut_short(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A topic may be 65,535 bytes long: one journal line per such command would be as long."""
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    daemon = fast_daemon(config)
    with caplog.at_level(logging.WARNING, logger="appliance.edge.daemon"):
        started_s = time.monotonic()
        thread, _codes = run_in_thread(daemon)
        try:
            # its cmd/# subscribed: a command before it reaches no subscriber (seen under load)
            assert wait_until(lambda: subscribed_since(daemon, started_s), 10)
            sender = new_client(LinkSettings(mqtt_broker.host, mqtt_broker.port, ""))
            sender.connect(mqtt_broker.host, mqtt_broker.port)
            sender.loop_start()
            topic = f"{kiosk_topic(topic_prefix)}/cmd/" + "x" * 60_000
            sender.publish(topic, b"{}", qos=1).wait_for_publish(5)
            sender.disconnect()
            sender.loop_stop()
            assert wait_until(lambda: bool(caplog.records), 10)
        finally:
            daemon.request_stop()
            thread.join(10)
    ignored = caplog.records[0].getMessage()
    assert "unknown command topic" in ignored
    assert f"{kiosk_topic(topic_prefix)}/cmd/xxx" in ignored
    assert len(ignored) < 500
    assert "more characters" in ignored


def _publish(broker: Any, topic: str, payload: bytes, retain: bool = False) -> None:
    sender = new_client(LinkSettings(broker.host, broker.port, ""))
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    sender.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    sender.disconnect()
    sender.loop_stop()


def test_a_retained_command_is_not_carried_out_at_each_connect(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A command acts when it is sent: one left retained by mistake would force a measurement
    at every start and every reconnect of the kiosk."""
    topic = f"{kiosk_topic(topic_prefix)}/cmd/measure"
    _publish(mqtt_broker, topic, b"{}", retain=True)
    daemon = fast_daemon(edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None}))
    try:
        with caplog.at_level(logging.INFO, logger="appliance.edge.daemon"):
            thread, _codes = run_in_thread(daemon)
            assert wait_until(lambda: daemon.link.connected, 10)
            _publish(mqtt_broker, f"{kiosk_topic(topic_prefix)}/cmd/sent-now", b"{}")
            assert wait_until(lambda: any("sent-now" in r.getMessage() for r in caplog.records),
                              10)  # the command sent after the connect: carried out
    finally:
        daemon.request_stop()
        thread.join(10)
        _publish(mqtt_broker, topic, b"", retain=True)  # clears the retained message
    assert not [r for r in caplog.records if "measurement requested" in r.getMessage()]


def test_the_screen_says_the_camera_is_offline_and_follows_the_gate_again_once_it_is_back(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """Unplugged, the scope left the customer a frozen preview and the last guidance."""
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None},
                         edge={"camera_reopen_cap_s": 0.5})
    flaky = FlakySource(fast_source(config))
    daemon = fast_daemon(config, source=flaky)
    thread, _codes = run_in_thread(daemon)

    def guidance() -> str | None:
        value: str | None = daemon.display.state.snapshot()["guidance"]
        return value

    try:
        assert wait_until(lambda: daemon.committer.committed >= 1, 10)
        flaky.failing.set()  # unplugged
        assert wait_until(lambda: guidance() == "guide_camera_offline", 10)
        flaky.failing.clear()  # plugged in again
        assert wait_until(lambda: guidance() not in (None, "guide_camera_offline"), 10)
    finally:
        daemon.request_stop()
        thread.join(10)
    catalogue = json.loads((REPO / "appliance/edge/screen_static/messages.json").read_text())
    assert all("guide_camera_offline" in catalogue[language] for language in ("en", "ja"))


class _SlowToOpen:
    """A camera whose first open takes until ``opened`` is set (a UVC device settling)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.description = inner, "slow camera"
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.wait(10)
        self.inner.open()

    def read(self) -> Any:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def _supervisor_ticks(daemon: EdgeDaemon) -> list[str | None]:
    """What the supervisor tells the screen from now on, one entry a tick (it says why the
    kiosk cannot measure, or None, on every tick)."""
    told: list[str | None] = []
    state = daemon.display.state
    tell = state.set_out_of_order

    def recorded(why: str | None, staff_told: bool = False) -> None:
        told.append(why)
        tell(why, staff_told)

    state.set_out_of_order = recorded  # type: ignore[method-assign]
    return told


def test_the_screen_does_not_call_a_camera_that_is_still_opening_offline(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """At every start the camera is not online until its first open returns: that is no
    failure, and the customer was told the microscope was not responding."""
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    slow = _SlowToOpen(fast_source(config))
    daemon = fast_daemon(config, source=slow)
    thread, _codes = run_in_thread(daemon)
    try:
        assert wait_until(lambda: daemon.status.text().startswith("camera offline"), 5)
        ticks = _supervisor_ticks(daemon)
        assert wait_until(lambda: len(ticks) >= 5, 10)  # several while the camera opens
        assert "guide_camera_offline" not in ticks
        assert daemon.display.state.snapshot()["guidance"] != "guide_camera_offline"
        slow.opened.set()
        assert wait_until(lambda: daemon.capture.online, 10)
    finally:
        slow.opened.set()
        daemon.request_stop()
        thread.join(10)


def test_a_measurement_that_fails_is_said_on_screen_until_the_next_contact(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    """The screen stayed on 'analysing' for a result that would never come."""
    calls: list[int] = []

    def fails_first(rgb: Any, um_per_px: float) -> Measurement:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a frame the analysis cannot take")
        return Measurement(FIXED_FEATURES)

    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None},
                         edge={"synthetic_fps": 15})
    daemon = EdgeDaemon(config, source=fast_source(config), analyzer=fails_first)
    thread, _codes = run_in_thread(daemon)
    try:
        assert wait_until(
            lambda: daemon.display.state.snapshot()["guidance"] == "guide_measure_again", 20)
        assert daemon.analysis.failures == 1
        assert wait_until(lambda: daemon.committer.committed >= 1, 20)  # the next customer
    finally:
        daemon.request_stop()
        thread.join(10)
    catalogue = json.loads((REPO / "appliance/edge/screen_static/messages.json").read_text())
    assert all("guide_measure_again" in catalogue[language] for language in ("en", "ja"))


def test_metrics_endpoint_reports_counters_on_localhost(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    port = free_port()
    config = edge_config(
        tmp_path, mqtt_broker, topic_prefix, camera={"limit": None}, edge={"metrics_port": port}
    )
    daemon = fast_daemon(config)
    thread, _codes = run_in_thread(daemon)
    try:
        wait_until(lambda: daemon.committer.committed >= 2, 10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        daemon.request_stop()
        thread.join(10)
    values = dict(line.split() for line in text.splitlines() if not line.startswith("#"))
    assert float(values["appliance_edge_measurements_total"]) >= 2
    assert float(values["appliance_edge_camera_online"]) == 1.0
    assert "# TYPE appliance_edge_outbox_depth gauge" in text


def test_a_metrics_port_already_taken_is_logged_and_the_kiosk_delivers_without_metrics(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    collector = ResultCollector(  # confirms each result, as the back office does
        mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/#", f"c-{topic_prefix[-10:]}"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = edge_config(tmp_path, mqtt_broker, topic_prefix, edge={"metrics_port": port})
        with caplog.at_level(logging.ERROR):
            thread, codes = run_in_thread(fast_daemon(config))
            thread.join(30)
    collector.close()
    assert codes == [0]  # camera.limit reached and every result confirmed
    refusals = [r.getMessage() for r in caplog.records if "metrics" in r.getMessage()]
    assert len(refusals) == 1
    assert f"127.0.0.1:{port}" in refusals[0]


def test_sigterm_stops_within_5s_and_keeps_unsent_results(tmp_path: Path) -> None:
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(
        f"mqtt: {{port: {free_port()}}}\nstate_dir: {tmp_path / 'state'}\n"
        "edge: {synthetic_fps: 60}\n"
    )
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "appliance.edge.testing", str(config_path)],
            cwd=REPO, stdout=log, stderr=log,
        )
    deadline_s = time.monotonic() + 30
    while log_path.read_text().count("committed to the outbox") < 3:
        assert time.monotonic() < deadline_s, log_path.read_text()[-2000:]
        time.sleep(0.05)
    daemon.send_signal(signal.SIGTERM)
    sent_s = time.monotonic()
    assert daemon.wait(10) == 0
    assert time.monotonic() - sent_s < 5.0
    committed = log_path.read_text().count("committed to the outbox")
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == committed


def test_sighup_reload_refuses_a_broken_config_and_names_restart_only_changes(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = fast_daemon(edge_config(tmp_path, mqtt_broker, topic_prefix))
    config_path = tmp_path / "edge.yaml"
    config_path.write_text("edge: {burst_frames: 0}\n")
    with caplog.at_level(logging.INFO):
        reload_config(daemon, config_path)
        assert "reload refused" in caplog.text
        assert "edge.burst_frames" in caplog.text
        config_path.write_text(f"mqtt: {{port: {mqtt_broker.port}}}\n")
        reload_config(daemon, config_path)
    assert "take effect after a restart" in caplog.text
    assert daemon.config.edge.synthetic_fps == 60  # the running config is unchanged
    daemon.outbox.close()


def test_edge_command_with_a_missing_config_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "edge", "--config", str(missing)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "nope.yaml" in done.stderr


@pytest.mark.parametrize("section", [
    "model: {path: missing.onnx}",
    "mqtt: {tls: {enabled: true, ca_file: missing-ca.crt}}",
    "screen: {reference_file: missing-ranges.json}",
])
def test_the_daemon_refuses_what_config_check_refuses_with_2(tmp_path: Path, section: str) -> None:
    """So systemd does not restart it (RestartPreventExitStatus=2): the unit has no
    ExecStartPre check, whose failure systemd restarts whatever its status."""
    config = tmp_path / "edge.yaml"
    config.write_text(f"{section}\nstate_dir: {tmp_path / 'state'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "edge", "--config", str(config)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "missing" in done.stderr


def test_a_crashed_screen_thread_ends_the_daemon_with_1_for_a_restart(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The customer's screen would stay on 'analysing' for good while the kiosk measured on."""
    def broken_picture() -> Any:
        raise KeyError("a bug in the screen's picture")

    def analyzer(rgb: Any, um_per_px: float) -> Measurement:
        return Measurement(FIXED_FEATURES, marked_frame=broken_picture)

    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    daemon = EdgeDaemon(config, source=fast_source(config), analyzer=analyzer)
    with caplog.at_level(logging.ERROR, logger="appliance.edge.daemon"):
        thread, codes = run_in_thread(daemon)
        thread.join(20)
    assert codes == [1]
    assert any("KioskScreen ended unexpectedly" in r.getMessage() for r in caplog.records)


def test_a_crashed_analysis_thread_ends_the_daemon_with_1_for_a_restart(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    def broken_analyzer(rgb: Any, um_per_px: float) -> Any:
        raise KeyError("a bug in the analysis")

    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    daemon = EdgeDaemon(config, source=fast_source(config), analyzer=broken_analyzer)
    thread, codes = run_in_thread(daemon)
    thread.join(20)
    assert codes == [1]


def test_cmd_resend_has_the_results_the_back_office_confirmed_since_wait_again(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    # the daemon keeps what the back office confirmed (edge.keep_confirmed_h, 48 h by default)
    # and a resend request has those confirmed since its time wait again, to be sent again
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    outbox = Outbox(Path(config.state_dir) / "outbox.sqlite3", keep_confirmed_s=48 * 3600.0)
    outbox.add_many([(f"kept-{i}", f"{kiosk_topic(topic_prefix)}/result", b"{}")
                     for i in range(4)])
    outbox.remove_ids([f"kept-{i}" for i in range(4)])  # as the back office's ack does
    outbox.close()
    # the scope stays lifted (a dark field): nothing is measured, and each frame is cheap (an
    # approach's blur grows with its length: one of 10**6 frames blurs by sigma ~6e6 px, hours
    # of CPU for one frame, in a capture thread that no stop reaches meanwhile)
    resting = fast_source(config, CustomerScript(approach_frames=0, rest_frames=0,
                                                 lift_frames=10**6))
    daemon = fast_daemon(config, source=resting)
    assert (daemon.outbox.depth(), daemon.outbox.kept_confirmed()) == (0, 4)
    started_s = time.monotonic()
    thread, _codes = run_in_thread(daemon)
    try:
        # the SUBACK of its cmd/# too: a request before it reaches no subscriber (seen under load)
        assert wait_until(lambda: subscribed_since(daemon, started_s), 10)
        sender = new_client(LinkSettings(mqtt_broker.host, mqtt_broker.port, ""))
        sender.connect(mqtt_broker.host, mqtt_broker.port)
        sender.loop_start()
        since = json.dumps({"since": "2020-01-01T00:00:00Z"}).encode()
        sender.publish(f"{kiosk_topic(topic_prefix)}/cmd/resend", since, qos=1).wait_for_publish()
        sender.disconnect()
        sender.loop_stop()
        assert wait_until(lambda: daemon.outbox.kept_confirmed() == 0, 10)
        assert daemon.outbox.depth() == 4  # waiting again: no back office confirms them here
        assert daemon.status.metrics()["appliance_edge_outbox_depth"] == 4
    finally:
        daemon.request_stop()
        thread.join(10)


def test_cmd_forget_deletes_the_kept_copies_of_results_the_back_office_erased(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    # a person withdrew consent: the back office names the erased ids on cmd/forget and the
    # daemon deletes its kept (confirmed) copies of them; one never confirmed stays to be sent
    config = edge_config(tmp_path, mqtt_broker, topic_prefix, camera={"limit": None})
    named = [new_measurement_id(1_765_000_000_000 + n) for n in range(4)]
    outbox = Outbox(Path(config.state_dir) / "outbox.sqlite3", keep_confirmed_s=48 * 3600.0)
    outbox.add_many([(mid, f"{kiosk_topic(topic_prefix)}/result", b"{}") for mid in named])
    outbox.remove_ids(named[:3])  # as the back office's ack does; named[3] never confirmed
    outbox.close()
    resting = fast_source(config, CustomerScript(approach_frames=0, rest_frames=0,
                                                 lift_frames=10**6))  # as above: no measuring
    daemon = fast_daemon(config, source=resting)
    started_s = time.monotonic()
    thread, _codes = run_in_thread(daemon)
    try:
        assert wait_until(lambda: subscribed_since(daemon, started_s), 10)  # as above
        sender = new_client(LinkSettings(mqtt_broker.host, mqtt_broker.port, ""))
        sender.connect(mqtt_broker.host, mqtt_broker.port)
        sender.loop_start()
        forget = json.dumps({"ids": named[1:]}).encode()
        sender.publish(f"{kiosk_topic(topic_prefix)}/cmd/forget", forget,
                       qos=1).wait_for_publish()
        sender.disconnect()
        sender.loop_stop()
        assert wait_until(lambda: daemon.outbox.kept_confirmed() == 1, 10)
        assert [m.measurement_id for m in daemon.outbox.pending()] == named[3:]
    finally:
        daemon.request_stop()
        thread.join(10)
