"""``FleetWatcher`` subscribes only after the broker accepted the connection: a refusal
(CONNACK failure) ends its start with an error naming the broker and the reason code, and
``models status`` exits 2 with it instead of showing an empty fleet. A private mosquitto that
asks for a password."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.cli import main
from appliance.config import PASSWORD_ENV, MqttConfig
from appliance.transport.broker import PrivateBroker
from appliance.transport.client import BrokerRefusedError, settings_from_config
from appliance.transport.payloads import ModelInfo, ModelState
from appliance.transport.subscriber import Subscriber
from appliance.transport.topics import device_topic
from appliance.updates import fleetwatch
from appliance.updates.fleetwatch import DeviceView, FleetWatcher
from appliance.updates.operations import init_repository
from appliance.updates.testing import ModelEvents

pytestmark = pytest.mark.broker
USER, PASSWORD = "backoffice", "right-password"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A mosquitto on a free port that lets only USER with PASSWORD in."""
    broker = PrivateBroker(workdir=tmp_path / "broker", passwords={USER: PASSWORD})
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def subscribes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every topic list any paho client of this process subscribes to."""
    calls: list[Any] = []
    real = mqtt.Client.subscribe

    def recording(self: mqtt.Client, topic: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(topic)
        return real(self, topic, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "subscribe", recording)
    return calls


def _config(broker: PrivateBroker, topic_prefix: str) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, topic_prefix=topic_prefix,
                      username=USER)


def test_a_refused_connection_is_an_error_and_nothing_is_subscribed(
    locked_broker: PrivateBroker, topic_prefix: str, subscribes: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    with pytest.raises(BrokerRefusedError) as refused:
        FleetWatcher(_config(locked_broker, topic_prefix), "watcher-refused")
    message = str(refused.value)
    assert f"broker 127.0.0.1:{locked_broker.port} refused watcher-refused" in message
    assert re.search(r"reason code 0x8[67]", message)  # mosquitto answers 0x87 or 0x86
    assert "check mqtt.username and the password" in message
    assert refused.value.reason_code in (0x86, 0x87)
    assert subscribes == []


def test_an_accepted_connection_subscribes_and_sees_the_retained_statuses(
    locked_broker: PrivateBroker, topic_prefix: str, subscribes: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appliance.synthetic import fleet as fleetsim

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.username_pw_set(USER, PASSWORD)
    publisher.connect(locked_broker.host, locked_broker.port)
    publisher.loop_start()
    status = fleetsim.online_status("lab", "k1", outbox_depth=0)
    publisher.publish(device_topic(topic_prefix, "lab", "k1", "status"), status.to_json(),
                      qos=1, retain=True).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    watcher = FleetWatcher(_config(locked_broker, topic_prefix), "watcher-accepted")
    try:
        assert len(subscribes) == 1
        assert list(watcher.devices()) == [("lab", "k1")]
    finally:
        watcher.close()


def test_models_status_names_the_refusal_instead_of_showing_an_empty_fleet(
    tmp_path: Path, locked_broker: PrivateBroker, topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml: the broker comes from APPLIANCE__ variables
    for name in [n for n in os.environ if n.upper().startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("APPLIANCE__MQTT__PORT", str(locked_broker.port))
    monkeypatch.setenv("APPLIANCE__MQTT__USERNAME", USER)
    monkeypatch.setenv("APPLIANCE__MQTT__TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    repo = init_repository(tmp_path / "repo")
    assert main(["models", "status", "--repo", str(repo.dir)]) == 2
    captured = capsys.readouterr()
    # under a login, its client id is the login (the shipped broker binds the two)
    assert f"models status: broker 127.0.0.1:{locked_broker.port} refused {USER} (" in captured.err
    assert "check mqtt.username and the password" in captured.err
    assert "(mqtt.username from APPLIANCE__MQTT__USERNAME; no --config and no ./config.yaml)" \
        in captured.err
    assert "no device has reported" not in captured.out


def test_model_events_is_refused_like_every_client_of_the_factory(
    locked_broker: PrivateBroker, topic_prefix: str, subscribes: list[Any],
) -> None:
    with pytest.raises(BrokerRefusedError) as refused:  # it sends no credentials
        ModelEvents(locked_broker.host, locked_broker.port, topic_prefix, "events-refused")
    assert f"broker 127.0.0.1:{locked_broker.port} refused events-refused" in str(refused.value)
    assert subscribes == []


def test_a_state_naming_another_device_than_its_topic_is_ignored(
    mqtt_broker: Any, topic_prefix: str
) -> None:
    # k1 may publish only on its own topics; a state in which it claims to be k2 (or any other
    # device) says nothing true about k1 and is dropped, as the back office drops such results
    from appliance.synthetic import fleet as fleetsim

    state = ('{"schema": "appliance.model_state/1", "device_id": "%s", "site": "lab", '
             '"state": "installed", "at": "2026-12-04T13:00:00Z", "healthy": true, '
             '"running": {"name": "skin-texture-grade", "version": "9.9.9"}}')
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    for device, claims in (("k1", "k2"), ("k3", "k3")):
        topic = device_topic(topic_prefix, "lab", device, "model/state")
        publisher.publish(topic, state % claims, qos=1, retain=True).wait_for_publish(5)
    status = fleetsim.online_status("elsewhere", "k4", outbox_depth=0)
    publisher.publish(device_topic(topic_prefix, "lab", "k4", "status"), status.to_json(),
                      qos=1, retain=True).wait_for_publish(5)
    config = MqttConfig(host=mqtt_broker.host, port=mqtt_broker.port, topic_prefix=topic_prefix)
    watcher = FleetWatcher(config, f"watcher-{topic_prefix[-20:]}")
    try:
        assert list(watcher.devices()) == [("lab", "k3")]
    finally:
        watcher.close()
        for device, leaf in (("k1", "model/state"), ("k3", "model/state"), ("k4", "status")):
            topic = device_topic(topic_prefix, "lab", device, leaf)
            publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()


def test_a_status_carrying_megabytes_of_user_properties_never_reaches_the_watcher(
    mqtt_broker: Any, topic_prefix: str
) -> None:
    """A broker without the shipped max_packet_size (the suite's mosquitto has none) hands a
    reader every packet whole: the watcher's CONNECT names the largest it takes (four times
    the largest status), so the broker drops a larger one for it."""
    from appliance.synthetic import fleet as fleetsim

    padded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    padded.UserProperty = [(f"k{i}", "x" * 60_000) for i in range(40)]  # 2.4 MB
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    topics = [device_topic(topic_prefix, "lab", device, "status") for device in ("k1", "k2")]
    for topic, device, properties in zip(topics, ("k1", "k2"), (padded, None), strict=True):
        status = fleetsim.online_status("lab", device, outbox_depth=0)
        publisher.publish(topic, status.to_json(), qos=1, retain=True,
                          properties=properties).wait_for_publish(30)
    config = MqttConfig(host=mqtt_broker.host, port=mqtt_broker.port, topic_prefix=topic_prefix)
    watcher = FleetWatcher(config, f"watcher-{topic_prefix[-20:]}")
    try:
        assert list(watcher.devices()) == [("lab", "k2")]  # on main: k1 too, read whole
    finally:
        watcher.close()
        for topic in topics:
            publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()


def test_a_notice_the_broker_cannot_take_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a notice only says "refresh now" (kiosks also check on their interval): a broker restart
    # while a rollout notifies must not end the deploy with a traceback, its rollout "running"
    broker = PrivateBroker(workdir=tmp_path / "broker")
    broker.start()
    watcher = FleetWatcher(MqttConfig(host=broker.host, port=broker.port,
                                      topic_prefix="notice-test"), "watcher-notice")
    try:
        broker.stop(kill=True)
        watcher.notify("lab", "k1", "r0llout1")
    finally:
        watcher.close()
        broker.close()
    assert "notice to lab/k1 not sent" in caplog.text



def test_a_notice_the_broker_never_acknowledges_is_logged_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broker killed or hung that the client has not noticed yet takes the notice into its
    # socket without error and never answers: wait_for_publish ran out quietly, and the log said
    # nothing (seen under load: the kill above raced the client's noticing it)
    monkeypatch.setattr(fleetwatch, "NOTICE_WAIT_S", 0.5)
    broker = PrivateBroker(workdir=tmp_path / "broker")
    broker.start()
    watcher = FleetWatcher(MqttConfig(host=broker.host, port=broker.port,
                                      topic_prefix="notice-test"), "watcher-hung")
    process = broker._proc  # noqa: SLF001 - the test pauses the broker's own process
    assert process is not None
    try:
        process.send_signal(signal.SIGSTOP)  # alive, connection open, answers nothing
        watcher.notify("lab", "k1", "r0llout1")
    finally:
        process.send_signal(signal.SIGCONT)
        watcher.close()
        broker.close()
    assert "notice to lab/k1 not sent yet (the broker did not acknowledge it within 0.5 s)" in \
        caplog.text


def test_a_notice_the_broker_could_not_take_goes_out_when_it_is_back_while_the_deploy_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The log said "it installs at its next check", but paho keeps a QoS 1 notice it could not
    # send and sends it after reconnecting: the kiosk installed as soon as the broker was back.
    # That holds only while the deploy's client lives; a notice still queued when it ends is
    # dropped, and said so.
    monkeypatch.setattr(fleetwatch, "NOTICE_WAIT_S", 0.5)
    broker = PrivateBroker(workdir=tmp_path / "broker")
    broker.start()
    config = MqttConfig(host=broker.host, port=broker.port, topic_prefix="notice-test")
    notices: queue.Queue[bytes] = queue.Queue()
    # the kiosk's side: a kept session, so the broker holds the notice for it if it is back first
    kiosk = Subscriber(settings_from_config(config, "kiosk-k1"),
                       [(device_topic("notice-test", "lab", "k1", fleetwatch.UPDATE_LEAF), 1)],
                       lambda message: notices.put(bytes(message.payload)), keep_session=True)
    kiosk.start()
    watcher = FleetWatcher(config, "watcher-resend")
    try:
        broker.stop()
        watcher.notify("lab", "k1", "r0llout1")
        assert "notice to lab/k1 not sent yet" in caplog.text
        assert "sent again once the broker is back, while this deploy runs" in caplog.text
        broker.start()
        assert json.loads(notices.get(timeout=60)) == {"refresh": True, "rollout": "r0llout1"}
        broker.stop()
        watcher.notify("lab", "k2", "r0llout1")
    finally:
        watcher.close()
        kiosk.close()
        broker.close()
    assert "notice to lab/k1 dropped" not in caplog.text  # acknowledged once the broker was back
    assert ("notice to lab/k2 dropped as this deploy ended, never acknowledged by the broker; "
            "it installs at its next check (updates.check_interval_s)") in caplog.text


def test_a_notice_the_broker_passed_to_no_kiosk_is_named(
    private_broker: PrivateBroker, caplog: pytest.LogCaptureFixture,
) -> None:
    # A kiosk away whose session the broker does not keep (a broker restarted without
    # persistence, before the kiosk resubscribed; a session expired) never gets its notice,
    # though the broker acknowledged it ("no matching subscribers"): the log said nothing and
    # the kiosk installed only at its next check.
    config = MqttConfig(host=private_broker.host, port=private_broker.port,
                        topic_prefix="notice-test")
    kiosk = Subscriber(settings_from_config(config, "kiosk-k1"),
                       [(device_topic("notice-test", "lab", "k1", fleetwatch.UPDATE_LEAF), 1)],
                       lambda _message: None)
    kiosk.start()
    watcher = FleetWatcher(config, "watcher-unheard")
    try:
        watcher.notify("lab", "k1", "r0llout1")
        watcher.notify("lab", "k2", "r0llout1")
    finally:
        watcher.close()
        kiosk.close()
    assert ("notice to lab/k2 reached the broker but no subscription of the kiosk (away, and no "
            "session kept for it); it installs at its next check (updates.check_interval_s)"
            ) in caplog.text
    assert "lab/k1" not in caplog.text


def test_a_model_state_from_a_clock_far_ahead_does_not_outrank_later_statuses() -> None:
    # A kiosk whose clock ran a day ahead retained a state "running 1.1.0"; its clock fixed, it
    # now reports 1.0.0 in every status: those, not the state's future time, say what it runs.
    from appliance.synthetic import fleet as fleetsim

    status = fleetsim.online_status("lab", "k1")  # running 1.0.0, at the receiver's now
    ahead = datetime.now(UTC) + timedelta(days=1)
    state = ModelState(device_id="k1", site="lab", state="installed", at=ahead,
                       running=ModelInfo(name="skin-texture-grade", version="1.1.0"))
    assert DeviceView("lab", "k1", status, state).running == "1.0.0"
    slightly = ahead - timedelta(days=1) + timedelta(minutes=1)  # within what ingest allows
    assert DeviceView("lab", "k1", status,
                      state.model_copy(update={"at": slightly})).running == "1.1.0"
    assert DeviceView("lab", "k1", None, state).running == "1.1.0"  # its only report
    naive = state.model_copy(update={"at": slightly.replace(tzinfo=None)})  # was a TypeError
    assert DeviceView("lab", "k1", status, naive).running == "1.0.0"
