"""Edge delivery figures: outbox throughput, capture->receipt latency, backlog drain, RSS.

Prints ONE JSON object. Runs against a private mosquitto on a free port (started here).
Throughput: results committed (fsync'd, group commit) and confirmed end to end per second via the
daemon's commit thread and MQTT link, also with one fsync per result. Latency: the full
daemon (synthetic camera, real quality gate, sessions, FAKE constant analyser, outbox, MQTT)
to a back-office-style subscriber. Backlog: 10,000 results waiting while the broker is down,
drained after it returns (reconnect backoff included). RSS: the daemon process after 1,000
and 10,000 measurements (small 320x240 frames so 10,000 fit in a benchmark run).
Usage: .venv/bin/python benchmarks/edge_delivery.py [--quick] [PART...] (parts: the keys)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PARTS = ("throughput_group_commit", "throughput_fsync_per_result", "latency", "latency_real",
         "backlog", "rss")


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer results per part (2,000 instead of 10,000)")
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"parts to run (default: all): {', '.join(PARTS)}")
    return parser


def _arguments() -> argparse.Namespace:
    parser = _parser()
    arguments = parser.parse_args()
    unknown = [part for part in arguments.parts if part not in PARTS]
    if unknown:
        parser.error(f"argument PART: invalid choice: {unknown[0]!r} (choose from "
                     f"{', '.join(PARTS)})")
    return arguments


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _arguments()

from appliance.capture.synthetic import CustomerScript, SkinFactory, SyntheticSource
from appliance.config import Config, config_from_mapping
from appliance.edge.committer import ResultCommitter
from appliance.edge.daemon import EdgeDaemon
from appliance.edge.measure import skin_measurement
from appliance.edge.pipeline import Accepted
from appliance.edge.testing import FIXED_FEATURES, ResultCollector, fixed_analyzer
from appliance.synthetic.camera import textured_skin
from appliance.synthetic.skin import synthetic_frame
from appliance.transport import payloads
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox

TOPIC = "bench/lab/kiosk-bench/result"
ACK_TOPIC = "bench/lab/kiosk-bench/ack"


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (what `uptime` shows)."""
    return [round(x, 2) for x in os.getloadavg()]


def sample_result(index: int) -> payloads.Result:
    """A realistic result payload (about 1 kB of JSON)."""
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(),
        device_id="kiosk-bench",
        site="lab",
        captured_at=payloads.utc_now(),
        software_version="bench",
        quality=payloads.Quality(verdict="ok", scores={"focus": 2.0 + index % 7}),
        features=FIXED_FEATURES,
        classification=payloads.Classification(
            model="skin-texture-grade", version="1", label="fine",
            probabilities={"fine": 0.7, "normal": 0.2, "coarse": 0.1},
        ),
    )


def new_link(broker: PrivateBroker, outbox: Outbox, name: str) -> MqttLink:
    return MqttLink(
        LinkSettings(broker.host, broker.port, f"bench-{name}"),
        outbox,
        status_topic="bench/lab/kiosk-bench/status",
        status_payload=lambda state: b'{"state": "%s"}' % state.encode(),
        ack_topic=ACK_TOPIC,
    )


def wait_until(condition: Any, timeout_s: float) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            return False
        time.sleep(0.005)
    return True


def bench_throughput(
    broker: PrivateBroker, workdir: Path, count: int, group_max: int
) -> dict[str, Any]:
    """Results/s committed (fsync) and confirmed end to end (a back-office-style collector
    acks each one) through the commit thread and the link."""
    collector = ResultCollector(broker.host, broker.port, "bench/+/+/result", f"ack-{group_max}")
    outbox = Outbox(workdir / f"throughput-{group_max}.db")
    link = new_link(broker, outbox, f"tp{group_max}")
    results: queue.Queue[Accepted] = queue.Queue(maxsize=1000)
    stop = threading.Event()
    committer = ResultCommitter(results, outbox, stop, wake_link=link.wake, group_max=group_max)
    accepted = [Accepted(sample_result(i), None, TOPIC) for i in range(count)]
    link.start()
    committer.start()
    wait_until(lambda: link.connected, 10)
    started_s = time.perf_counter()
    for item in accepted:
        results.put(item)
    done = wait_until(lambda: committer.committed == count and link.idle(), 120)
    elapsed_s = time.perf_counter() - started_s
    stop.set()
    link.stop_event.set()
    link.wake()
    committer.join(5)
    link.join(5)
    collector.close()
    return {
        "results": count,
        "group_commit_max": group_max,
        "seconds": round(elapsed_s, 3),
        "results_per_s": round(count / elapsed_s, 1),
        "all_acked": done,
    }


def bench_backlog(broker: PrivateBroker, workdir: Path, count: int) -> dict[str, Any]:
    """Seconds from the broker's return until a backlog of ``count`` results is confirmed."""
    outbox = Outbox(workdir / "backlog.db")
    backlog = [sample_result(i) for i in range(count)]
    outbox.add_many([(r.measurement_id, TOPIC, r.to_json()) for r in backlog])
    collector = ResultCollector(broker.host, broker.port, "bench/+/+/result", "ack-backlog")
    broker.stop()  # the collector's session (persistent) waits in the broker's persistence
    link = new_link(broker, outbox, "backlog")  # default backoff: 0.5 s doubling to 5 s
    link.start()
    time.sleep(12.0)  # the outage: the link backs off to its 5 s cap
    broker.start()
    returned_s = time.perf_counter()
    wait_until(lambda: link.connected, 30)
    reconnected_s = time.perf_counter() - returned_s
    done = wait_until(link.idle, 120)
    drained_s = time.perf_counter() - returned_s
    link.stop_event.set()
    link.wake()
    link.join(5)
    collector.close()
    return {
        "results": count,
        "reconnect_s": round(reconnected_s, 2),
        "drained_after_broker_return_s": round(drained_s, 2),
        "all_acked": done,
    }


def daemon_config(broker: PrivateBroker, workdir: Path, **edge: Any) -> Config:
    data = {
        "device": {"id": "kiosk-bench", "site": "lab"},
        "mqtt": {"port": broker.port, "topic_prefix": "bench"},
        "state_dir": str(workdir),
        "edge": edge,
    }
    return config_from_mapping(data, "benchmark", environ={})


def real_skins(count: int) -> SkinFactory:
    """Synthetic skin frames made once up front (making one takes ~0.7 s), then cycled."""
    skins = [synthetic_frame(0, index).image_rgb for index in range(count)]
    return lambda index: skins[index % count]


def bench_latency(
    broker: PrivateBroker, workdir: Path, count: int, real: bool = False
) -> dict[str, Any]:
    """Frame capture -> subscriber receipt through the whole daemon."""
    name = "latency-real" if real else "latency"
    config = daemon_config(broker, workdir / name, burst_frames=1, rearm_frames=2)
    script = CustomerScript(approach_frames=1, rest_frames=2, lift_frames=2)
    skin = real_skins(4) if real else textured_skin(5)
    source = SyntheticSource(skin, fps=30, script=script)
    collector = ResultCollector(broker.host, broker.port, "bench/+/+/result", f"bench-{name}")
    analyzer = skin_measurement if real else fixed_analyzer
    daemon = EdgeDaemon(config, source=source, analyzer=analyzer)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    wait_until(lambda: len(collector.ids()) >= count, 300)
    daemon.request_stop()
    thread.join(10)
    collector.close()
    latencies_ms = sorted(1000.0 * s for s in collector.latencies_s.values())
    return {
        "results": len(latencies_ms),
        "analyser": "real analyze() (overlay drawn after the commit, off the path)"
        if real
        else "fake (constant features)",
        "path": "synthetic camera, real quality gate, sessions, outbox (fsync), MQTT QoS 1",
        "camera_fps": 30,
        "burst_frames": 1,
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p99_ms": round(latencies_ms[int(0.99 * (len(latencies_ms) - 1))], 1),
        "max_ms": round(latencies_ms[-1], 1),
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def bench_rss(broker: PrivateBroker, workdir: Path, total: int) -> dict[str, Any]:
    """Daemon RSS after 1,000 and after ``total`` measurements (320x240 frames, fake analyser)."""
    config = daemon_config(
        broker, workdir / "rss", burst_frames=1, rearm_frames=1, frame_queue_size=8
    )
    # The first resting frame differs from the lifted one before it ("moving"); the second is ok.
    script = CustomerScript(approach_frames=0, rest_frames=2, lift_frames=1)
    source = SyntheticSource(textured_skin(9, size_px=(320, 240)), fps=600, script=script)
    daemon = EdgeDaemon(config, source=source, analyzer=fixed_analyzer)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    wait_until(lambda: daemon.committer.committed >= 1000, 600)
    at_1000 = rss_mb()
    started_s = time.monotonic()
    wait_until(lambda: daemon.committer.committed >= total, 900)
    at_total = rss_mb()
    measured = daemon.committer.committed
    rate = (measured - 1000) / (time.monotonic() - started_s)
    daemon.request_stop()
    thread.join(10)
    return {
        "rss_mb_after_1000": round(at_1000, 1),
        f"rss_mb_after_{total}": round(at_total, 1),
        "growth_pct": round(100.0 * (at_total - at_1000) / at_1000, 2),
        "measurements": measured,
        "measurements_per_s": round(rate, 1),
    }


def main(quick: bool, only: list[str]) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    figures: dict[str, Any] = {"benchmark": "edge_delivery", "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp, PrivateBroker(
        workdir=Path(tmp) / "broker"
    ) as broker:
        workdir = Path(tmp)
        count = 2000 if quick else 10_000
        runs = {
            "throughput_group_commit": lambda: bench_throughput(broker, workdir, count, 256),
            "throughput_fsync_per_result": lambda: bench_throughput(broker, workdir, count // 5, 1),
            "latency": lambda: bench_latency(broker, workdir, 60 if quick else 200),
            "latency_real": lambda: bench_latency(broker, workdir, 10 if quick else 40, True),
            "backlog": lambda: bench_backlog(broker, workdir, count),
            "rss": lambda: bench_rss(broker, workdir, 2000 if quick else 10_000),
        }
        for name, run in runs.items():
            if only and name not in only:
                continue
            started_s = time.monotonic()
            figures[name] = run()
            print(f"{name}: {time.monotonic() - started_s:.1f} s {figures[name]}", file=sys.stderr)
    figures["load_after"] = load_average()
    figures["cpus"] = os.cpu_count()
    return figures


if __name__ == "__main__":
    chosen = _arguments()
    print(json.dumps(main(chosen.quick, chosen.parts)))
