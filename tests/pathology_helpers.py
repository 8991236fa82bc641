"""Pathology servers for tests: one serving in a thread of the test, and a clock the test moves;
and the rows of a run's results.csv."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
