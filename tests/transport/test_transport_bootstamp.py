"""The kiosk link stamps each status with where in this boot it built it (bootstamp.py), as
user properties a real mosquitto forwards; the back office reads only a stamp a kiosk sends."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.edge.testing import wait_until
from appliance.transport.bootstamp import BOOT_KEY, LINK_KEY, SINCE_BOOT_KEY, read_stamp
from appliance.transport.wallclock import boot_id
from tests.transport.test_transport_mqtt import Subscriber, make_link, stop


def _properties(*pairs: tuple[str, str]) -> Any:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if pairs:
        properties.UserProperty = list(pairs)
    return properties


@pytest.mark.broker
def test_each_status_is_stamped_later_in_this_boot_than_the_one_before(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    watcher = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/status")
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.start()
    try:
        assert wait_until(lambda: len(watcher.messages) >= 1, 10)  # its birth
        link.send_status()
        assert wait_until(lambda: len(watcher.messages) >= 2, 10)
    finally:
        stop(link)  # a clean stop: "offline" with the numbers as they are
    assert wait_until(lambda: len(watcher.messages) >= 3, 10)
    watcher.close()
    stamps = [read_stamp(message.properties) for message in watcher.messages[:3]]
    assert [message.payload for message in watcher.messages[:3]] == [
        b'{"state": "online"}', b'{"state": "online"}', b'{"state": "offline"}']
    assert {stamp[0] for stamp in stamps if stamp} == {str(boot_id())}
    since_boot_ms = [stamp[1] for stamp in stamps if stamp]
    assert len(since_boot_ms) == 3
    assert since_boot_ms == sorted(since_boot_ms)
    links = {stamp[2] for stamp in stamps if stamp}  # one link sent them all, after it connected
    assert len(links) == 1
    assert links.pop() <= since_boot_ms[0]


@pytest.mark.broker
def test_the_last_will_is_stamped_before_the_connection_s_statuses(
    mqtt_broker: Any, tmp_path: Path, topic_prefix: str
) -> None:
    watcher = Subscriber(mqtt_broker.host, mqtt_broker.port, f"{topic_prefix}/status")
    link = make_link(tmp_path, mqtt_broker.host, mqtt_broker.port, topic_prefix)
    link.start()
    try:
        assert wait_until(lambda: len(watcher.messages) >= 1, 10)  # its birth
        link._client.socket().shutdown(socket.SHUT_RDWR)  # noqa: SLF001  (a link lost)
        offline = [b'{"state": "offline"}']
        assert wait_until(lambda: [m.payload for m in watcher.messages[1:2]] == offline, 10)
        # it connects again: a status the lost link had stamped may come first, sent again on
        # the new link (CI: the third message bore the will's link stamp); the new link's birth
        # is the first one stamped with a link of its own
        assert wait_until(lambda: _new_link(watcher.messages) is not None, 10)
    finally:
        stop(link)
    watcher.close()
    birth, will = (read_stamp(m.properties) for m in watcher.messages[:2])
    again = _new_link(watcher.messages)
    assert birth is not None
    assert will is not None  # before: the will had none
    assert again is not None
    assert will[2] is not None
    for later in (read_stamp(m.properties) for m in watcher.messages[2:]):
        assert later is not None
        assert later[2] is not None
        assert later[2] >= will[2]  # no status of an older link
    assert will[0] == birth[0] == again[0]
    assert will[1] <= birth[1] <= again[1]
    # the will is stamped as its link connected, and names it, as the link's birth does; the
    # link made again has a will and a name of its own
    assert will[1] == will[2] == birth[2]
    assert again[2] is not None
    assert again[2] > will[2]


def _new_link(messages: list[Any]) -> tuple[str, int, int | None] | None:
    """The stamp of the first status after the will whose link is not the will's one."""
    if len(messages) < 2 or (will := read_stamp(messages[1].properties)) is None:
        return None
    stamps = (read_stamp(m.properties) for m in messages[2:])
    return next((stamp for stamp in stamps if stamp is not None and stamp[2] != will[2]), None)


def test_a_stamp_is_read_only_as_a_kiosk_sends_it() -> None:
    assert read_stamp(_properties((BOOT_KEY, "17"), (SINCE_BOOT_KEY, "2500"))) == (
        "17", 2500, None)
    assert read_stamp(_properties((BOOT_KEY, "17"), (SINCE_BOOT_KEY, "2500"),
                                  (LINK_KEY, "900"))) == ("17", 2500, 900)
    assert read_stamp(_properties((BOOT_KEY, "17"), (SINCE_BOOT_KEY, "2500"),
                                  (LINK_KEY, "x"))) == ("17", 2500, None)
    assert read_stamp(_properties()) is None
    assert read_stamp(None) is None
    for since_boot_ms in ("-1", "1.5", "²", "9" * 30, ""):
        assert read_stamp(_properties((BOOT_KEY, "17"), (SINCE_BOOT_KEY, since_boot_ms))) is None
    assert read_stamp(_properties((BOOT_KEY, "1" * 40), (SINCE_BOOT_KEY, "1"))) is None
    assert read_stamp(_properties((BOOT_KEY, ""), (SINCE_BOOT_KEY, "1"))) is None
