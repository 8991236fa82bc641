"""Stores of each backend for tests: SQLite in the test's folder, PostgreSQL (the suite's
server) in a throw-away schema that is dropped afterwards."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from appliance.backoffice.schema import result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.synthetic import fleet

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
# a fixture's params: each test runs on SQLite, and on PostgreSQL where the marker is selected
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

OpenedStore = TypeVar("OpenedStore", bound=Store)


@contextmanager
def fresh_store(backend: str, tmp_path: Path, schema_prefix: str,
                opener: Callable[..., OpenedStore]) -> Iterator[OpenedStore]:
    """A fresh store of ``backend`` opened by ``opener`` (``open_store``,
    ``open_pathology_store``): a new SQLite file, or a new PostgreSQL schema named
    ``schema_prefix`` and a random suffix; closed (the schema dropped) on the way out."""
    if backend == "sqlite":
        opened = opener(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        try:
            yield opened
        finally:
            opened.close()
        return
    schema = f"{schema_prefix}_{uuid.uuid4().hex[:12]}"
    opened = opener(PG_URL, pg_schema=schema)
    try:
        yield opened
    finally:
        opened.drop_postgres_schema(schema)
        opened.close()


def store_with_results(url: str, device_results: dict[str, int], received: str) -> set[str]:
    """A store holding ``count`` results of each device, received at ``received``; their ids."""
    rng = random.Random(7)
    results = [fleet.sample_result(rng, "lab", device, i)
               for device, count in device_results.items() for i in range(count)]
    store = open_store(url)
    try:
        store.write_batch(Batch(results=[result_row(r, received, r.to_json().decode())
                                         for r in results]), 10)
    finally:
        store.close()
    return {r.measurement_id for r in results}
