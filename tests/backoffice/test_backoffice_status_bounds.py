"""A status whose numbers no kiosk sends (an outbox age of 1e300 seconds, a count past 2**63)
is refused as a dead letter naming the field, and its kiosk's results, in its batch and in a
later one, are stored; SQLite and PostgreSQL. Before, an outbox age that large was stored and
overflowed the date arithmetic that places each result of that kiosk (placed_capture.py), so
the store refused them."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.backoffice.store import Store, open_store
from appliance.backoffice.triage import Inbound, Triage
from appliance.synthetic import fleet
from appliance.transport.payloads import MAX_OUTBOX_AGE_S, PayloadError, Status, parse_payload
from tests.store_helpers import BACKENDS, fresh_store

KEEP = (1000, 2**40)  # dead-letter bounds no test reaches
WHERE = "appliance/lab/kiosk-1"
# (field, a value no kiosk sends): each numeric field of a status the back office stores
HOSTILE = [
    ("outbox_oldest_age_s", 1e300),
    ("outbox_oldest_age_s", 2**64),
    ("outbox_oldest_age_s", MAX_OUTBOX_AGE_S + 1),
    ("outbox_depth", 2**63),
    ("dropped", 2**63),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store of each backend."""
    with fresh_store(request.param, tmp_path, "test_status_bounds", open_store) as opened:
        yield opened


def _status(field: str, value: Any) -> bytes:
    """lab/kiosk-1's live birth status with ``field`` set to ``value``."""
    data = json.loads(fleet.online_status("lab", "kiosk-1").to_json())
    data[field] = value
    return json.dumps(data).encode()


def _result(seed: int) -> bytes:
    return fleet.sample_result(random.Random(seed), "lab", "kiosk-1", seed).to_json()


def _ingest(store: Store, messages: list[tuple[str, bytes]]) -> list[str]:
    """``messages`` (leaf, payload) as one batch of the ingest worker; the dead letters'
    reasons."""
    batch, _ = Triage("appliance", 2**20).sort(
        [Inbound(f"{WHERE}/{leaf}", payload, 1, 1) for leaf, payload in messages])
    store.write_batch(batch, *KEEP)
    return [letter.reason for letter in batch.dead_letters]


def _stored(store: Store) -> set[str]:
    return {str(row[0]) for row in store.select_results(["measurement_id"])}


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_a_hostile_status_is_refused_and_its_kiosks_results_are_stored(
    store: Store, field: str, value: Any
) -> None:
    first, later = _result(1), _result(2)
    reasons = _ingest(store, [("status", _status(field, value)), ("result", first)])
    assert [reason.split(":")[0] for reason in reasons] == [field], reasons
    assert _ingest(store, [("status", _status(field, value))]) == reasons
    assert _ingest(store, [("result", later)]) == []
    assert _stored(store) == {json.loads(first)["measurement_id"],
                              json.loads(later)["measurement_id"]}


def test_the_largest_outbox_age_a_kiosk_can_send_places_its_results(store: Store) -> None:
    """The bound itself is a status like any other: stored, and the kiosk's results with it."""
    result = _result(3)
    assert _ingest(store, [("status", _status("outbox_oldest_age_s", MAX_OUTBOX_AGE_S)),
                           ("result", result)]) == []
    assert _ingest(store, [("result", _result(4))]) == []
    assert len(_stored(store)) == 2
    rows = store.query("SELECT outbox_oldest_age_s FROM devices")
    assert [float(row[0]) for row in rows] == [MAX_OUTBOX_AGE_S]


def test_the_refusal_says_the_limit() -> None:
    with pytest.raises(PayloadError, match=r"outbox_oldest_age_s: .*3155760000"):
        parse_payload(_status("outbox_oldest_age_s", 1e300), Status)


def test_an_outbox_age_stored_before_the_bound_is_cleared_by_the_migration(
    store: Store,
) -> None:
    """A store that took such a status before the bound held it in ``devices`` and refused
    the kiosk's every result after; migration 21 clears it, and a sane age stays."""
    now = fleet.online_status("lab", "kiosk-1").at.isoformat()
    store.write("INSERT INTO devices (site, device_id, last_seen, clock_ahead_s, clock_read_at, "
                "outbox_oldest_age_s) VALUES (?, ?, ?, 0, ?, ?)",
                [("lab", "kiosk-1", now, now, 1e300), ("lab", "kiosk-2", now, now, 3600.0)])
    store.write("DELETE FROM schema_migrations WHERE version = ?", [(21,)])
    assert store.migrate() == [21]
    ages = store.query("SELECT device_id, outbox_oldest_age_s FROM devices ORDER BY device_id")
    assert [(str(device), age) for device, age in ages] == [("kiosk-1", None),
                                                            ("kiosk-2", 3600.0)]
    result = _result(5)
    assert _ingest(store, [("result", result)]) == []
    assert _stored(store) == {json.loads(result)["measurement_id"]}
