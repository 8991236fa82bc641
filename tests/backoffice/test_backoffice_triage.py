"""Sorting messages into results, status and dead letters, without a broker."""

from __future__ import annotations

import random

import pytest

from appliance.backoffice import batcher, fleetsim
from appliance.backoffice.batcher import Inbound, Triage


def _result_bytes() -> bytes:
    return fleetsim.sample_result(random.Random(1), "lab", "k1", 0).to_json()


def test_results_status_and_junk_are_sorted_apart() -> None:
    status = fleetsim.online_status("lab", "k1").to_json()
    messages = [
        Inbound("p/lab/k1/result", _result_bytes(), 1, 1),
        Inbound("p/lab/k1/status", status, 2, 1),
        Inbound("p/lab/k1/status", b"", 3, 1),  # a cleared retained status: nothing to store
        Inbound("p/lab/k1/result", b"{}", 4, 1),
        Inbound("other/lab/k1/result", _result_bytes(), 5, 1),
    ]
    batch, results = Triage("p", 1000).sort(messages)
    assert [r.device_id for r in results] == ["k1"]
    assert len(batch.results) == 1
    assert len(batch.statuses) == 1
    reasons = [d.reason for d in batch.dead_letters]
    assert reasons[0].startswith("measurement_id: Field required")
    assert reasons[1] == "not a device result or status topic under p"


def test_an_unexpected_error_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(batcher, "parse_result", explode)
    batch, results = Triage("p", 4).sort([Inbound("p/lab/k1/result", b"abcdefgh", 1, 1)])
    assert results == []
    (letter,) = batch.dead_letters
    assert letter.reason == "unexpected error: RuntimeError: disk on fire"
    assert letter.payload == b"abcd"
    assert letter.payload_bytes == 8
