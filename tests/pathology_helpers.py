"""Pathology servers for tests: one serving in a thread of the test, and a clock the test moves;
the rows of a run's results.csv; and a listener's wait for what the broker sent it."""

from __future__ import annotations

import csv
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt

from appliance.config import Config
from appliance.pathology.jobstore import open_pathology_store
from appliance.pathology.server import PathologyServer


@contextmanager
def serving(config: Config, connected: bool = True) -> Iterator[PathologyServer]:
    """A server on its own store, run in a thread (``connected``: once it has connected to the
    broker); stopped, and its store closed, on the way out."""
    store = open_pathology_store(config.store.url)
    server = PathologyServer(config, store)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if connected:
            assert server.connected.wait(10)
        yield server
    finally:
        stop.set()
        thread.join(15)
        store.close()


class SteppedClock:
    """time.monotonic that moves only when the test says (a server's put-off times)."""

    def __init__(self) -> None:
        self.now_s = time.monotonic()

    def __call__(self) -> float:
        return self.now_s


def results_rows(folder: Path) -> dict[str, dict[str, str]]:
    """The rows of ``folder``'s results.csv (a pathology run's), by slide name."""
    with (folder / "results.csv").open(newline="") as handle:
        return {row["slide"]: row for row in csv.DictReader(handle)}


def counting_subacks(client: mqtt.Client) -> None:
    """Have ``client`` note each SUBACK, for ``subscribed`` and ``caught_up`` (before its
    first subscribe)."""
    client.user_data_set(queue.Queue())
    client.on_subscribe = lambda _c, subacks, mid, *_: subacks.put(mid)


def subscribed(client: mqtt.Client, topics: str | list[tuple[str, int]]) -> None:
    """Subscribe (QoS 1 for a single topic) and wait for the SUBACK."""
    if isinstance(topics, str):
        client.subscribe(topics, qos=1)
    else:
        client.subscribe(topics)
    client.user_data_get().get(timeout=10)


def caught_up(client: mqtt.Client) -> None:
    """Wait until ``client`` has had everything the broker sent it so far: the retained
    messages of its subscriptions, what was published before (a command that returned), a
    will sent at a takeover. The broker answers a SUBSCRIBE after what it sent before on that
    connection, so this subscribes to a topic that holds nothing and waits for the SUBACK."""
    subscribed(client, "test-marker/no-one-publishes-here")
