"""A kiosk's status says its edge.keep_confirmed_h where it is not the default 48 h, in every
status (the last will too), so that the back office asks it to forget an erased result as long
as it keeps one (appliance/backoffice/kiosk_forgets.py); at the default it says nothing, so a
back office older than the field takes its statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.backoffice.triage import Inbound, Triage
from appliance.config import config_from_mapping
from appliance.edge.testing import fast_daemon


def _status(tmp_path: Path, keep_h: float | None, state: str) -> dict[str, object]:
    edge = {} if keep_h is None else {"keep_confirmed_h": keep_h}
    config = config_from_mapping({
        "device": {"id": "kiosk-w", "site": "lab"},
        "camera": {"source": "synthetic"},
        "mqtt": {"host": "127.0.0.1", "port": 1, "topic_prefix": "forgetwin_t"},
        "state_dir": str(tmp_path / "state"),
        "edge": edge,
    }, "test", environ={})
    daemon = fast_daemon(config)
    try:
        payload = daemon.status.payload(state)
    finally:
        daemon.outbox.close()
    sorted_out, _ = Triage("forgetwin_t", 1000).sort(
        [Inbound("forgetwin_t/lab/kiosk-w/status", payload, 1, 1)])
    assert not sorted_out.dead_letters  # the back office takes it
    return dict(json.loads(payload))


@pytest.mark.parametrize("state", ["online", "offline"])
def test_a_kiosk_says_a_window_other_than_the_default_in_each_status(
    tmp_path: Path, state: str
) -> None:
    assert _status(tmp_path, 96, state)["keep_confirmed_h"] == 96
    assert _status(tmp_path / "zero", 0, state)["keep_confirmed_h"] == 0


def test_a_kiosk_at_the_default_window_says_nothing(tmp_path: Path) -> None:
    assert "keep_confirmed_h" not in _status(tmp_path, None, "online")
    assert "keep_confirmed_h" not in _status(tmp_path / "48", 48, "online")
