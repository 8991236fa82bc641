"""``appliance pathology serve`` and ``appliance pathology job submit|list|cancel``.

The job commands only talk to the broker (any machine that reaches it can use them): submit
publishes a request and, with ``--wait``, follows the job's retained state until it ends; list
reads every retained job state and server presence; cancel publishes a retained cancel request.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from appliance.config import Config, ConfigError, load_config
from appliance.pathology.jobs import (
    FINAL_STATES,
    cancel_topic,
    jobs_topic,
    make_request,
    server_topic,
    state_topic,
)
from appliance.transport.client import new_client, settings_from_config

LIST_WAIT_S = 1.0
CONNECT_TIMEOUT_S = 10.0


def register(sub: Any) -> None:
    """Add ``serve`` and ``job`` under ``appliance pathology``."""
    serve = sub.add_parser("serve", help="the pathology server: jobs over MQTT (long-running)")
    serve.add_argument("--config", default="config.yaml", help="config file (config.yaml)")
    serve.set_defaults(handler=_serve)
    job = sub.add_parser("job", help="submit, list or cancel pathology server jobs")
    jobs = job.add_subparsers(dest="job_command", required=True, metavar="COMMAND")
    submit = jobs.add_parser("submit", help="send slides to the pathology servers")
    submit.add_argument("slides", type=Path, nargs="+", help="slide files the servers can read")
    submit.add_argument("--um-per-px", type=float, required=True, help="slide resolution")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--timeout", type=float, default=3600.0, help="--wait limit (s)")
    submit.set_defaults(handler=_submit)
    listing = jobs.add_parser("list", help="every job's retained state")
    listing.set_defaults(handler=_list)
    cancel = jobs.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", help="the job id that submit printed")
    cancel.set_defaults(handler=_cancel)
    for parser in (submit, listing, cancel):
        parser.add_argument("--config", default="config.yaml", help="config file (config.yaml)")


def _config(args: argparse.Namespace) -> Config | None:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from appliance.backoffice.service import install_stop_signals  # noqa: PLC0415 - heavy deps load on use
    from appliance.pathology.service_main import run_server  # noqa: PLC0415 - as above

    config = _config(args)
    if config is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    stop = threading.Event()
    install_stop_signals(stop)
    return run_server(config, stop)


class _Link:
    """A short-lived client for the job commands: connect, subscribe, collect messages."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.ready = threading.Event()
        settings = settings_from_config(config.mqtt, f"pathology-cli-{uuid.uuid4().hex[:12]}")
        self.client = new_client(settings)
        self.client.on_connect = lambda c, u, f, reason, p: (
            None if reason.is_failure else self.ready.set())
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))

    def __enter__(self) -> _Link:
        mqtt_config = self.config.mqtt
        self.client.connect(mqtt_config.host, mqtt_config.port, mqtt_config.keepalive_s)
        self.client.loop_start()
        if not self.ready.wait(CONNECT_TIMEOUT_S):
            raise ConnectionError(f"broker {mqtt_config.host}:{mqtt_config.port} did not accept "
                                  "the connection; check mqtt.host, port and credentials")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def _submit(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    missing = [str(path) for path in args.slides if not path.is_file()]
    if missing:  # the servers read the slides; this machine may not see the same files
        print(f"job submit: not found on this machine (the servers must see them): "
              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", file=sys.stderr)
    request = make_request(args.slides, args.um_per_px)
    prefix = config.mqtt.topic_prefix
    with _Link(config) as link:
        if args.wait:
            link.client.subscribe(state_topic(prefix, request.job_id), qos=1)
            time.sleep(0.2)  # the SUBACK before the job can finish
        link.publish(jobs_topic(prefix), request.to_json().encode())
        print(request.job_id, flush=True)
        return _follow(link, request.job_id, args.timeout) if args.wait else 0


def _follow(link: _Link, job_id: str, timeout_s: float) -> int:
    """Print each state until a final one; 0 when done, 1 otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, payload = link.messages.get(timeout=1.0)
        except queue.Empty:
            continue
        if not payload:
            continue
        state = json.loads(payload)
        print(_describe(state), flush=True)
        if state["state"] in FINAL_STATES:
            return 0 if state["state"] == "done" else 1
    print(f"job {job_id}: no final state within {timeout_s:g} s (is a server running?)",
          file=sys.stderr)
    return 1


def _describe(state: dict[str, Any]) -> str:
    line = f"{state['job_id']} {state['state']}"
    if "slides_total" in state:
        line += f" {state.get('slides_done', 0)}/{state['slides_total']} slides"
    if state.get("reason"):
        line += f" ({state['reason']})"
    for row in state.get("results", []):
        verdict = row["error"] or f"{row['label']} score {row['score']}"
        line += f"\n  {row['slide']}: {verdict}"
        if row.get("reason"):
            line += f" ({row['reason']})"
    return line


def _list(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    prefix = config.mqtt.topic_prefix
    with _Link(config) as link:
        link.client.subscribe([(state_topic(prefix, "+"), 1), (server_topic(prefix, "+"), 1)])
        time.sleep(LIST_WAIT_S)  # retained states arrive right after the SUBACK
    states: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    while not link.messages.empty():
        topic, payload = link.messages.get()
        if payload:
            (servers if "/servers/" in topic else states).append(json.loads(payload))
    for server in sorted(servers, key=lambda s: s["server"]):
        print(f"server {server['server']}: {server['state']} since {server['at']} "
              f"({server['backend'].get('backend')})")
    for state in sorted(states, key=lambda s: s["job_id"]):
        print(_describe({**state, "results": []}))
    print(f"{len(states)} job(s)")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    with _Link(config) as link:
        payload = json.dumps({"job_id": args.job_id, "requested_at": time.time()}).encode()
        link.publish(cancel_topic(config.mqtt.topic_prefix, args.job_id), payload, retain=True)
    print(f"cancel requested for {args.job_id}")
    return 0
