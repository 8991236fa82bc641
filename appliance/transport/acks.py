"""End-to-end acknowledgements: the return path from the back office to one device.

A broker's PUBACK only says the broker took a message; it drops QoS 1 messages that no
session subscribes to. So a device keeps each result until the back office has *committed* it
and says so on the device's own ``{prefix}/{site}/{device}/ack`` topic (docs/delivery.md).
This module is the small shared piece of that path: the topic, batching ids per device into
bounded messages (back office), and reading them (device). Anything else that needs a
"committed" receipt per device (e.g. model state) can use the same three functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from appliance.transport.payloads import MAX_ACK_IDS, Ack, parse_payload, utc_now
from appliance.transport.topics import device_topic

ACK_LEAF = "ack"


def ack_topic(prefix: str, site: str, device_id: str) -> str:
    """The topic a device reads its acknowledgements from."""
    return device_topic(prefix, site, device_id, ACK_LEAF)


def encode_acks(ids: Iterable[str]) -> list[bytes]:
    """Ack messages for these ids, at most MAX_ACK_IDS each, in the order given."""
    unique = list(dict.fromkeys(ids))
    return [
        Ack(ids=unique[start : start + MAX_ACK_IDS], at=utc_now()).to_json()
        for start in range(0, len(unique), MAX_ACK_IDS)
    ]


def parse_ack(raw: bytes) -> list[str]:
    """The ids of one ack message; PayloadError says why it is not one."""
    return list(parse_payload(raw, Ack).ids)


def parse_ack_at(raw: bytes) -> tuple[list[str], float]:
    """The ids of one ack message and when the back office sent it (Unix time, by its clock);
    PayloadError says why it is none."""
    ack = parse_payload(raw, Ack)
    return list(ack.ids), ack.at.timestamp()


def publish_acks(
    prefix: str,
    committed: Iterable[tuple[str, str, str]],
    publish: Callable[[str, bytes], None],
) -> int:
    """Group committed (site, device, id) triples per device and publish them; returns messages."""
    per_device: dict[tuple[str, str], list[str]] = defaultdict(list)
    for site, device_id, item_id in committed:
        per_device[(site, device_id)].append(item_id)
    sent = 0
    for (site, device_id), ids in per_device.items():
        for payload in encode_acks(ids):
            publish(ack_topic(prefix, site, device_id), payload)
            sent += 1
    return sent
