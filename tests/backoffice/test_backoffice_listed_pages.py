"""Keyset pages of the console's job and rollout lists reach every row once, in order, also
when many rows share one time (the cursor is TIME~ID: the id breaks the tie on both sides of a
page's edge). The browser walk (tests/console/test_console_walk_browser.py) shares times only
when the machine accepts jobs fast enough; here they share one time on purpose."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.pathology.jobstore import PathologyStore, open_pathology_store
from tests.store_helpers import BACKENDS, fresh_store

SAME_TIME = "2026-11-30T08:00:00.000Z"
IDS = [f"r{n:02d}" for n in range(11)]
PAGE = 3  # a page edge falls inside the run of equal times: between r07 and r08, ...


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PathologyStore]:
    """A migrated store of each backend: both compare the cursor as a row value (keyset.py)."""
    with fresh_store(request.param, tmp_path, "listed_pages", open_pathology_store) as opened:
        opened.migrate()
        yield opened


def _walk(read: Callable[..., list[dict[str, Any]]], time_key: str, id_key: str) -> list[str]:
    """Every id the pages give, following each page's last row as the next cursor."""
    shown: list[str] = []
    before = None
    while rows := read(PAGE, before=before):
        shown += [row[id_key] for row in rows]
        before = (rows[-1][time_key], rows[-1][id_key])
        assert len(shown) <= len(IDS), shown  # a cursor that does not move on would loop
    return shown


def test_jobs_accepted_at_one_time_are_each_paged_to_once(store: PathologyStore) -> None:
    store.write("INSERT INTO pathology_jobs (job_id, state, owner, lease_until, request, "
                "submitted_at, accepted_at, updated_at) VALUES (?, 'done', 's', 0, '{}', ?, ?, ?)",
                [(job_id, SAME_TIME, SAME_TIME, SAME_TIME) for job_id in IDS])
    assert _walk(store.pathology_job_rows, "accepted_at", "job_id") == IDS[::-1]


def test_rollouts_started_at_one_time_are_each_paged_to_once(store: PathologyStore) -> None:
    store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        (rollout_id, "skin-texture-grade", "1.2.0", "update", "all", 1, "done", None,
         SAME_TIME, SAME_TIME, "0" * 64) for rollout_id in IDS])
    assert _walk(store.rollout_rows, "created_at", "rollout_id") == IDS[::-1]
