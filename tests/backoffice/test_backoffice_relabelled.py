"""A result a kiosk sends again under its own identity (a held-back clone given its own device
id, appliance/edge/relabel.py) that the store already holds under the shared id is a re-send:
it stays stored under the first id and is no dead letter, so no prune can count it lost."""

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
    with fresh_store(request.param, tmp_path, "store_relabel", open_store) as opened:
        yield opened


def _row(result: Result) -> tuple[object, ...]:
    return result_row(result, AT, result.to_json().decode())


def _measured_on_the_clone() -> tuple[Result, Result]:
    """A result sent under the shared id ``k1``, and the same one relabelled as ``k2``'s."""
    shared = fleet.sample_result(random.Random(7), "lab", "k1", 7)
    return shared, shared.model_copy(update={"site": "lab2", "device_id": "k2"})


def test_a_relabelled_result_already_stored_is_a_resend_not_a_dead_letter(
    store: Store,
) -> None:
    shared, relabelled = _measured_on_the_clone()
    store.write_batch(Batch(results=[_row(shared)], topic_prefix="p"), 1)
    again = Batch(results=[_row(relabelled)], topic_prefix="p")
    assert store.write_batch(again, 1) == []
    assert store.dead_letters() == []
    assert again.pruned_only_copies == {}
    assert list(store.select_results(["measurement_id", "site", "device_id"])) == [
        (shared.measurement_id, "lab", "k1")]


def test_both_copies_in_one_batch_store_the_first(store: Store) -> None:
    shared, relabelled = _measured_on_the_clone()
    both = Batch(results=[_row(shared), _row(relabelled)], topic_prefix="p")
    assert store.write_batch(both, 1) == [shared.measurement_id]
    assert store.dead_letters() == []


def test_other_content_under_the_same_id_is_still_a_conflict(store: Store) -> None:
    shared, relabelled = _measured_on_the_clone()
    forged = relabelled.model_copy(update={"software_version": "forged"})
    store.write_batch(Batch(results=[_row(shared)], topic_prefix="p"), 10)
    assert store.write_batch(Batch(results=[_row(forged)], topic_prefix="p"), 10) == []
    (letter,) = store.dead_letters()
    assert "already stored with other content" in letter.reason
    assert letter.topic == "p/lab2/k2/result"


def test_retry_clears_a_relabelled_copy_kept_as_a_conflict_before(store: Store) -> None:
    """A store that set such a copy aside as a conflict (before this) lets `results retry`
    take it as the re-send it is: the letter goes, the result stays under the shared id."""
    shared, relabelled = _measured_on_the_clone()
    store.write_batch(Batch(results=[_row(shared)], topic_prefix="p"), 10)
    letter = dead_letter(AT, "p/lab2/k2/result", f"measurement_id {shared.measurement_id} "
                         "already stored with other content; not stored", relabelled.to_json())
    store.write_batch(Batch(dead_letters=[letter], topic_prefix="p"), 10)
    judge = lambda topic, payload: [  # noqa: E731 - the retry command's judge, in short
        result_row(Result.model_validate_json(payload), AT, payload.decode())]
    assert store.retry_dead_letters(judge) == (0, 0)
    assert store.dead_letters() == []
    assert list(store.select_results(["device_id"])) == [("k1",)]
