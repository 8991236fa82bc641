"""Two links under one client id on a private mosquitto: each connect takes the other's
connection (MQTT 5 spec 3.1.4), and the broker answers each one's subscribe first."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from appliance.transport.broker import PrivateBroker
from appliance.transport.churn import SHORT_S, Reconnects
from tests.transport.test_transport_mqtt import make_link, stop

pytestmark = pytest.mark.broker

LOST = re.compile(r"lost the broker \(reason \d+\); reconnecting in ([0-9.]+) s")


def test_two_kiosks_under_one_client_id_back_off_instead_of_taking_turns_twice_a_second(
    private_broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each take-over came after the broker had answered the subscribe, so each connection
    counted as one that worked and the delay started again: both kiosks reconnected after the
    first delay for ever. A connection lost within ``SHORT_S`` of its start resets nothing."""
    links = [make_link(tmp_path / name, private_broker.host, private_broker.port,
                       "churn/takeover", reconnect_initial_s=0.05, reconnect_cap_s=0.8)
             for name in ("a", "b")]
    with caplog.at_level(logging.WARNING, logger="appliance.transport.mqtt"):
        for link in links:
            link.start()
        try:
            assert wait_until(lambda: all(len(_delays(caplog, link)) >= 6 for link in links),
                              timeout_s=60)
        finally:
            for link in links:
                stop(link)
    for link in links:
        delays_s = _delays(caplog, link)
        assert delays_s[5] > 0.5, delays_s  # 0.05 s doubled four times is 0.8 s (+-20 %)


def test_the_delay_starts_again_once_a_connection_lasts() -> None:
    now = [0.0]
    reconnects = Reconnects(1.0, 8.0, "edge-s-d", "d", clock=lambda: now[0])

    def lost_after(lasted_s: float) -> float:
        reconnects.connected()
        reconnects.subscribed()
        now[0] += lasted_s
        return reconnects.lost(128)

    taken_over = [lost_after(0.5) for _ in range(5)]
    assert min(taken_over[3:]) > 6.0, taken_over  # 8 s (+-20 %)
    assert lost_after(SHORT_S + 1.0) < 1.3  # lasted: from the first delay again
    assert lost_after(0.5) > 1.5  # and growing again while the take-overs go on


def _delays(caplog: pytest.LogCaptureFixture, link: object) -> list[float]:
    """The delays ``link`` logged after each lost connection, in order."""
    ident = getattr(link, "ident", None)
    return [float(match.group(1)) for record in caplog.records
            if record.thread == ident and (match := LOST.search(record.getMessage()))]
