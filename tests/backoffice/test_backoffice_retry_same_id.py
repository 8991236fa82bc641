"""`appliance results retry` with two dead letters under one measurement id whose contents
differ: one retry stores the first, removes its letter and keeps (and counts) the other. Both
letters stayed, so the stored one's letter was removed only by the next retry."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.backoffice.schema import dead_letter, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.synthetic import fleet
from appliance.transport.payloads import Result
from tests.store_helpers import BACKENDS, fresh_store

AT = "2026-12-05T00:00:00.000000Z"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "retry_same_id", open_store) as opened:
        yield opened


def _judge(topic: str, payload: bytes) -> list[tuple[object, ...]]:
    """The retry command's judge, in short: every letter is taken now."""
    return [result_row(Result.model_validate_json(payload), AT, payload.decode())]


def test_one_retry_stores_one_of_two_letters_under_one_id_and_keeps_the_other(
    store: Store,
) -> None:
    first = fleet.sample_result(random.Random(3), "lab", "k1", 3)
    other = first.model_copy(update={"software_version": "other"})
    letters = [dead_letter(AT, "p/lab/k1/result", "captured_at too far ahead; not stored",
                           result.to_json()) for result in (first, other)]
    store.write_batch(Batch(dead_letters=letters, topic_prefix="p"), 10)
    assert len(store.dead_letters()) == 2
    assert store.retry_dead_letters(_judge) == (1, 1)
    (kept,) = store.dead_letters()
    assert Result.model_validate_json(kept.payload).software_version == "other"
    assert list(store.select_results(["measurement_id", "software_version"])) == [
        (first.measurement_id, first.software_version)]
    assert store.retry_dead_letters(_judge) == (0, 1)  # settled: the next retry changes nothing
    assert len(store.dead_letters()) == 1
