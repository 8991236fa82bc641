"""Results waiting in the outbox under another identity of this kiosk are sent as this kiosk.

A kiosk that held back because another live kiosk had its device id (a cloned SD card,
transport/presence.py) keeps what it measured before it held back: those are real results of
this machine. Its journal tells the user to give it its own ``device.id``; after that restart
its outbox still holds them under the old id, on the old device's result topic, where the
broker refuses them (each login publishes its own topics only) until the age limit drops them,
and where they would be taken for the other machine's. The same holds for a kiosk whose
``device.site`` or ``mqtt.topic_prefix`` changed. So at start every waiting result whose topic is
not this kiosk's result topic gets this kiosk's site, device id and topic (the measurement id,
its age and everything measured stay as they were), and the journal says so: nothing accepted
is lost, and nothing is attributed to another kiosk without a word. A result the back office
already stored under the old id (its ack lost) stays stored there: it keeps each measurement
id once.
"""

from __future__ import annotations

import logging
from collections import Counter

from appliance.transport.outbox import Outbox
from appliance.transport.outbox_file import OutboxError
from appliance.transport.payloads import PayloadError, Result, parse_payload

log = logging.getLogger(__name__)

PAGE_ROWS = 100  # results read at a time (a result with a thumbnail is up to 256 KiB); only
# those on another topic are read: a full outbox is tens of thousands of this kiosk's own


def relabelled(payload: bytes, site: str, device_id: str) -> bytes | None:
    """The result with this kiosk's site and device id (None: the payload is no result)."""
    try:
        result = parse_payload(payload, Result)
    except PayloadError:
        return None
    return result.model_copy(update={"site": site, "device_id": device_id}).to_json()


def send_as_this_kiosk(outbox: Outbox, result_topic: str, site: str, device_id: str) -> int:
    """Relabel every waiting result not on ``result_topic`` as this kiosk's; how many (an
    outbox that refuses is said: those results go out as they are)."""
    moved: Counter[str] = Counter()
    after_seq = 0
    try:
        while page := outbox.pending_elsewhere(result_topic, after_seq, PAGE_ROWS):
            after_seq = page[-1].seq
            changes, old_topics = [], []
            for message in page:
                new = relabelled(message.payload, site, device_id)
                if new is not None:
                    changes.append((message.seq, result_topic, new))
                    old_topics.append(message.topic)
            outbox.relabel(changes)
            moved.update(old_topics)
    except OutboxError as exc:
        log.error("could not relabel the results waiting under another identity of this kiosk "
                  "(%s); they are sent as they are", exc)
    for topic, count in moved.items():
        log.warning("%d result(s) in the outbox were measured on this kiosk under %s; they are "
                    "sent as device id %s at site %s on %s now, under the same measurement ids "
                    "(this kiosk held back for another one with its device id, or its device.id, "
                    "device.site or mqtt.topic_prefix changed)", count, topic, device_id, site,
                    result_topic)
    return sum(moved.values())
