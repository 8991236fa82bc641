"""The kiosk's answer to a resend request from outside: a hostile or malformed one (no time,
a time in the future, not UTC, huge, not JSON) is refused with a line saying why and changes
nothing; a flood of valid ones is taken once a minute; a valid one has the kept results
confirmed since its time wait again."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.logsafe import LineBudget
from appliance.transport.outbox import Outbox
from appliance.transport.resend import (
    MAX_REQUEST_BYTES,
    ResendRequestError,
    ResendRequests,
    parse_request,
)

TOPIC = "appliance/lab/kiosk-1/cmd/resend"


def request(since: str) -> bytes:
    return json.dumps({"since": since}).encode()


def iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("raw", "why"), [
    (request("yesterday"), "is no ISO 8601 time"),
    (request("2026-12-07T03:00:00"), "is not in UTC"),
    (request("2026-12-07T03:00:00+01:00"), "is not in UTC"),
    (request(iso(time.time() + 3600)), "in the future"),
    (b'{"since": "2026-12-07T03:00:00Z", "' + b"x" * MAX_REQUEST_BYTES + b'": 1}', "bytes, more"),
    (b"\xff\xfe", "not JSON"),
    (b'["2026-12-07T03:00:00Z"]', 'not {"since"'),
    (b'{"since": "2026-12-07T03:00:00Z", "all": true}', 'not {"since"'),
    (b'{"since": 1733540400}', 'not {"since"'),
], ids=["no-time", "no-zone", "other-zone", "future", "too-long", "not-json", "a-list",
        "more-keys", "a-number"])
def test_a_request_that_is_none_is_refused_saying_why(raw: bytes, why: str) -> None:
    with pytest.raises(ResendRequestError, match=why):
        parse_request(raw, time.time())


def kept_outbox(tmp_path: Path) -> Outbox:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * 3600.0)
    outbox.add_many([(f"m{i}", "t/result", b"{}") for i in range(5)])
    outbox.remove_ids([f"m{i}" for i in range(5)])
    return outbox


def test_hostile_requests_change_nothing_and_each_is_said_within_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = kept_outbox(tmp_path)
    budget = LineBudget(logging.getLogger("test.resend"), "ignored messages", per_window=3)
    requests = ResendRequests(budget, outbox.reopen_confirmed)
    hostile = [request("not a time"), request(iso(time.time() + 86400)), b"x" * 70_000,
               request("2026-12-07T03:00:00+05:00"), b"{}"]
    with caplog.at_level(logging.WARNING, logger="test.resend"):
        for raw in hostile:
            requests.handle(raw, TOPIC)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # the budget's lines; the rest counted, said after the window
    assert all(line.startswith(f"refused a resend request on {TOPIC}: ") for line in lines)
    assert all(line.endswith("; nothing changed") for line in lines)
    assert (outbox.depth(), outbox.kept_confirmed()) == (0, 5)
    outbox.close()


def test_a_flood_of_valid_requests_is_taken_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = kept_outbox(tmp_path)
    taken: list[float] = []

    def reopen(since_s: float) -> None:
        taken.append(since_s)
        outbox.reopen_confirmed(since_s)

    requests = ResendRequests(LineBudget(logging.getLogger("test.resend"), "ignored"), reopen)
    since_s = time.time() - 3600
    with caplog.at_level(logging.WARNING, logger="test.resend"):
        for _ in range(1000):
            requests.handle(request(iso(since_s)), TOPIC)
    assert taken == [pytest.approx(since_s, abs=1e-3)]
    assert (outbox.depth(), outbox.kept_confirmed()) == (5, 0)  # the one taken reopened all
    assert "at most one in 60 s" in caplog.records[0].getMessage()
    assert len(caplog.records) == 10  # the rest counted
    outbox.close()


def test_a_request_reopens_only_what_was_confirmed_at_or_after_its_time(tmp_path: Path) -> None:
    outbox = kept_outbox(tmp_path)
    since_s = time.time()
    time.sleep(0.01)
    outbox.add_many([("late", "t/result", b"{}")])
    outbox.remove_ids(["late"])
    requests = ResendRequests(LineBudget(logging.getLogger("test.resend"), "ignored"),
                              outbox.reopen_confirmed)
    requests.handle(request(iso(since_s)), TOPIC)
    assert [m.measurement_id for m in outbox.pending()] == ["late"]
    assert outbox.kept_confirmed() == 5
    outbox.close()


def test_fleet_resend_s_time_ahead_is_said_by_the_clock_it_was_checked_on() -> None:
    """`fleet resend --since` a time ahead said "is in the future by this kiosk's clock", run on
    the back office's host; only that host's clock checks it (a kiosk checks no time ahead)."""
    from appliance.backoffice.fleet_resend import request_body

    ahead = iso(time.time() + 3600)
    with pytest.raises(ValueError, match="in the future") as refused:
        request_body(ahead)
    said = str(refused.value)
    assert said.startswith(f"--since '{ahead}': since {ahead} is in the future by this host's "
                           "clock (now ")
    assert "kiosk" not in said
    assert parse_request(request(ahead), None) > time.time()  # a kiosk takes it
