"""Fast stand-ins for the heavy plug-ins, for fault tests and delivery benchmarks.

``fixed_analyzer`` measures nothing (constant features), ``fast_source`` makes small
textured frames that are cheap to make and to gate, and ``FlakySource`` fails on demand, so
the daemon's delivery, supervision and recovery can be exercised in seconds.
``python -m appliance.edge.testing CONFIG`` runs the real daemon wiring with these
stand-ins (the SIGKILL test runs it as a child process). ``ResultCollector`` listens like the
back office; ``wait_until`` and ``run_daemon`` are shared with the simulated kiosks of
``appliance.updates.testing``, and ``wait_until`` is the one polling wait of the tests too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import paho.mqtt.client as mqtt

from appliance.capture.sources import Frame, FrameSource, SourceError
from appliance.capture.synthetic import CustomerScript, SyntheticSource
from appliance.config import Config, load_config
from appliance.edge.daemon import EdgeDaemon, Requests
from appliance.edge.ending import exit_code_after_stop
from appliance.edge.measure import Measurement
from appliance.edge.plugins import source_from_config
from appliance.edge.service import run_until_stopped, signals_handled
from appliance.edge.systemd import setup_logging
from appliance.synthetic.camera import textured_skin
from appliance.transport import payloads
from appliance.transport.acks import encode_acks
from appliance.transport.client import LinkSettings
from appliance.transport.subscriber import Subscriber

SMALL_FRAME_PX = (320, 240)
FIXED_FEATURES = payloads.Features(
    pore_count=42,
    pore_density_per_cm2=341.8,
    pore_mean_diameter_um=92.0,
    pore_area_ratio=0.023,
    furrow_density_mm_per_mm2=6.1,
    hill_density_per_mm2=9.4,
    hill_mean_area_mm2=0.098,
    furrow_mean_width_um=38.0,
    furrow_anisotropy=0.31,
    kime_score=61.0,
    lab_l=64.0,
    lab_a=12.5,
    lab_b=16.0,
    melanin_index=0.42,
    erythema_index=0.37,
    shine_ratio=0.04,
)


def fixed_analyzer(rgb: np.ndarray, um_per_px: float) -> Measurement:
    """Constant features, no overlay: the pipeline without the cost of measuring."""
    return Measurement(FIXED_FEATURES)


class FlakySource:
    """Wraps a source as a live camera that fails: while ``failing`` is set, opening and
    reading raise SourceError; its frames are a live camera's (dropped for newer ones when the
    pipeline lags), not a simulation's that wait for room."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.description = f"flaky {inner.description}"
        self.failing = threading.Event()

    def open(self) -> None:
        """Open the inner source unless failing."""
        if self.failing.is_set():
            raise SourceError(f"{self.description}: device unplugged (simulated)")
        self.inner.open()

    def read(self) -> Frame | None:
        """Read the inner source unless failing."""
        if self.failing.is_set():
            raise SourceError(f"{self.description}: read error (simulated)")
        frame = self.inner.read()
        return None if frame is None else replace(frame, simulated=False)

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()


def fast_source(
    config: Config,
    script: CustomerScript | None = None,
    size_px: tuple[int, int] = SMALL_FRAME_PX,
) -> SyntheticSource:
    """Synthetic customers on cheap textured frames (small: the gate costs ~1 ms each)."""
    skin = textured_skin(config.camera.seed, size_px)
    return SyntheticSource(skin, fps=config.edge.synthetic_fps, script=script)


def fast_daemon(
    config: Config, source: FrameSource | None = None, *, requests: Requests | None = None
) -> EdgeDaemon:
    """The daemon with the real gate, sessions, outbox and MQTT link, but fake measuring; a
    configured folder of saved files is read as configured (it is cheap already)."""
    stall_s: float | None = config.edge.camera_stall_s
    if source is None and config.camera.source == "directory":
        source, stall_s = source_from_config(config)
    return EdgeDaemon(
        config,
        source=source or fast_source(config),
        analyzer=fixed_analyzer,
        stall_s=stall_s,
        requests=requests,
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate()`` every ``poll_s`` until it holds; False on timeout."""
    deadline_s = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline_s:
            return False
        time.sleep(poll_s)
    return True


class ResultCollector:
    """Subscribes like the back office does (persistent MQTT v5 session, QoS 1), records each
    result's measurement id and its latency from frame capture to receipt, and (``ack=True``)
    confirms each result on its device's ack topic as the back office does after its commit.

    Its client comes from the one factory and subscribes only once the broker accepted it
    (transport/subscriber.py): a refusal raises BrokerRefusedError naming the reason code."""

    def __init__(
        self, host: str, port: int, topic_filter: str, client_id: str, ack: bool = True
    ) -> None:
        self.topic_filter = topic_filter
        self.ack = ack
        self.latencies_s: dict[str, float] = {}
        self.received = 0
        self.statuses: list[payloads.Status] = []
        self._lock = threading.Lock()
        settings = LinkSettings(host, port, client_id, session_expiry_s=600, reconnect_cap_s=1.0)
        self._link = Subscriber(settings, [(topic_filter, 1)], self._on_message,
                                keep_session=True)
        self._link.start()

    def close(self) -> None:
        """Disconnect."""
        self._link.close()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        now = payloads.utc_now()
        raw = bytes(message.payload)
        if message.topic.endswith("/status"):
            with self._lock:
                self.statuses.append(payloads.parse_payload(raw, payloads.Status))
            return
        if not message.topic.endswith("/result"):
            return  # e.g. the acks this collector sends, under the same filter
        result = payloads.parse_payload(raw, payloads.Result)
        if self.ack:
            ack_topic = message.topic.removesuffix("result") + "ack"
            for body in encode_acks([result.measurement_id]):
                self._link.client.publish(ack_topic, body, qos=1)
        with self._lock:
            self.received += 1
            latency_s = (now - result.captured_at).total_seconds()
            self.latencies_s.setdefault(result.measurement_id, latency_s)

    def ids(self) -> set[str]:
        """Distinct measurement ids received so far."""
        with self._lock:
            return set(self.latencies_s)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` distinct results arrived; False on timeout."""
        return wait_until(lambda: len(self.ids()) >= count, timeout_s)


def run_daemon(config_path: str, build: Callable[[Config, Requests], EdgeDaemon]) -> int:
    """Run ``build(config, requests)`` with the daemon's logging and signal handling until it
    stops, and end as ``appliance edge`` ends (appliance/edge/service.py)."""
    config = load_config(config_path)
    setup_logging(False, config.device.id)
    requests = Requests()
    with signals_handled(requests):  # before the build: a stop meanwhile ends it in order
        return exit_code_after_stop(run_until_stopped(lambda: build(config, requests), requests))


def main(argv: list[str]) -> int:
    """Run the fast daemon from a config file until stopped (or ``camera.limit``)."""
    started_s = time.monotonic()
    code = run_daemon(argv[0], lambda config, requests: fast_daemon(config, requests=requests))
    print(f"fast daemon exited {code} after {time.monotonic() - started_s:.1f} s", file=sys.stderr)
    return code


def subscribed_since(daemon: EdgeDaemon, since_s: float) -> bool:
    """Whether the broker has answered every SUBSCRIBE of a connection the daemon's link made
    after ``since_s`` (monotonic): a command published from then on reaches it. The link is
    ``connected`` at the CONNACK, before it subscribes, and a SUBSCRIBE not yet made is not
    ``waiting()``; it publishes its online status right after its SUBSCRIBEs, so once a status
    built since ``since_s`` had its PUBACK, they are made (transport/mqtt.py)."""
    link = daemon.link
    return (link.connected and link.status_reached_since(since_s)
            and not link.subscriptions.waiting())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
