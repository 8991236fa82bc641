"""What a status the broker queued for a stopped worker leaves, taken late (a queue replayed):
it was sent before the stored status of its kiosk's boot (the boot stamps of
appliance/transport/bootstamp.py), so it reads the kiosk's clock behind by its wait, and it
is older news than the stored one. SQLite and PostgreSQL, through the worker's own triage and
writes, in one batch and in a batch the store refuses whole (written part by part)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.batcher import BatchWriter
from appliance.backoffice.fleet import fleet_rows
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Batch, Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.config import BackofficeConfig
from appliance.synthetic import fleet
from appliance.transport.bootstamp import BootStamp
from appliance.transport.payloads import Result, Status
from tests.store_helpers import BACKENDS, fresh_store

PREFIX = "statorder2"
BOOT = "4242424242"
KEEP = (1000,)  # dead letters kept, in rows


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "statorder2_replay", open_store) as opened:
        yield opened


def _status(at: datetime, depth: int, state: str = "online") -> Inbound:
    status = fleet.online_status("lab", "kiosk-1", outbox_depth=depth).model_copy(
        update={"at": at, "state": state})
    return _message("status", status)


def _result(captured_at: datetime) -> Inbound:
    result = fleet.sample_result(random.Random(7), "lab", "kiosk-1", 1).model_copy(
        update={"captured_at": captured_at})
    return _message("result", result)


def _message(leaf: str, payload: Status | Result) -> Inbound:
    return Inbound(f"{PREFIX}/lab/kiosk-1/{leaf}", payload.to_json(), mid=1, qos=1)


def _came(message: Inbound, received: datetime, stamp: BootStamp | None = None) -> Inbound:
    """``message`` as the worker hands it over, received at ``received``, stamped ``stamp``."""
    return Inbound(message.topic, message.payload, message.mid, message.qos,
                   received=received, boot=stamp)


def _sorted(*messages: Inbound) -> Batch:
    return Triage(PREFIX, 65536).sort(list(messages))[0]


def _device(store: Store) -> dict[str, Any]:
    (row,) = fleet_rows(store)
    return row


def _placed(store: Store) -> str:
    ((placed_at,),) = store.query("SELECT placed_at FROM results")
    return str(placed_at)


def _queue_behind_a_stored_status(store: Store) -> tuple[Batch, datetime]:
    """The kiosk's status stamped 2 s into its boot, read as it came 5 minutes ago (its clock
    right), stored; then the batch of a worker back from a stop: the status the kiosk sent a
    second before that one and a result it captured a second before that, both queued for the
    worker meanwhile. Returns the batch and the result's capture."""
    now = datetime.now(UTC)
    sent = now - timedelta(minutes=5)
    store.write_batch(_sorted(_came(_status(sent, depth=2), sent, (BOOT, 2000, 500))), *KEEP)
    captured = sent - timedelta(seconds=2)
    return _sorted(_came(_result(captured), now),
                   _came(_status(sent - timedelta(seconds=1), depth=1), now,
                         (BOOT, 1000, 500))), captured


def test_a_result_queued_with_a_replayed_status_is_placed_by_the_newer_stored_reading(
    store: Store,
) -> None:
    """Before, the result was placed by the queued status's reading, the clock read behind by
    the 5 minutes it waited: placed 1 s before its receipt, 5 minutes after its capture."""
    batch, captured = _queue_behind_a_stored_status(store)
    store.write_batch(batch, *KEEP)
    assert _placed(store) == iso_utc(captured)
    assert _device(store)["clock_ahead_s"] == 0.0
    assert _device(store)["outbox_depth"] == 2


def test_a_batch_written_part_by_part_keeps_no_replayed_status_s_reading(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store refuses the batch whole (made to, here), so the worker writes it part by
    part (batcher._commit_apart): before, the result's part wrote the queued status's reading
    over the stored one (-301 s, behind by the wait) and placed the result by it."""
    batch, captured = _queue_behind_a_stored_status(store)
    write_batch = store.write_batch

    def refusing_whole_batches(part: Batch, *keep: Any) -> list[str]:
        if len(part.results) + len(part.statuses) > 1:
            raise sqlite3.IntegrityError("made to refuse the batch as a whole")
        return write_batch(part, *keep)

    monkeypatch.setattr(store, "write_batch", refusing_whole_batches)
    writer = BatchWriter(store, BackofficeConfig(), Triage(PREFIX, 65536), lambda _: None)
    writer._committed(batch)  # noqa: SLF001  (the worker's commit, without its broker)
    assert writer.stats.commit_failures == 1  # written apart
    assert _device(store)["clock_ahead_s"] == 0.0
    assert _placed(store) == iso_utc(captured)
    assert _device(store)["outbox_depth"] == 2


def test_a_replayed_status_does_not_make_an_offline_kiosk_look_recently_seen(
    store: Store,
) -> None:
    """A kiosk's birth (2 s into its boot, its link connected 0.5 s in), then its last will
    (stamped as the link connected) 90 s later, stored as they came an hour ago; then a worker
    back from a stop takes both from its queue, one a batch and both in one: the fleet still
    says the kiosk was last seen as the will came (before: now, by the late receipts)."""
    now = datetime.now(UTC)
    born, lost = now - timedelta(hours=1), now - timedelta(minutes=58, seconds=30)
    birth, will = (_status(born, depth=2),
                   _status(born - timedelta(seconds=1.5), depth=0, state="offline"))
    birth_stamp, will_stamp = (BOOT, 2000, 500), (BOOT, 500, 500)
    store.write_batch(_sorted(_came(birth, born, birth_stamp)), *KEEP)
    assert (_device(store)["state"], _device(store)["last_seen"]) == ("online", iso_utc(born))
    store.write_batch(_sorted(_came(will, lost, will_stamp)), *KEEP)  # news: it moves
    assert (_device(store)["state"], _device(store)["last_seen"]) == ("offline", iso_utc(lost))
    replayed = [_came(birth, now, birth_stamp), _came(will, now, will_stamp)]
    for messages in ([replayed[0]], [replayed[1]], replayed):
        store.write_batch(_sorted(*messages), *KEEP)
        shown = _device(store)
        assert (shown["state"], shown["last_seen"], shown["outbox_depth"]) == (
            "offline", iso_utc(lost), 2)


def test_a_kiosk_s_stamped_statuses_in_one_batch_leave_what_they_leave_one_by_one(
    store: Store,
) -> None:
    """What a batch of one boot's statuses leaves (status_order.latest_statuses, then one
    upsert: seen_before in Python, SEEN_BEFORE in SQL) is what they leave one batch each:
    state, last seen and details, over 40 drawn mixes of replayed and new statuses and wills."""
    rng, now, triage = random.Random(5), datetime.now(UTC), Triage(PREFIX, 65536)
    for trial in range(40):
        drawn = []
        for depth in range(rng.randint(2, 5)):
            link_ms, state = rng.choice([500, 1000, 5000]), rng.choice(["online", "offline"])
            since_ms = link_ms if state == "offline" else link_ms + rng.choice([0, 100, 2000])
            drawn.append((fleet.online_status("lab", "x", outbox_depth=depth).model_copy(
                update={"at": now - timedelta(seconds=rng.randint(0, 100)), "state": state}),
                now - timedelta(seconds=rng.randint(0, 50)), (BOOT, since_ms, link_ms)))
        for device in (f"one-{trial}", f"all-{trial}"):
            messages = [Inbound(f"{PREFIX}/lab/{device}/status", status.model_copy(
                update={"device_id": device}).to_json(), 1, 1, received=received, boot=stamp)
                for status, received, stamp in drawn]
            for batch in ([[m] for m in messages] if device.startswith("one") else [messages]):
                store.write_batch(triage.sort(batch)[0], *KEEP)
        rows = {row["device_id"]: row for row in store.devices()}
        one, at_once = rows[f"one-{trial}"], rows[f"all-{trial}"]
        compared = ("state", "last_seen", "outbox_depth", "status_at")
        assert {key: at_once[key] for key in compared} == {key: one[key] for key in compared}, \
            (trial, drawn)
