"""Store migration 16: a rollout's device states must name a rollout that is there (a foreign
key, SQLite and PostgreSQL); rows a store already holds that name none are kept aside in
``rollout_devices_orphaned``, not lost, and do not stop the migration. The pathology tables
(created apart, by migrate_pathology) key slide results to their job the same way."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from appliance.backoffice.migrations import MIGRATIONS
from appliance.backoffice.store import open_store
from appliance.backoffice.storeerrors import DATABASE_ERRORS
from appliance.pathology.jobs import JobRequest, SlideRequest
from appliance.pathology.jobstore import PathologyStore, open_pathology_store
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
        before_16.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:15])
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


def test_migration_16_keeps_orphans_aside_beside_a_rollout_without_an_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes a NULL in a TEXT primary key: with one among the rollouts, NOT IN kept no
    row aside and IN copied none over, so the orphan was lost (a reviewer's reading)."""
    with monkeypatch.context() as before_16:
        before_16.setattr("appliance.backoffice.store_schema.MIGRATIONS", MIGRATIONS[:15])
        old = open_store(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        old.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  [ROLLOUT, (None, *ROLLOUT[1:])])
        old.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [KEPT, ORPHAN])
        old.migrate()
        assert old.query("SELECT * FROM rollout_devices") == [KEPT]
        assert old.query("SELECT * FROM rollout_devices_orphaned") == [ORPHAN]
    finally:
        old.close()


def _slide(job_id: str, index: int) -> dict[str, object]:
    """A slide result row as the pathology server stores it."""
    return {"job_id": job_id, "slide_index": index, "slide": f"s{index}", "path": "/x.png",
            "label": "MSS", "score": 0.2, "mean_probability": 0.2, "msi_tile_share": 0.1,
            "tile_count": 10, "in_distribution_share": 1.0, "reason": "", "error": "",
            "heatmap_path": "", "cam_path": "", "tiles_path": "", "backend": "cpu",
            "server": "server-1", "stored_at": AT}


def _unkeyed(store: PathologyStore) -> None:
    """pathology_slides as stores made before its foreign key hold it (jobstore.py's DDL
    then): no key to its job."""
    real = "DOUBLE PRECISION" if store.postgres else "REAL"
    texts = ("slide", "path", "label")
    more = ("reason", "error", "heatmap_path", "cam_path", "tiles_path", "backend", "server",
            "stored_at")
    columns = ["job_id TEXT NOT NULL", "slide_index INTEGER NOT NULL",
               *(f"{name} TEXT NOT NULL" for name in texts), f"score {real}",
               f"mean_probability {real}", f"msi_tile_share {real}",
               "tile_count INTEGER NOT NULL", f"in_distribution_share {real}",
               *(f"{name} TEXT NOT NULL" for name in more), "PRIMARY KEY (job_id, slide_index)"]
    store.write("DROP TABLE pathology_slides", [()])
    store.write(f"CREATE TABLE pathology_slides ({', '.join(columns)})", [()])


@pytest.mark.parametrize("backend", BACKENDS)
def test_slide_results_are_keyed_to_their_job_and_orphans_kept_aside(
    backend: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else PG_URL
    schema = None if backend == "sqlite" else f"store_fkeys_{uuid.uuid4().hex[:12]}"
    store = open_pathology_store(url, pg_schema=schema)
    try:
        _unkeyed(store)
        request = JobRequest("job-1", (SlideRequest("/s/a.png", 0.5, "a"),), AT)
        assert store.accept(request, "server-1", 60.0)
        assert store.store_slide(_slide("job-1", 0))
        assert store.store_slide(_slide("gone-job", 0))  # no key yet: taken
        store.migrate_pathology()
        assert store.stored_slides("job-1") == {0}
        assert store.query("SELECT job_id FROM pathology_slides_orphaned") == [("gone-job",)]
        with pytest.raises(DATABASE_ERRORS, match=r"(?i)foreign key"):
            store.store_slide(_slide("nowhere", 0))
        assert store.store_slide(_slide("job-1", 1))
        store.migrate_pathology()  # once keyed, left as it is
        assert store.stored_slides("job-1") == {0, 1}
    finally:
        if schema is not None:
            store.drop_postgres_schema(schema)
        store.close()
