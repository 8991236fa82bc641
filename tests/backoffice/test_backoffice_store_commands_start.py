"""``store backup`` of a SQLite store reads no result: it loads no payload models (pydantic,
~0.1 CPU-s a command: each nightly backup, and every test that runs it in a process of its
own). ``store migrate`` and ``store restore`` open the store or read the config, which need
them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from appliance.backoffice.migrations import MIGRATIONS
from appliance.transport.payloads import FEATURE_KEYS
from tests.modules_loaded import MODULES_PRINTED_AT_EXIT

REPO = Path(__file__).resolve().parents[2]


def _pydantic_loaded(*args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    done = subprocess.run([sys.executable, "-c", MODULES_PRINTED_AT_EXIT, *args],
                          capture_output=True, text=True, cwd=REPO, check=False)
    loaded = json.loads(done.stderr.splitlines()[-1])
    return done, any(name == "pydantic" or name.startswith("pydantic.") for name in loaded)


def test_backing_up_a_store_loads_no_payload_models(
    tmp_path: Path,
) -> None:
    store, backup = tmp_path / "store.sqlite3", tmp_path / "backup.sqlite3"  # an empty store
    done, _ = _pydantic_loaded("store", "migrate", "--store", f"sqlite:///{store}")
    assert "schema version" in done.stdout, done.stderr
    done, pydantic = _pydantic_loaded("store", "backup", "--store", f"sqlite:///{store}",
                                      "--out", str(backup))
    assert "backed up the SQLite store" in done.stdout, done.stderr
    assert not pydantic


def test_the_first_migration_makes_a_column_of_each_feature_a_result_carries() -> None:
    """Migration 1 writes its feature columns out (a migration is never edited); they are the
    payload's features, in order (a new feature needs a migration of its own)."""
    first = MIGRATIONS[0][2]
    results = first[first.index("CREATE TABLE results"):first.index(");")]
    columns = re.findall(r"^    (\w+) (?:BIGINT|\{real\}) NOT NULL,$", results, re.MULTILINE)
    assert tuple(columns) == FEATURE_KEYS
