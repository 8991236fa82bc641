"""A kiosk's statuses in one batch are written as one upsert (status_order.latest_statuses),
which leaves its device row as the upserts one by one did; SQLite and PostgreSQL. Before, each
status of a batch was an upsert of its own, so a flood of statuses on one kiosk's topic wrote
the database once a message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.synthetic import fleet
from appliance.transport.payloads import Status
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
COMPARED = ("state", "status_at", "software_version", "camera", "outbox_depth", "dropped")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_status_batch", open_store) as opened:
        yield opened


def _statuses(device: str, count: int, start: datetime) -> list[Inbound]:
    """``count`` live online statuses of lab/``device``, a second apart, the outbox growing,
    then its last will: "offline", as of its connect (older than all of them)."""
    statuses = []
    for i in range(count):
        status = fleet.online_status("lab", device, outbox_depth=i).model_copy(
            update={"at": start + timedelta(seconds=i), "camera": "online" if i % 2 else
                    "offline"})
        statuses.append(status)
    will = Status(device_id=device, site="lab", state="offline", at=start - timedelta(hours=1))
    return [Inbound(f"appliance/lab/{device}/status", status.to_json(), i + 1, 1)
            for i, status in enumerate([*statuses, will])]


def _device(store: Store, device: str) -> dict[str, Any]:
    (row,) = [row for row in store.devices() if row["device_id"] == device]
    return row


def test_a_kiosk_s_statuses_in_one_batch_are_one_upsert_that_leaves_the_row_as_one_by_one(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    upserted: list[int] = []
    upsert = store._upsert_statuses  # noqa: SLF001  (the write counted)

    def counted(cur: Any, rows: Any) -> None:
        upserted.append(len(rows))
        upsert(cur, rows)

    monkeypatch.setattr(store, "_upsert_statuses", counted)
    start = datetime.now(UTC) - timedelta(minutes=1)
    triage = Triage("appliance", 2**20)
    for message in _statuses("one-by-one", 40, start):
        store.write_batch(triage.sort([message])[0], *KEEP)
    assert upserted == [1] * 41
    upserted.clear()
    batch, _ = triage.sort(_statuses("at-once", 40, start))
    store.write_batch(batch, *KEEP)
    assert upserted == [1]  # before: [41]
    one_by_one, at_once = _device(store, "one-by-one"), _device(store, "at-once")
    assert {key: at_once[key] for key in COMPARED} == {key: one_by_one[key] for key in COMPARED}
    assert at_once["state"] == "offline"  # the will came last
    assert at_once["outbox_depth"] == 39  # the newest online status's outbox, kept
    # the clock as the newest live status read it: about 59 s behind, read now
    assert at_once["clock_ahead_s"] == pytest.approx(-21, abs=5)
    assert at_once["clock_read_at"] == max(row["last_seen"] for row in (at_once, one_by_one))
