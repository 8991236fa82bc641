"""The back office's counters in its log are said in words, not as a Python repr."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from appliance.backoffice.batcher import IngestStats
from appliance.backoffice.service import run_backoffice
from appliance.config import config_from_mapping
from appliance.transport.broker import free_port


def test_the_stop_line_says_the_counters_in_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """It printed "stopped; ingest: IngestStats(received=0, stored=0, ...)": a newcomer reading
    the journal met a Python class's repr."""
    config = config_from_mapping({
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "stats-words"},
        "state_dir": str(tmp_path / "state"),
        "backoffice": {"client_id": "stats-words"}}, environ={})
    stop = threading.Event()
    stop.set()  # start, then stop at once
    caplog.set_level(logging.INFO, logger="appliance.backoffice.service")
    assert run_backoffice(config, stop) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped")]
    assert said == ["stopped; ingest: 0 messages in 0 batches: 0 results stored, 0 duplicates, "
                    "0 dead letters, 0 statuses, 0 model reports"]


def test_what_was_refused_or_failed_is_said_only_where_it_happened() -> None:
    """One of a kind is said in the singular; the rate refusals and failures follow the
    messages, each only where its count is not zero."""
    stats = IngestStats(received=9, batches=1, stored=1, duplicates=2, dead_letters=1,
                        statuses=1, over_rate=3, statuses_over_rate=1, commit_failures=1)
    assert stats.in_words() == (
        "9 messages in 1 batch: 1 result stored, 2 duplicates, 1 dead letter, 1 status, "
        "0 model reports; over their kiosk's rate: 3 results, 1 status; 1 failed commit")
