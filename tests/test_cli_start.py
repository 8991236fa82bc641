"""`appliance --help` and `appliance config check` start without loading what they do not use
(appliance/cli.py: each area imports its heavy dependencies inside the handlers). Every test
that runs the command line in a process of its own, and every person typing it, paid ~0.6
CPU-s for pydantic, psycopg, python-tuf and NumPy before help printed a line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.modules_loaded import MODULES_PRINTED_AT_EXIT

REPO = Path(__file__).resolve().parents[1]
# what registering the commands' options needs none of: configs (pydantic), stores (psycopg,
# asyncio), model updates (python-tuf), arrays and images, models, MQTT
HEAVY = ("pydantic", "yaml", "psycopg", "asyncio", "tuf", "securesystemslib", "numpy", "cv2",
         "scipy", "onnxruntime", "torch", "paho", "appliance.config")
# what `config check` of a SQLite kiosk config uses none of (it does load pydantic, to read the
# config, and the model runtime, to check that model.path loads)
NOT_FOR_THE_CHECK = ("psycopg", "asyncio", "tuf", "cv2", "scipy", "torch", "paho",
                     "appliance.skin.pores", "appliance.skin.analyze")


def _modules_loaded(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    done = subprocess.run([sys.executable, "-c", MODULES_PRINTED_AT_EXIT, *args],
                          capture_output=True, text=True, cwd=REPO, check=False)
    return done, json.loads(done.stderr.splitlines()[-1])


def _among(loaded: list[str], roots: tuple[str, ...]) -> list[str]:
    return [name for name in roots
            if any(module == name or module.startswith(f"{name}.") for module in loaded)]


def test_help_prints_every_command_without_loading_a_heavy_library() -> None:
    done, loaded = _modules_loaded("--help")
    assert "analyze" in done.stdout
    assert "config" in done.stdout
    assert "results" in done.stdout
    assert _among(loaded, HEAVY) == []


def test_config_check_loads_no_image_store_or_update_library() -> None:
    done, loaded = _modules_loaded("config", "check", str(REPO / "config.yaml"))
    assert ": ok: " in done.stdout, done.stderr
    assert "pydantic" in loaded
    assert "onnxruntime" in loaded
    assert _among(loaded, NOT_FOR_THE_CHECK) == []


def test_results_query_on_a_sqlite_store_loads_no_postgresql_driver(tmp_path: Path) -> None:
    """storeerrors built its psycopg error tuples at import (~0.1 CPU-s): every SQLite command
    paid for the PostgreSQL driver. They are built when first read now, and the SQLite path
    reads them only in an ``except`` an error reaches."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    done, _ = _modules_loaded("store", "migrate", "--store", url)
    assert "schema version" in done.stdout, done.stderr
    done, loaded = _modules_loaded("results", "query", "--store", url)
    assert "no results match" in done.stdout, done.stderr
    assert _among(loaded, ("psycopg",)) == []


def test_the_store_error_tuples_built_on_first_read_are_those_built_at_import_before() -> None:
    import sqlite3

    import psycopg

    from appliance.backoffice import storeerrors
    from appliance.backoffice.storeerrors import STORE_ERRORS, StoreError

    assert STORE_ERRORS is storeerrors.STORE_ERRORS
    assert (sqlite3.Error, psycopg.Error, StoreError) == STORE_ERRORS
    assert (sqlite3.Error, psycopg.Error) == storeerrors.DATABASE_ERRORS
    assert (psycopg.OperationalError,) == storeerrors.CONNECTION_LOST_ERRORS
    assert (psycopg.DataError, psycopg.IntegrityError) == storeerrors.VALUE_REFUSED_ERRORS
    assert storeerrors.is_outage(psycopg.OperationalError("gone"))
    assert storeerrors.refused_for_its_values(psycopg.DataError("NUL"))
