"""The link's record of its session's subscriptions, on a real mosquitto: a config change
unsubscribes what is no longer wanted and keeps what was queued for what still is; a message
queued under an old subscription never reaches the kiosk's commands; a record that is no use
starts a clean session."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from appliance.edge.testing import wait_until
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings, new_client
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.session_topics import SessionTopics

pytestmark = pytest.mark.broker
CLIENT_ID = "session-topics-kiosk"


def link(tmp_path: Path, port: int, *commands: str) -> MqttLink:
    return MqttLink(LinkSettings("127.0.0.1", port, CLIENT_ID), Outbox(tmp_path / "outbox.db"),
                    status_topic="st/status", status_payload=lambda state: b"{}",
                    ack_topic="st/ack", subscriptions=commands,
                    session_file=tmp_path / "session-topics.json")


def run_until_settled(running: MqttLink) -> None:
    running.start()
    assert wait_until(lambda: running.connected and not running.subscriptions.session.stale, 10)


def stop(running: MqttLink) -> None:
    running.stop_event.set()
    running.wake()
    running.join(10)


def send(port: int, *topics: str) -> None:
    sender = new_client(LinkSettings("127.0.0.1", port, "session-topics-sender"))
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    for topic in topics:
        sender.publish(topic, topic.encode(), qos=1).wait_for_publish(5)
    sender.disconnect()
    sender.loop_stop()


def test_a_changed_set_keeps_what_was_queued_for_the_topics_still_wanted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with PrivateBroker(workdir=tmp_path / "broker") as broker:
        first = link(tmp_path, broker.port, "old/cmd/#", "both/notice")
        run_until_settled(first)
        stop(first)
        send(broker.port, "both/notice", "old/cmd/measure")  # queued in the session meanwhile
        second = link(tmp_path, broker.port, "new/cmd/#", "both/notice")
        with caplog.at_level(logging.WARNING):
            run_until_settled(second)
            assert wait_until(lambda: second.inbox.qsize() >= 1, 5)
            send(broker.port, "old/cmd/measure", "new/cmd/measure")
            assert wait_until(lambda: second.inbox.qsize() >= 2, 5)
            stop(second)
    got = [second.inbox.get_nowait().topic for _ in range(second.inbox.qsize())]
    assert got == ["both/notice", "new/cmd/measure"]
    assert "ignored a message on old/cmd/measure" in caplog.text  # queued before unsubscribing
    kept = json.loads((tmp_path / "session-topics.json").read_text())
    assert kept["topics"] == ["st/ack", "new/cmd/#", "both/notice"]


@pytest.mark.parametrize("content", [b"\xff", b"[]", b'{"schema": "x"}', b"{" * 100_000,
                                     b'{"schema": "appliance.session-topics/1", '
                                     b'"client_id": "another", "topics": []}'])
def test_a_record_that_is_no_use_starts_a_clean_session_and_says_so(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "session-topics.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        session = SessionTopics(path, CLIENT_ID, ("a/ack",))
    assert session.clean_start()
    assert str(path) in caplog.text
    assert "starts a clean session" in caplog.text
