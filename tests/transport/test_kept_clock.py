"""A kept result is marked with the back office's time of its ack, so that ``fleet resend
--since T`` (the back office's clock: the backup's newest receipt) finds it whatever this
kiosk's clock says: one that lags (no battery-backed clock, NTP not reached yet) or that jumps."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.logsafe import LineBudget
from appliance.transport import wallclock
from appliance.transport.confirmations import LinkConfirmations, LinkStats
from appliance.transport.outbox import Outbox
from appliance.transport.payloads import Ack
from appliance.transport.resend import ResendRequests
from appliance.transport.unconfirmed import Unconfirmed

HOUR_S = 3600.0
LAG_S = 6 * HOUR_S  # this kiosk's wall clock runs six hours behind the back office's


def ack(ids: list[str], at_s: float) -> bytes:
    return Ack(ids=ids, at=datetime.fromtimestamp(at_s, UTC)).to_json()


def test_a_lagging_kiosk_resends_what_the_back_office_confirmed_after_its_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lagging = wallclock.clock_now
    monkeypatch.setattr(wallclock, "clock_now",
                        lambda: (lagging()[0] - LAG_S, lagging()[1]))
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    confirmations = LinkConfirmations(outbox, "a/s/d/ack", LinkStats(), Unconfirmed(1.0, 2.0),
                                  LineBudget(logging.getLogger(__name__), "test"))
    outbox.add_many([(f"m{i}", "a/s/d/result", b"{}") for i in range(3)])
    backup_s = time.time() - HOUR_S  # the back office's clock
    confirmations.handle_ack(ack(["m0"], backup_s - HOUR_S))  # in the backup
    confirmations.handle_ack(ack(["m1", "m2"], backup_s + HOUR_S / 2))  # after it: lost
    assert outbox.kept_confirmed() == 3
    since_s = backup_s - 15 * 60  # the restore's printed --since
    reopened = outbox.reopen_confirmed(since_s)
    assert [m.measurement_id for m in outbox.get(reopened)] == ["m1", "m2"]
    outbox.close()


def test_a_kept_result_outlives_a_forward_jump_of_the_kiosk_s_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    confirmations = LinkConfirmations(outbox, "a/s/d/ack", LinkStats(), Unconfirmed(1.0, 2.0),
                                  LineBudget(logging.getLogger(__name__), "test"))
    outbox.add_many([("m0", "a/s/d/result", b"{}")])
    synced = wallclock.clock_now
    month_back = lambda: (synced()[0] - 30 * 24 * HOUR_S, synced()[1])  # noqa: E731
    monkeypatch.setattr(wallclock, "clock_now", month_back)  # booted with a month-old date
    confirmations.handle_ack(ack(["m0"], time.time()))
    monkeypatch.setattr(wallclock, "clock_now", synced)  # NTP reached: a month forward
    outbox.expire()
    assert outbox.kept_confirmed() == 1
    outbox.close()


def test_a_lagging_kiosk_takes_a_request_whose_time_is_ahead_of_its_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the request's time is on the back office's clock, as the kept results' are: a kiosk whose
    # own clock lags six hours takes it (it refused it as "in the future") and sends them again
    real_time = time.time
    backup_s = real_time() - HOUR_S
    outbox = Outbox(tmp_path / "o.db", keep_confirmed_s=48 * HOUR_S)
    confirmations = LinkConfirmations(outbox, "a/s/d/ack", LinkStats(), Unconfirmed(1.0, 2.0),
                                      LineBudget(logging.getLogger(__name__), "test"))
    outbox.add_many([("m0", "a/s/d/result", b"{}")])
    confirmations.handle_ack(ack(["m0"], backup_s + HOUR_S / 2))
    reopened: list[int] = []
    requests = ResendRequests(LineBudget(logging.getLogger(__name__), "test"),
                              lambda since_s: reopened.extend(outbox.reopen_confirmed(since_s)))
    monkeypatch.setattr(time, "time", lambda: real_time() - LAG_S)
    since = datetime.fromtimestamp(backup_s - 15 * 60, UTC).isoformat().replace("+00:00", "Z")
    requests.handle(json.dumps({"since": since}).encode(), "a/s/d/cmd/resend")
    assert [m.measurement_id for m in outbox.get(reopened)] == ["m0"]
    outbox.close()
