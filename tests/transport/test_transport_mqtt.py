"""The MQTT link against a real mosquitto: delivery, properties, birth/will, commands, auth."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from appliance.edge.testing import wait_until
from appliance.transport.acks import encode_acks
from appliance.transport.broker import PrivateBroker, free_port, port_open
from appliance.transport.callbacks import QueuedCallbacks
from appliance.transport.client import BrokerRefusedError, LinkSettings, new_client
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox
from appliance.transport.subscriber import Subscriber as FactorySubscriber
from tests.disk_helpers import fill, small_tmpfs

pytestmark = pytest.mark.broker


class Subscriber:
    """A plain MQTT v5 subscriber that keeps every message with its properties; with
    ``ack_topic`` it confirms each ``{"id": ...}`` payload there, as the back office does."""

    def __init__(
        self, host: str, port: int, topic_filter: str, ack_topic: str | None = None
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.ack_topic = ack_topic
        self._ready = threading.Event()
        self.client = new_client(LinkSettings(host, port, ""))
        self.client.on_connect = lambda c, *_: (c.subscribe(topic_filter, qos=1), None)[1]
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._ready.wait(5)

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append(message)
        if self.ack_topic is not None:
            for body in encode_acks([json.loads(message.payload)["id"]]):
                client.publish(self.ack_topic, body, qos=1)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[mqtt.MQTTMessage]:
        wait_until(lambda: len(self.messages) >= count, timeout_s)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_link(tmp_path: Path, host: str, port: int, prefix: str, **settings: Any) -> MqttLink:
    outbox = Outbox(tmp_path / "outbox.db")
    return MqttLink(
        LinkSettings(host, port, f"link-{prefix.replace('/', '-')}"[:60], **settings),
        outbox,
        status_topic=f"{prefix}/status",
        status_payload=lambda state: f'{{"state": "{state}"}}'.encode(),
        ack_topic=f"{prefix}/ack",
        subscriptions=(f"{prefix}/cmd/#",),
    )


def stop(link: MqttLink) -> None:
    link.stop_event.set()
    link.wake()
    link.join(5)
    assert not link.is_alive()


def _started_client(broker: Any) -> Any:
    """A plain client connected to ``broker`` with its network loop running."""
    client = new_client(LinkSettings(broker.host, broker.port, ""))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def payload(i: int) -> bytes:
    return b'{"id": "m%d"}' % i


def test_results_stay_after_the_puback_and_leave_on_the_back_office_ack(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    sub = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/result")
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.outbox.add_many([(f"m{i}", f"{topic_prefix}/result", payload(i)) for i in range(20)])
    link.start()
    try:
        messages = sub.wait_for(20)
        assert wait_until(lambda: link.stats.broker_acked == 20, 10)
        time.sleep(0.2)
        assert link.outbox.depth() == 20  # the broker took them; nobody has committed them
        assert not link.idle()
        acker = _started_client(mqtt_broker)
        for body in encode_acks([f"m{i}" for i in range(0, 20, 2)]):
            acker.publish(f"{topic_prefix}/ack", body, qos=1).wait_for_publish(5)
        acker.publish(f"{topic_prefix}/ack", b'{"ids": 3}', qos=1).wait_for_publish(5)
        assert wait_until(lambda: link.outbox.depth() == 10, 10)
        left = {m.measurement_id for m in link.outbox.pending()}
        assert left == {f"m{i}" for i in range(1, 20, 2)}
        assert wait_until(lambda: link.stats.bad_acks == 1, 10)  # a malformed ack changes nothing
        acker.disconnect()
        acker.loop_stop()
    finally:
        stop(link)
        sub.close()
    assert [m.payload for m in messages] == [payload(i) for i in range(20)]
    assert messages[0].properties.ContentType == "application/json"
    assert 0 < messages[0].properties.MessageExpiryInterval <= 7 * 86400


def test_unconfirmed_results_are_sent_again_with_backoff_until_acked(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    link = make_link(
        tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix,
        ack_resend_initial_s=0.3, ack_resend_cap_s=0.6,
    )
    link.outbox.add_many([(f"m{i}", f"{topic_prefix}/result", payload(i)) for i in range(5)])
    link.start()  # no subscriber yet: the broker acks and drops them
    try:
        assert wait_until(lambda: link.stats.broker_acked >= 5, 10)
        sub = Subscriber(
            mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/result", f"{topic_prefix}/ack"
        )
        assert wait_until(link.idle, 10)  # sent again, then confirmed
        assert link.stats.resent >= 5
        assert {json.loads(m.payload)["id"] for m in sub.messages} == {f"m{i}" for i in range(5)}
        sub.close()
    finally:
        stop(link)


def test_birth_is_retained_online_and_a_stop_leaves_offline(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.start()
    late = None
    try:
        wait_until(lambda: link.connected, timeout_s=5)
        late = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/status")
        assert late.wait_for(1)[0].payload == b'{"state": "online"}'
        # ``connected`` is set before the birth goes out, so ``late`` may have subscribed
        # before the broker had it and got it live (retain 0); once ``late`` has it, the
        # broker holds it, and a subscriber from now on gets it as a retained message
        later = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/status")
        assert later.wait_for(1)[0].payload == b'{"state": "online"}'
        assert later.messages[0].retain
        later.close()
    finally:
        stop(link)
    assert late.wait_for(2)[-1].payload == b'{"state": "offline"}'  # the will, via reason 0x04
    late.close()
    cleaner = new_client(LinkSettings(mqtt_broker.host, mqtt_broker.port, ""))
    cleaner.connect(mqtt_broker.host, mqtt_broker.port)
    cleaner.publish(f"{topic_prefix}/status", b"", retain=True).wait_for_publish(5)
    cleaner.disconnect()


def test_a_refused_last_status_leaves_with_the_will(
    private_broker: Any, tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PUBACK that refuses the clean stop's "offline" status (0x87) is no delivery: the
    kiosk ends with DISCONNECT 0x04 and the broker publishes the will. mosquitto 2.0 cannot
    refuse that one publish alone (its ACL refuses the will too and drops the client), so the
    link's PUBACK callback reports the refusal for that message id."""
    status_topic = f"{topic_prefix}/status"
    stopping = threading.Event()
    refused: set[int] = set()
    publish, on_publish = mqtt.Client.publish, QueuedCallbacks.on_publish

    def publish_noting_the_last_status(client: mqtt.Client, topic: str, *a: Any,
                                       **k: Any) -> mqtt.MQTTMessageInfo:
        info = publish(client, topic, *a, **k)
        if stopping.is_set() and topic == status_topic:
            refused.add(info.mid)
        return info

    def refusing_puback(self: QueuedCallbacks, *args: Any) -> None:
        client, userdata, mid, reason, properties = args
        if mid in refused:
            reason = ReasonCode(PacketTypes.PUBACK, identifier=0x87)  # not authorised
        on_publish(self, client, userdata, mid, reason, properties)

    monkeypatch.setattr(mqtt.Client, "publish", publish_noting_the_last_status)
    monkeypatch.setattr(QueuedCallbacks, "on_publish", refusing_puback)
    statuses: list[str] = []  # the will is the first, built at the start

    def status_payload(state: str) -> bytes:
        statuses.append(state)
        return f'{{"state": "{state}", "status": {len(statuses)}}}'.encode()

    link = MqttLink(LinkSettings(private_broker.host, private_broker.port, "link-last-status"),
                    Outbox(tmp_path / "outbox.db"), status_topic=status_topic,
                    status_payload=status_payload, ack_topic=f"{topic_prefix}/ack")
    watcher = Subscriber(private_broker.host, private_broker.port, status_topic)
    link.start()
    try:
        assert wait_until(lambda: link.connected, timeout_s=5)
        assert watcher.wait_for(1)[0].payload == b'{"state": "online", "status": 2}'
    finally:
        stopping.set()
        with caplog.at_level(logging.WARNING, logger="appliance.transport.mqtt"):
            stop(link)
    assert refused
    will = b'{"state": "offline", "status": 1}'
    assert wait_until(lambda: watcher.messages[-1].payload == will, 10)
    assert "refused the offline status" in caplog.text
    assert "0x87" in caplog.text
    watcher.close()


def test_commands_arrive_in_the_inbox(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    watcher = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/status")
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.start()
    try:
        # the link subscribes, then publishes its birth: once that is out, the broker has
        # taken the SUBSCRIBE. "connected" came before it, and a command sent then reached
        # no one (it failed so with -n 2)
        assert watcher.wait_for(1)
        watcher.close()
        sender = _started_client(mqtt_broker)
        sender.publish(f"{topic_prefix}/cmd/measure", b"{}", qos=1).wait_for_publish(5)
        sender.disconnect()
        sender.loop_stop()
        message = link.inbox.get(timeout=5)
        assert message.topic == f"{topic_prefix}/cmd/measure"
    finally:
        stop(link)


def test_backlog_waits_for_a_late_broker_and_goes_out_oldest_first(
    tmp_path: Path, topic_prefix: str
) -> None:
    broker = PrivateBroker(workdir=tmp_path / "broker")
    # The link may reach the new broker before the subscriber has subscribed; what it sends then
    # reaches no one, and the link sends it again when no ack came (here after 0.5 s, not the
    # default 10 s, which was this test's whole deadline: it failed when the link won that race).
    link = make_link(tmp_path, broker.host, broker.port, topic_prefix, reconnect_cap_s=0.5,
                     ack_resend_initial_s=0.5)
    link.outbox.add_many([(f"m{i}", f"{topic_prefix}/r", payload(i)) for i in range(300)])
    link.start()
    try:
        time.sleep(1.0)  # connection refused a few times, with backoff
        assert not link.connected
        broker.start()
        sub = Subscriber(broker.host, broker.port, f"{topic_prefix}/r", f"{topic_prefix}/ack")
        assert wait_until(link.idle, 10)
        sub.close()
        first_arrivals = list(dict.fromkeys(int(json.loads(m.payload)["id"][1:])
                                            for m in sub.messages))
        assert sorted(first_arrivals) == list(range(300))
        # oldest first: from the first one the subscriber saw on, in order; only a prefix sent
        # before it subscribed can come later, resent
        after = [i for i in first_arrivals if i >= first_arrivals[0]]
        assert after == sorted(after)
    finally:
        stop(link)
        broker.close()


def test_bad_credentials_stop_retrying_with_a_clear_error(tmp_path: Path) -> None:
    # mosquitto started as root reads the password file as user "mosquitto": not under tmp_path.
    workdir = Path(tempfile.mkdtemp(prefix="appliance-auth-"))
    workdir.chmod(0o755)
    passwords = workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "kiosk", "right"], check=True)
    passwords.chmod(0o644)
    port = free_port()
    (workdir / "auth.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(workdir / "auth.conf")])
    try:
        # listening: a link refused a connection instead of a login retries, as it should
        assert wait_until(lambda: port_open("127.0.0.1", port), 10)
        link = make_link(
            tmp_path, "127.0.0.1", port, "auth", username="kiosk", password="wrong"
        )
        link.start()
        link.join(10)
        assert not link.is_alive()  # it gave up instead of hammering the broker
        assert link.fatal_error is not None
        assert link.refused  # the daemon exits with its "broker refused" code
        assert re.search(rf"^broker 127.0.0.1:{port} refused link-auth \(reason code 0x8[67]: "
                         r"(Not authorized|Bad user name or password)\): check mqtt.username "
                         r"and the password .*; not retrying$", link.fatal_error)
        with pytest.raises(BrokerRefusedError) as refused:  # another client of the factory
            FactorySubscriber(link.settings, [("auth/cmd", 1)], lambda _m: None,
                              reconnect=False).start()
        assert str(refused.value) == link.fatal_error  # one wording everywhere
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir)


def test_a_malformed_ack_is_logged_cut_short(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Why an ack was refused can quote its hostile key whole: 60,000 characters a line."""
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    hostile = json.loads(encode_acks(["m1"])[0]) | {"k" * 60_000: 1}
    with caplog.at_level(logging.WARNING, logger="appliance.transport.confirmations"):
        link.start()
        try:
            wait_until(lambda: link.connected, timeout_s=5)
            sender = _started_client(mqtt_broker)
            deadline_s = time.monotonic() + 10
            # sent again until the link reads one: "connected" comes before its SUBACK, and an
            # ack sent before that reaches nobody (a busy machine showed it)
            while link.stats.bad_acks < 1 and time.monotonic() < deadline_s:
                sender.publish(link.ack_topic, json.dumps(hostile).encode(),
                               qos=1).wait_for_publish(5)
                time.sleep(0.3)
            sender.disconnect()
            sender.loop_stop()
        finally:
            stop(link)
    ignored = [r.getMessage() for r in caplog.records if "malformed ack" in r.getMessage()]
    assert ignored
    assert all("kkk" in line and len(line) < 600 for line in ignored)


def test_acks_the_outbox_cannot_remove_on_a_full_disk_are_said_once_then_summed_up(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a full disk refuses every delete: each ack logged its own error line, a flood in the
    # journal of a busy kiosk while the disk stayed full
    with small_tmpfs(tmp_path / "disk") as disk, \
            caplog.at_level(logging.WARNING, logger="appliance.transport.confirmations"):
        link = make_link(disk, mqtt_broker.host, mqtt_broker.port, topic_prefix,
                         ack_resend_initial_s=600.0)
        link.outbox.add_many([(f"m{i}", f"{topic_prefix}/result", payload(i)) for i in range(10)])
        link.start()
        acker = _started_client(mqtt_broker)
        try:
            assert wait_until(lambda: link.stats.broker_acked == 10, 10)
            filler = fill(disk)
            for i in range(10):
                for body in encode_acks([f"m{i}"]):
                    acker.publish(link.ack_topic, body, qos=1).wait_for_publish(5)
            # a malformed ack, handled after the ten (in order): once counted, they are all in
            acker.publish(link.ack_topic, b'{"ids": 3}', qos=1).wait_for_publish(5)
            assert wait_until(lambda: link.stats.bad_acks == 1, 10)
            filler.unlink()
            for body in encode_acks(["m0"]):
                acker.publish(link.ack_topic, body, qos=1).wait_for_publish(5)
            assert wait_until(lambda: link.stats.acked == 1, 10)
            assert link.outbox.depth() == 9  # confirmed but kept: sent again, never lost
        finally:
            acker.disconnect()
            acker.loop_stop()
            stop(link)
            link.outbox.close()
    lines = [r.getMessage() for r in caplog.records]
    refused = [line for line in lines if line.startswith("could not remove")]
    assert len(refused) == 1
    assert refused[0].startswith("could not remove 1 confirmed result(s): ")
    assert "database or disk is full" in refused[0]
    assert ("the outbox removes confirmed results again; 10 confirmed result(s) it could not "
            "remove meanwhile stay in it and are sent again") in lines


def test_a_command_too_large_to_take_never_reaches_the_kiosk(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payload of megabytes on the kiosk's command topics was read whole into the kiosk's
    memory by paho before the size check ignored it (anyone allowed to publish there, or a
    flood of them); the kiosk's CONNECT now says the largest packet it takes, and the broker
    drops the rest."""
    heard: list[tuple[str, int]] = []
    on_message = QueuedCallbacks.on_message

    def hearing(self: QueuedCallbacks, client: Any, userdata: Any,
                message: mqtt.MQTTMessage) -> None:
        heard.append((message.topic, len(message.payload)))
        on_message(self, client, userdata, message)

    monkeypatch.setattr(QueuedCallbacks, "on_message", hearing)
    sender = _started_client(mqtt_broker)
    big = f"{topic_prefix}/cmd/big"
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.start()
    try:
        assert wait_until(lambda: link.connected, timeout_s=10)
        sender.publish(big, b"y" * (4 << 20), qos=1).wait_for_publish(10)
        sender.publish(f"{topic_prefix}/cmd/measure", b"{}", qos=1).wait_for_publish(5)
        message = link.inbox.get(timeout=10)  # the small one after the big ones came
        assert message.topic == f"{topic_prefix}/cmd/measure"
        assert heard == [(f"{topic_prefix}/cmd/measure", 2)]
    finally:
        sender.disconnect()
        sender.loop_stop()
        stop(link)


class _AcceptThenDrop:
    """A broker that accepts every connection (CONNACK, reason 0) and closes it at once, as an
    overloaded broker or one whose ACL drops the connection at the first subscribe does."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                connection, _ = self.server.accept()
                with connection:
                    connection.recv(4096)  # the CONNECT
                    connection.sendall(b"\x20\x03\x00\x00\x00")  # MQTT v5 CONNACK, success
                self.accepted += 1

    def close(self) -> None:
        self.server.close()


def test_a_broker_that_accepts_then_drops_at_once_is_retried_with_growing_delays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each CONNACK reset the backoff, so a connection dropped at once was retried after the
    first delay for ever: every kiosk of a fleet reconnecting twice a second to the broker
    that could not keep them. The backoff starts again only after a connection that worked
    (its subscribe answered, or it lasted the longest delay)."""
    broker = _AcceptThenDrop()
    link = make_link(tmp_path, "127.0.0.1", broker.port, "edge-flap",
                     reconnect_initial_s=0.1, reconnect_cap_s=3.0)
    with caplog.at_level(logging.WARNING, logger="appliance.transport.mqtt"):
        link.start()
        try:
            assert wait_until(lambda: len(_reconnect_delays(caplog.text)) >= 5, timeout_s=60)
        finally:
            stop(link)
            broker.close()
    delays_s = _reconnect_delays(caplog.text)
    assert delays_s[4] > 1.0, delays_s  # 0.1 s doubled four times is 1.6 s (+-20 %)


def _reconnect_delays(log_text: str) -> list[float]:
    return [float(s) for s in re.findall(r"lost the broker \(reason \d+\); reconnecting in "
                                         r"([0-9.]+) s", log_text)]
