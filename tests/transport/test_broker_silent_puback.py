"""A broker that takes the kiosk's connection, its subscriptions and its pings, but never
answers a result it is sent (a stuck broker, or a proxy whose far side is gone): the results
stayed in flight for good on that connection, the window full, nothing sent again and nothing
said. The link now connects again once no PUBACK has come for ``puback_timeout_s``."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from tests.fake_broker import FakeBroker, topic
from tests.transport.test_transport_mqtt import make_link, stop

RESULTS = 5


class _AnswersAllButResults(FakeBroker):
    """CONNACK, SUBACK and PINGRESP like a broker; a result PUBLISH is read and never answered."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[int, bool]] = []  # (connection, DUP flag) of each result

    def publish(self, connection: socket.socket, number: int, first: int, body: bytes) -> bool:
        if topic(body) == "silent/result":  # never answered
            self.results.append((number, bool(first & 0x08)))
        return True


def _later(broker: _AnswersAllButResults) -> list[bool]:
    """The DUP flags of the results sent on a connection after the first."""
    return [dup for number, dup in broker.results if number > 1]


def test_results_a_broker_never_answers_are_sent_again_on_a_new_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = _AnswersAllButResults()
    link = make_link(tmp_path, "127.0.0.1", broker.port, "silent", puback_timeout_s=1.0,
                     reconnect_initial_s=0.1, reconnect_cap_s=0.5)
    link.outbox.add_many([(f"m{i}", "silent/result", b"{}") for i in range(RESULTS)])
    with caplog.at_level(logging.WARNING, logger="appliance.transport.mqtt"):
        link.start()
        try:
            assert wait_until(lambda: len(_later(broker)) >= RESULTS, 15), broker.results
        finally:
            stop(link)
            broker.close()
    assert broker.connections >= 2
    assert all(_later(broker)[:RESULTS])  # sent again as duplicates (DUP): the same results
    assert link.outbox.depth() == RESULTS  # nothing confirmed: all still kept
    assert any(f"no PUBACK from the broker 127.0.0.1:{broker.port} in " in r.getMessage()
               and f"for {RESULTS} result(s) in flight; reconnecting" in r.getMessage()
               for r in caplog.records)
