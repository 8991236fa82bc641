"""What the erasure journal's tests share: a new store of either kind, the CLI run with the
test's own journal (tests/conftest.py sets ``APPLIANCE__STORE__ERASURE_JOURNAL``), generated
results delivered to a store, and what it holds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from appliance.backoffice.schema import iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.synthetic import fleet
from appliance.transport.payloads import Result
from tests.appliance_here import appliance_here

REPO = Path(__file__).resolve().parents[1]
SERVER = "postgres@127.0.0.1:5432"
KEEP = (1000, 2**40)  # the ingest worker's dead-letter bounds, far from any test's


def new_store_url(kind: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """A new store's URL: a SQLite file, or a new PostgreSQL database named ``prefix_HEX``
    (dropped afterwards); for a fixture to yield from."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://{SERVER}/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://{SERVER}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process, from ``tmp_path``, its journal the test's own
    (tests/appliance_here.py: a child costs ~0.4 CPU-s more, 5-8 commands a test); the tests
    where the process matters (a kill, a full disk, a journal that could hang a read: the
    hostile ones) start one with ``cli_process``."""
    return appliance_here(list(args), tmp_path)


def cli_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a child `python -m appliance`, its journal the test's own."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, check=False, timeout=120)


def live_journal() -> Path:
    """The test's own live journal."""
    return Path(os.environ["APPLIANCE__STORE__ERASURE_JOURNAL"])


def sample_results(subject: str | None, count: int, seed: int) -> list[Result]:
    """``count`` results of kiosk lab/kiosk-1, of ``subject`` (None: none)."""
    rng = random.Random(seed)
    return [fleet.sample_result(rng, "lab", "kiosk-1", seed * 100 + i, subject)
            for i in range(count)]


def deliver(url: str, results: list[Result], received_at: datetime) -> list[str]:
    """``results`` received by the ingest worker at ``received_at``; the ids stored."""
    store = open_store(url)
    try:
        return store.write_batch(Batch(results=[
            result_row(r, iso_utc(received_at), r.to_json().decode()) for r in results]), *KEEP)
    finally:
        store.close()


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    """``sql``'s rows in the store at ``url``."""
    store = open_store(url)
    try:
        return store.query(sql)
    finally:
        store.close()


def stored(url: str) -> set[str]:
    """The ids of the results the store at ``url`` holds."""
    return {str(row[0]) for row in query(url, "SELECT measurement_id FROM results")}
