"""One look of a kiosk that holds back: does a live process still have its device id?

A look with the kiosk's own client id would end the live kiosk's connection (the broker ends
the older connection of a client id, MQTT 5 spec 3.1.4, step 3), and the two would take it from
each other until one held back again: each look dropped the live kiosk two or three times. So
a look connects with a client id of its own (``look_settings``: the device's look login, which
deploy/mosquitto/provision.py lets read and write the device's presence topic and nothing
else), with a clean start and no session, subscribes to the presence topic and asks there with
a probe (not retained). A live kiosk process that has the id answers with its presence naming
the probe (PresenceKeeper.answer). An answer: that process lives, the kiosk holds back on. No
retained presence before the look's own probe comes back (the broker sends a subscription's
retained messages before anything published later): nobody has the id. No answer within
``wait_s``: nobody alive has it. Either way the kiosk then connects with its own client id.
Where the broker refuses the look login (provisioned before looks existed), the look cannot
tell, and the kiosk looks the old way, with its own client id. Where the broker is out of reach
(or busy), the look cannot tell now: the kiosk holds back on and looks again a little later.

paho's callbacks here only put events on a queue; ``step`` (the link's thread) acts on them.
"""

from __future__ import annotations

import queue
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.transport.callbacks import MAX_INCOMING_PACKET_BYTES
from appliance.transport.client import (
    LinkSettings,
    connect_properties,
    is_fatal_connack,
    new_client,
    reason_value,
)
from appliance.transport.presence_messages import (
    Presence,
    Rival,
    probe_payload,
    read_answer,
    read_probe,
    read_rival,
)

LOOK_SUFFIX = "@look"  # of the look's login and client id ('@' is in no device id)
LOOK_POLL_S = 0.05


def look_settings(settings: LinkSettings) -> LinkSettings:
    """The look's connection: the kiosk's broker and password, the look login and client id,
    no session kept."""
    username = None if settings.username is None else settings.username + LOOK_SUFFIX
    return replace(settings, client_id=settings.client_id + LOOK_SUFFIX, username=username,
                   session_expiry_s=0)


@dataclass(frozen=True)
class LookOutcome:
    """Where a look stands: still looking, a live rival found, nobody, unable to tell now
    (the broker out of reach), or unable to tell at all (the broker refuses the look login)."""

    looking: bool = False
    rival: Rival | None = None
    retry: str | None = None  # why the look cannot tell now (the kiosk looks again later)
    unusable: str | None = None  # why the look cannot tell (the kiosk looks the old way)


LOOKING = LookOutcome(looking=True)
NOBODY = LookOutcome()


class PresenceLook:
    """A short connection under the look login that asks who has the device id."""

    def __init__(self, settings: LinkSettings, topic: str, own: Presence, wait_s: float) -> None:
        self.settings, self.topic, self.own = look_settings(settings), topic, own
        self.wait_s = wait_s
        self.probe = uuid.uuid4().hex
        self._events: queue.SimpleQueue[tuple[str, Any, bool]] = queue.SimpleQueue()
        self._client = new_client(self.settings)
        self._client.on_connect = lambda _c, _u, _f, reason, _p: self._events.put(
            ("connack", reason_value(reason), False))
        self._client.on_subscribe = lambda _c, _u, _m, reasons, _p: self._events.put(
            ("suback", max(reason_value(r) for r in reasons), False))
        self._client.on_message = lambda _c, _u, message: self._events.put(
            ("message", bytes(message.payload), bool(message.retain)))
        self._client.on_disconnect = lambda _c, _u, _f, reason, _p: self._events.put(
            ("disconnect", reason_value(reason), False))
        self._deadline_s = 0.0
        self._started = False
        self._asked = False  # the probe went out; the deadline is then its wait's end
        self._someone = False  # a presence was retained on the topic when the look subscribed

    def step(self) -> LookOutcome:
        """Act on what the broker said so far; LOOKING until the look can tell."""
        if not self._started:
            return self._start()
        while True:
            try:
                kind, value, retained = self._events.get(timeout=LOOK_POLL_S)
            except queue.Empty:
                break
            outcome = self._handle(kind, value, retained)
            if not outcome.looking:
                return outcome
        if time.monotonic() < self._deadline_s:
            return LOOKING
        if self._asked:  # the probe's wait is over: nobody alive answered
            return NOBODY
        return self._retry(f"did not answer in {self.settings.connack_timeout_s:.0f} s")

    def close(self) -> None:
        """End the look's connection and its network thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()

    def _start(self) -> LookOutcome:
        self._started = True
        self._deadline_s = time.monotonic() + self.settings.connack_timeout_s
        try:
            self._client.connect(self.settings.host, self.settings.port,
                                 self.settings.keepalive_s, clean_start=True,
                                 # the largest packet it takes: the kiosk link's own bound
                                 properties=connect_properties(self.settings,
                                                               MAX_INCOMING_PACKET_BYTES))
        except (OSError, ValueError) as exc:
            return self._retry(f"could not be reached ({exc})")
        self._client.loop_start()
        return LOOKING

    def _handle(self, kind: str, value: Any, retained: bool) -> LookOutcome:
        if kind == "connack" and value == 0:
            send_retained = SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
            self._client.subscribe(self.topic,
                                   options=SubscribeOptions(qos=1, retainHandling=send_retained))
        elif kind == "connack" and not is_fatal_connack(value):
            return self._retry(f"refused it for now (CONNACK reason code 0x{value:02X})")
        elif kind in ("connack", "suback") and value >= 0x80:
            return LookOutcome(unusable=f"{self._broker()} refused the look login "
                                        f"{self._login()} ({kind} reason code 0x{value:02X})")
        elif kind == "suback":
            self._client.publish(self.topic, probe_payload(self.probe), qos=1)
            self._asked = True
            self._deadline_s = time.monotonic() + self.wait_s
        elif kind == "disconnect":
            return self._retry(f"ended the connection (reason code {value})")
        elif kind == "message":
            return self._heard(value, retained)
        return LOOKING

    def _heard(self, payload: bytes, retained: bool) -> LookOutcome:
        if retained:
            self._someone = self._someone or read_rival(payload) is not None
            return LOOKING
        if read_probe(payload) == self.probe:  # its own, after every retained presence
            return LOOKING if self._someone else NOBODY
        rival = read_answer(payload, self.probe)
        if rival is None or rival.process == self.own.process:
            return LOOKING
        return LookOutcome(rival=rival)

    def _retry(self, why: str) -> LookOutcome:
        return LookOutcome(retry=f"{self._broker()} {why}")

    def _broker(self) -> str:
        return f"the broker {self.settings.host}:{self.settings.port}"

    def _login(self) -> str:
        return self.settings.username or self.settings.client_id
