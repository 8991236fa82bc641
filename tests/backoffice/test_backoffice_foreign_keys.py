"""Store migration 16: a rollout's device states must name a rollout that is there (a foreign
key, SQLite and PostgreSQL); rows a store already holds that name none are kept aside in
``rollout_devices_orphaned``, not lost, and do not stop the migration."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from appliance.backoffice.schema import MIGRATIONS
from appliance.backoffice.store import open_store
from appliance.backoffice.storeerrors import DATABASE_ERRORS
from tests.store_helpers import BACKENDS, PG_URL

AT = "2026-12-05T00:00:00.000000Z"
ROLLOUT = ("r0llout1", "skin-texture-grade", "1.1.0", "update", "all", 1, "halted", None, AT,
           AT, "0" * 64)
KEPT = ("r0llout1", "lab", "k1", "canary", "refused", "self-test failed", "1.0.0", AT)
ORPHAN = ("gone0001", "lab", "k2", "wave 1", "assigned", None, None, AT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_16_keys_rollout_devices_and_keeps_orphans_aside(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"store_fkeys_{uuid.uuid4().hex[:12]}"
    with monkeypatch.context() as before_16:  # a store as it was before migration 16
        before_16.setattr("appliance.backoffice.store.MIGRATIONS", MIGRATIONS[:15])
        old = open_store(url, pg_schema=schema)
    try:
        old.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [ROLLOUT])
        old.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  [KEPT, ORPHAN])  # no key yet: a row naming no rollout is taken
        assert old.migrate() == [version for version, _, _ in MIGRATIONS[15:]]  # 16 on
        assert old.query("SELECT * FROM rollout_devices") == [KEPT]
        assert old.query("SELECT * FROM rollout_devices_orphaned") == [ORPHAN]
        assert [d["device_id"] for d in old.rollout_devices("r0llout1")] == ["k1"]
        with pytest.raises(DATABASE_ERRORS, match=r"(?i)foreign key"):
            old.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      [("nowhere1", *ORPHAN[1:])])
        old.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  [("r0llout1", *ORPHAN[1:])])  # a rollout that is there: taken
        assert len(old.rollout_devices("r0llout1")) == 2
    finally:
        if schema is not None:
            old.drop_postgres_schema(schema)
        old.close()
