"""Ingest benchmark: 500 simulated kiosks -> private mosquitto -> back-office worker -> store.

Prints ONE JSON object. Traffic: every device sends ``--per-device`` results at QoS 1, plus 5 %
duplicates (retries of already sent results) and 1 % malformed or hostile messages. Two figures
per store, clearly apart:
- ``live``: publishers, broker and worker run at once on this machine; rate = messages the worker
  committed and acked / seconds from the first publish to the last commit.
- ``drain``: the worker's session is created, the worker goes away, all traffic is queued in the
  broker for that session, then the worker starts and drains it; rate = messages / drain seconds.
Each run checks: stored == unique valid results sent, exactly; every malformed one dead-lettered.
The publishers are a separate process speaking raw MQTT 3.1.1 over 500 sockets (pre-encoded
packets), so their CPU cost stays small next to the worker's on a 2-core box.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--per-device", type=int, default=30)
    parser.add_argument("--skip-postgres", action="store_true")
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.backoffice.ingest import IngestWorker
from appliance.backoffice.store import open_store
from appliance.config import config_from_mapping
from appliance.synthetic import fleet
from appliance.transport.broker import PrivateBroker

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX = "bench"


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keep-alive 120 s."""
    body = _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 120)
    body += _mqtt_string(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """MQTT 3.1.1 PUBLISH at QoS 1."""
    body = _mqtt_string(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body


Traffic = list[list[tuple[str, bytes]]]


DISCONNECT = b"\xe0\x00"  # MQTT 3.1.1 DISCONNECT


def flood_socket(port: int, client_id: str, packets: list[bytes], ready: Any,
                 go: Any) -> None:
    """Publish ``packets`` on one socket as fast as it takes them once ``go`` is set; PUBACKs
    read and dropped. Then a DISCONNECT, and the socket closed only once the broker closes it:
    it has taken every packet before (closed earlier, with PUBACKs unread, the socket is
    reset, and the broker drops what it had not read yet)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(connect_packet(client_id))
    sock.recv(4)
    reader = threading.Thread(
        target=lambda: [None for _ in iter(lambda: sock.recv(65536), b"")], daemon=True)
    reader.start()
    ready.set()
    go.wait()
    for packet in packets:
        sock.sendall(packet)
    sock.sendall(DISCONNECT)
    reader.join(120)
    sock.close()


def started_flood(port: int, client_id: str, packets: list[bytes]) -> tuple[Any, float]:
    """``flood_socket`` in a forked process, connected and then let go: the process and the
    perf_counter time it was let go."""
    ctx = mp.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    flooder = ctx.Process(target=flood_socket, args=(port, client_id, packets, ready, go))
    flooder.start()
    ready.wait()
    go.set()
    return flooder, time.perf_counter()


def build_traffic(devices: int, per_device: int, seed: int) -> tuple[Traffic, dict[str, int]]:
    """Per-device message lists (valid, duplicate and malformed mixed) and their counts."""
    rng = random.Random(seed)
    traffic: Traffic = []
    counts = {"valid_unique": 0, "duplicates": 0, "malformed": 0}
    hostile = list(fleet.malformed_payloads(fleet.sample_result(rng, "s", "d", 0)).values())
    for d in range(devices):
        site, device = f"site-{d % 20}", f"kiosk-{d:03d}"
        topic = f"{PREFIX}/{site}/{device}/result"
        sent = [fleet.sample_result(rng, site, device, i).to_json() for i in range(per_device)]
        messages = [(topic, body) for body in sent]
        counts["valid_unique"] += len(sent)
        for body in sent:
            if rng.random() < 0.05:
                messages.insert(rng.randrange(len(messages) + 1), (topic, body))
                counts["duplicates"] += 1
            if rng.random() < 0.01:
                bad = hostile[counts["malformed"] % len(hostile)]
                messages.insert(rng.randrange(len(messages) + 1), (topic, bad))
                counts["malformed"] += 1
        traffic.append(messages)
    return traffic, counts


def _publisher(port: int, traffic: Traffic, ready: Any, go: Any, done: Any) -> None:
    sockets = []
    for index in range(len(traffic)):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(connect_packet(f"bench-pub-{index}"))
        sock.recv(4)
        sockets.append(sock)
    packets = [[publish_packet(t, p, i + 1) for i, (t, p) in enumerate(m)] for m in traffic]
    ready.set()
    go.wait()
    for round_ in range(max(len(p) for p in packets)):
        for sock, mine in zip(sockets, packets, strict=True):
            if round_ < len(mine):
                sock.sendall(mine[round_])
    acked = 0
    for sock, mine in zip(sockets, packets, strict=True):
        received = b""
        while len(received) < 4 * len(mine):
            received += sock.recv(65536)
        acked += len(received) // 4
        sock.close()
    done.put(acked)


def _worker_config(port: int, state_dir: str, client_id: str) -> Any:
    return config_from_mapping(
        {
            "mqtt": {"port": port, "topic_prefix": PREFIX},
            "state_dir": state_dir,
            "backoffice": {"client_id": client_id, "session_expiry_s": 3600},
        },
        environ={},
    )


def _start_publisher(port: int, traffic: Traffic) -> tuple[Any, Any, Any]:
    """The publisher process, connected and waiting for ``go``; returns (process, go, done)."""
    ctx = mp.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Queue()
    publisher = ctx.Process(target=_publisher, args=(port, traffic, ready, go, done))
    publisher.start()
    ready.wait()
    return publisher, go, done


def _ingest(worker: IngestWorker, mode: str, go: Any, done: Any, total: int) -> dict[str, Any]:
    """Start traffic and worker in ``mode`` order; time until the worker committed ``total``."""
    acked = None
    if mode == "drain":
        go.set()
        acked = done.get()  # everything sits in the broker, queued for the worker's session
        started, cpu_started = time.perf_counter(), time.process_time()
        worker.start()
    else:
        worker.start()
        worker.subscribed.wait(10)
        started, cpu_started = time.perf_counter(), time.process_time()
        go.set()
    deadline = time.monotonic() + 300
    while worker.stats.received < total and time.monotonic() < deadline:
        time.sleep(0.002)
    elapsed_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    return {"elapsed_s": elapsed_s, "cpu_s": cpu_s, "acked": done.get() if acked is None else acked}


def run_case(store_url: str, mode: str, traffic: Traffic,
             counts: dict[str, int], pg_schema: str | None) -> dict[str, Any]:
    """One measured run (live or drain) into one store; returns its figures and checks."""
    total = sum(len(m) for m in traffic)
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        config = _worker_config(broker.port, tmp, f"bench-{uuid.uuid4().hex[:8]}")
        url = store_url.replace("{tmp}", tmp)
        store = open_store(url, pg_schema)
        try:
            publisher, go, done = _start_publisher(broker.port, traffic)
            if mode == "drain":
                _create_session(config, url, pg_schema)
            worker = IngestWorker(config, store)
            run = _ingest(worker, mode, go, done, total)
            publisher.join()
            worker.stop()
            checks = _checks(store, counts, run["acked"], total)
        finally:
            if pg_schema:
                store.drop_postgres_schema(pg_schema)
            store.close()
    return {
        "messages": total,
        "seconds": round(run["elapsed_s"], 3),
        "messages_per_s": round(total / run["elapsed_s"]),
        "stored_results_per_s": round(counts["valid_unique"] / run["elapsed_s"]),
        "worker_cpu_s": round(run["cpu_s"], 3),
        "messages_per_worker_cpu_s": round(total / run["cpu_s"]),
        **checks,
    }


def _create_session(config: Any, url: str, pg_schema: str | None) -> None:
    store = open_store(url, pg_schema)
    worker = IngestWorker(config, store)
    worker.start()
    worker.subscribed.wait(10)
    worker.stop()
    store.close()


def _checks(store: Any, counts: dict[str, int], acked: int, total: int) -> dict[str, Any]:
    stored, dead = store.count_results(), store.count_dead_letters()
    return {
        "stored": stored,
        "dead_letters": dead,
        "broker_acked_publishes": acked,
        "stored_equals_unique_valid": stored == counts["valid_unique"],
        "all_malformed_dead_lettered": dead == counts["malformed"],
        "all_publishes_acked": acked == total,
    }


def run_parallel_drain(traffic: Traffic, counts: dict[str, int], workers: int) -> dict[str, Any]:
    """Drain with ``workers`` back-office processes in one share group (the scaling path)."""
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker() as broker:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        store = open_store(url)
        paths = []
        for index in range(workers):
            config = _worker_config(broker.port, tmp, f"bench-w{index}")
            _create_session(config, url, None)
            paths.append(Path(tmp) / f"worker-{index}.yaml")
            paths[-1].write_text(json.dumps({
                "mqtt": {"port": broker.port, "topic_prefix": PREFIX},
                "state_dir": tmp, "store": {"url": url},
                "backoffice": {"client_id": f"bench-w{index}", "session_expiry_s": 3600},
            }))
        publisher, go, done = _start_publisher(broker.port, traffic)
        go.set()
        acked = done.get()
        publisher.join()
        procs = [subprocess.Popen([sys.executable, "-m", "appliance", "backoffice", "--config",
                                   str(path)], stderr=subprocess.DEVNULL) for path in paths]
        try:
            elapsed_s = _time_until_stored(store, counts)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(20)
        checks = _checks(store, counts, acked, sum(len(m) for m in traffic))
        store.close()
    return {"workers": workers, "seconds_from_first_commit": round(elapsed_s, 3),
            "stored_results_per_s": round(counts["valid_unique"] / elapsed_s), **checks}


def _time_until_stored(store: Any, counts: dict[str, int]) -> float:
    first = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stored = store.count_results()
        if stored and first is None:
            first = time.perf_counter()
        if stored == counts["valid_unique"] and store.count_dead_letters() == counts["malformed"]:
            break
        time.sleep(0.02)
    return time.perf_counter() - (first or time.perf_counter())


MODES = {
    "live": "publishers, broker and worker at once on this box; messages / s from first publish "
    "to last commit",
    "drain": "all traffic pre-queued in the broker for the worker's session, then the worker "
    "starts; messages / s it drains",
    "sqlite_drain_2_processes": "as drain, but two `appliance backoffice` processes in one "
    "share group; unique results / s from the first commit until all are stored",
}


def main() -> None:
    """Run the cases and print one JSON object."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up brokers and schemas
    load_at_start = os.getloadavg()[0]
    traffic, counts = build_traffic(args.devices, args.per_device, seed=6)
    stores = {"sqlite": "sqlite:///{tmp}/bench.sqlite3"}
    if not args.skip_postgres:
        stores["postgresql"] = PG_URL
    runs = {
        f"{name}_{mode}": run_case(url, mode, traffic, counts, _pg_schema(name))
        for name, url in stores.items()
        for mode in ("live", "drain")
    }
    runs["sqlite_drain_2_processes"] = run_parallel_drain(traffic, counts, workers=2)
    print(json.dumps({
        "benchmark": "ingest", "devices": args.devices, "sent": counts,
        "target_results_per_s": 5000, "modes": MODES, "runs": runs,
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }))


def _pg_schema(store: str) -> str | None:
    return f"bench_ingest_{uuid.uuid4().hex[:10]}" if store == "postgresql" else None


if __name__ == "__main__":
    main()
