"""A flood of messages on the kiosk's own topics (malformed acks, commands it does not know,
more commands than its inbox holds) is said within a budget of lines a minute, not one line
each: anyone who may publish there could otherwise fill the journal, and journald's rate limit
would then drop the kiosk's own lines, the ones that matter included. Real mosquitto."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_mapping
from appliance.edge.testing import FlakySource, fast_daemon, fast_source, wait_until
from appliance.transport.acks import encode_acks
from tests.transport.test_transport_mqtt import _started_client, make_link, stop

pytestmark = pytest.mark.broker

FLOOD = 100
LINES_A_MINUTE = 10  # what the budget says one by one in a window (appliance/logsafe.py)


def _said(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


def test_a_flood_of_malformed_acks_and_commands_is_said_within_a_budget_and_summed_up(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.outbox.add_many([(f"m{i}", f"{topic_prefix}/result", b"{}") for i in range(2)])
    sender = _started_client(mqtt_broker)
    with caplog.at_level(logging.WARNING, logger="appliance.transport"):
        link.start()
        try:
            _confirm(link, sender, "m0", 1)  # the link reads its ack topic now
            # commands over what the inbox holds (nobody takes them here), malformed acks,
            # then a good ack; one publisher at QoS 1, so the broker keeps that order
            for i in range(link.inbox.maxsize + 50):
                sender.publish(f"{topic_prefix}/cmd/bogus-{i}", b"{}", qos=1)
            for _ in range(FLOOD):
                sender.publish(link.ack_topic, b'{"ids": 3}', qos=1)
            _confirm(link, sender, "m1", 2)
            assert link.stats.bad_acks == FLOOD
            said = _said(caplog, "malformed ack") + _said(caplog, "command inbox full")
            assert 1 <= len(said) <= LINES_A_MINUTE, len(said)
            # a minute later the link says how many it held back (the budget's clock moves on)
            link.ignored.clock = lambda: time.monotonic() + 61.0
            link.wake()
            assert wait_until(lambda: _said(caplog, "more not said"), 10)
        finally:
            sender.disconnect()
            sender.loop_stop()
            stop(link)
    assert _said(caplog, "more not said") == [
        f"messages on this kiosk's topics ignored: {FLOOD + 50 - len(said)} more not said in "
        f"the last 60 s (at most {LINES_A_MINUTE} said one by one a window)"
    ]


def _confirm(link: Any, sender: Any, measurement_id: str, acked: int) -> None:
    """Ack ``measurement_id`` until the link has removed ``acked`` results in all (the first
    acks may come before its SUBACK, and reach nobody)."""
    for _ in range(20):
        for body in encode_acks([measurement_id]):
            sender.publish(link.ack_topic, body, qos=1).wait_for_publish(5)
        if wait_until(lambda: link.stats.acked == acked, 1):
            return
    pytest.fail(f"the link never took the ack of {measurement_id}")


def test_a_kiosk_says_a_flood_of_unknown_commands_within_the_budget_and_still_obeys(
    mqtt_broker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    config = config_from_mapping({
        "device": {"id": "kiosk-flood", "site": "test"},
        "camera": {"source": "synthetic"},
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
        "edge": {"synthetic_fps": 10},
    }, "test", environ={})
    daemon = fast_daemon(config)
    thread = threading.Thread(target=daemon.run, daemon=True)
    sender = _started_client(mqtt_broker)
    cmd = f"{prefix}/test/kiosk-flood/cmd"
    with caplog.at_level(logging.INFO):
        thread.start()
        try:
            assert wait_until(lambda: daemon.link.connected, 10)
            _commands_until_obeyed(sender, cmd, caplog)
        finally:
            sender.disconnect()
            sender.loop_stop()
            daemon.request_stop()
            thread.join(10)
    unknown = _said(caplog, "unknown command topic")
    assert 1 <= len(unknown) <= LINES_A_MINUTE, len(unknown)


def _commands_until_obeyed(sender: Any, cmd: str, caplog: pytest.LogCaptureFixture) -> None:
    """Unknown commands (fewer than its inbox holds), then a measurement request, until the
    kiosk took one; it takes them in order, so all before it were read."""
    for _ in range(3):
        for i in range(FLOOD // 2):
            sender.publish(f"{cmd}/bogus-{i}", b"{}", qos=1)
        sender.publish(f"{cmd}/measure", b"{}", qos=1).wait_for_publish(5)
        if wait_until(lambda: _said(caplog, "measurement requested over MQTT"), 5):
            return
    pytest.fail("the kiosk never took the measurement request after the flood")


def test_a_flood_of_measurement_requests_is_said_once_while_one_is_pending(
    mqtt_broker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each cmd/measure was one journal line, though the requests after the first, until a
    measurement takes it, change nothing: a flood was a line a message."""
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    config = config_from_mapping({
        "device": {"id": "kiosk-asked", "site": "test"},
        "camera": {"source": "synthetic"},
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "topic_prefix": prefix},
        "state_dir": str(tmp_path / "state"),
    }, "test", environ={})
    camera = FlakySource(fast_source(config))
    camera.failing.set()  # unplugged: no measurement takes the request
    daemon = fast_daemon(config, camera)
    thread = threading.Thread(target=daemon.run, daemon=True)
    sender = _started_client(mqtt_broker)
    cmd = f"{prefix}/test/kiosk-asked/cmd"
    with caplog.at_level(logging.INFO):
        thread.start()
        try:
            assert wait_until(lambda: daemon.link.connected, 10)
            for _ in range(5):  # the first ones may come before the kiosk's SUBACK
                for _ in range(FLOOD // 2):
                    sender.publish(f"{cmd}/measure", b"{}", qos=1)
                # taken in order: once this one is said, every request before it was read
                sender.publish(f"{cmd}/bogus", b"{}", qos=1).wait_for_publish(5)
                if wait_until(lambda: _said(caplog, "unknown command topic"), 5):
                    break
        finally:
            sender.disconnect()
            sender.loop_stop()
            daemon.request_stop()
            thread.join(10)
    assert _said(caplog, "unknown command topic")
    assert len(_said(caplog, "measurement requested over MQTT")) == 1
