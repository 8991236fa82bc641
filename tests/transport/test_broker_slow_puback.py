"""A broker that answers each result slowly, but within ``puback_timeout_s``, and is alive.

Here a proxy in front of the machine's mosquitto holds each PUBACK back 0.25-2.5 s (in order),
against a silence limit of 3 s: the fleet's 5-50 s against 60 s, scaled down 20 times. The
back office (the real ingest worker) commits each result and acks it long before its PUBACK
reaches the kiosk. The link must keep its one connection, deliver every result, and send none
twice: the PUBACK of a result already confirmed starts no wait for a confirmation.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.edge.testing import wait_until
from appliance.synthetic import fleet
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.topics import device_topic
from tests.edge.test_edge_delivery import backoffice, count_stored, site_of
from tests.fake_broker import packet as read_packet
from tests.fake_broker import topic as topic_of
from tests.transport.test_transport_mqtt import stop

pytestmark = pytest.mark.broker
RESULTS = 12
PUBACK_TIMEOUT_S = 3.0
PUBACK_DELAY_S = (0.25, 2.5)
PUBACK = 4
PUBLISH = 3
CONFIRM_WAIT_S = 3.0  # edge.ack_resend_initial_s: room for a back office slowed by a busy machine


def _encoded(first: int, body: bytes) -> bytes:
    """The packet again as bytes: its first byte, its remaining length, its body."""
    length, out = len(body), bytearray([first])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out + body)


class SlowPubackProxy:
    """Forwards MQTT between one client and the broker; holds each PUBACK to the client back a
    seeded random delay, keeping their order; counts the results the client publishes."""

    def __init__(self, broker: Any, seed: int) -> None:
        self.broker, self.rng = broker, random.Random(seed)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.results: list[tuple[str, bool]] = []  # (topic, DUP flag) of each result published
        self.delays_s: list[float] = []
        self._due: list[tuple[float, int, bytes]] = []  # (when, order, packet) to the client
        self._wake = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                client, _ = self.server.accept()
                self.connections += 1
                upstream = socket.create_connection((self.broker.host, self.broker.port))
                for target in (self._up, self._down, self._send):
                    threading.Thread(target=target, args=(client, upstream), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while (packet := read_packet(client)) is not None:
                first, body = packet
                if first >> 4 == PUBLISH and topic_of(body).endswith("/result"):
                    self.results.append((topic_of(body), bool(first & 0x08)))
                upstream.sendall(_encoded(first, body))
        upstream.close()

    def _down(self, client: socket.socket, upstream: socket.socket) -> None:
        last_s = 0.0
        with contextlib.suppress(OSError):
            while (packet := read_packet(upstream)) is not None:
                first, body = packet
                when_s = time.monotonic()
                if first >> 4 == PUBACK:
                    delay_s = self.rng.uniform(*PUBACK_DELAY_S)
                    when_s = last_s = max(last_s, when_s + delay_s)
                    self.delays_s.append(delay_s)
                with self._wake:
                    heapq.heappush(self._due, (when_s, len(self.delays_s), _encoded(first, body)))
                    self._wake.notify()
        client.close()

    def _send(self, client: socket.socket, _upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                with self._wake:
                    while not self._due or self._due[0][0] > time.monotonic():
                        self._wake.wait(0.01)
                    _when, _order, data = heapq.heappop(self._due)
                client.sendall(data)

    def close(self) -> None:
        self.server.close()


def test_a_broker_slow_to_answer_keeps_the_connection_and_no_result_goes_twice(
    tmp_path: Path, mqtt_broker: Any, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a back office's ack that came before the result's slow PUBACK was forgotten at the
    # PUBACK: the result then waited for a confirmation already had, and a resend round came
    # for nothing ("0 result(s) not confirmed by the back office; sent again"), doubling the
    # wait and taking a round's places from results really unconfirmed
    site, device = site_of(topic_prefix), "kiosk-slow"
    worker, store = backoffice(tmp_path, mqtt_broker, topic_prefix)
    proxy = SlowPubackProxy(mqtt_broker, seed=20261205)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    topic = device_topic(topic_prefix, site, device, "result")
    results = [fleet.sample_result(random.Random(5), site, device, i) for i in range(RESULTS)]
    outbox.add_many([(r.measurement_id, topic, r.to_json()) for r in results])
    link = MqttLink(
        LinkSettings("127.0.0.1", proxy.port, f"edge-{site}-{device}",
                     puback_timeout_s=PUBACK_TIMEOUT_S,
                     ack_resend_initial_s=CONFIRM_WAIT_S, ack_resend_cap_s=2 * CONFIRM_WAIT_S),
        outbox,
        status_topic=device_topic(topic_prefix, site, device, "status"),
        status_payload=lambda state: f'{{"state": "{state}"}}'.encode(),
        ack_topic=device_topic(topic_prefix, site, device, "ack"),
    )
    with caplog.at_level(logging.INFO, logger="appliance.transport"):
        link.start()
        try:
            assert wait_until(lambda: link.stats.broker_acked == RESULTS, 30)
            assert wait_until(lambda: count_stored(tmp_path) == RESULTS, 10)
            assert wait_until(link.idle, 10)  # every result confirmed and out of the outbox
            time.sleep(CONFIRM_WAIT_S + 1.0)  # a resend round for nothing would have come by now
        finally:
            stop(link)
            proxy.close()
            worker.stop()
            store.close()
    assert max(proxy.delays_s) > PUBACK_TIMEOUT_S / 2  # slow: half the silence limit and more
    assert proxy.connections == 1  # never taken for a silent broker
    assert proxy.results == [(topic, False)] * RESULTS  # each result went once, never again
    assert link.stats.resent == 0
    assert not [r.getMessage() for r in caplog.records if "sent again" in r.getMessage()]
