"""A kiosk process's retained presence on ``{prefix}/{site}/{device}/presence``, and the watch
that finds another live process under the same device id.

Two kiosks with one device id (a cloned SD card, a copied config) use one client id, and the
broker ends the older connection of a client id when a new one connects (MQTT 5 spec 3.1.4,
step 3): each reconnects within seconds and they take the connection from each other for ever.
mosquitto tells the dropped one no reason, so this cannot be told from a lost network.

So at every connect a kiosk publishes a retained presence that names its process (a random id,
its pid and host) and the how-manieth of its connections this is (the messages and how a received
one is read: transport/presence_messages.py), and it reads its own presence topic. Only
presences the broker hands over as retained at one of this process's subscribes count (MQTT 5
spec 3.3.1.3: RETAIN is 1 on those, 0 on live copies): each is what the topic held
after this process started. Two different connection numbers of another process among them
mean that process connected again since: it is alive. A dead one (killed with -9, its last
presence still retained) never changes, so it stops nobody.

Which of two live processes holds back is decided without clocks (a kiosk's may be off by
hours). Each presence also lists the processes this one ``found``: those it heard on its first
connection before its own presence came back. One client id has at most one connection, and
the broker sends each connection what it handles in the order it handles it, so if one process
found the other, the other did not find it: the one that found the other came later and holds
back. Where neither found the other (each first connection ended before anything came back),
the larger process id holds back. Both sides read the same two presences and agree; a
presence's ``found`` is final from its second connection, and a live rival always shows one.

The one that holds back looks again now and then without connecting under the shared client
id (transport/presence_look.py): it asks on the presence topic, and a live process that has
the id answers with its presence naming the question (``PresenceKeeper.answer``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.logsafe import shorten
from appliance.transport.presence_messages import (
    MAX_FOUND,
    Presence,
    Rival,
    read_probe,
    read_rival,
)

log = logging.getLogger(__name__)

PRESENCE_LEAF = "presence"
UNANSWERED_LIMIT = 3  # connections lost in a row before the presence's PUBACK: refused
SHOWN_PAYLOAD_CHARS = 200  # of a presence that is not one, in the journal
FAILED_LOOKS_SUMMARY_S = 3600.0  # while looks cannot tell: at most one summary an hour


def holds_back(own: Presence, rival: Rival) -> bool:
    """Whether this process is the one of the two that holds back (the rival decides the
    same from the same two presences)."""
    own_found, rival_found = rival.process in own.found, own.process in rival.found
    if own_found != rival_found:
        return own_found
    return own.process > rival.process


class DuplicateWatch:
    """Reads this kiosk's presence topic; says when a live rival makes this process hold back."""

    def __init__(self, own: Presence) -> None:
        self.own = own
        self._connections: dict[str, set[int]] = {}  # other process -> connections heard
        self._newest: dict[str, Rival] = {}
        self._warned: set[str] = set()
        self._said_bad = False

    def connected(self) -> None:
        """A new connection of this process: a new number; the first connection's end
        ends what counts as found."""
        if self.own.connection >= 1:
            self.own.arrived = True
        self.own.connection += 1

    def forget(self) -> None:
        """Start over on what shows a rival alive (after holding back: it may have gone)."""
        self._connections.clear()
        self._newest.clear()

    def heard(self, payload: bytes, retained: bool) -> Rival | None:
        """A live rival this process holds back for, else None (a live rival that holds back
        for this one is logged once)."""
        if not payload or read_probe(payload) is not None:
            return None  # cleared by a process that stopped cleanly, or a look's question
        rival = read_rival(payload)
        if rival is None:
            self._say_bad(payload)
            return None
        if rival.process == self.own.process:
            self.own.arrived = True
            return None
        if not self.own.arrived and rival.process not in self.own.found:
            self.own.found = [*self.own.found, rival.process][-MAX_FOUND:]
        if not retained:
            return None
        self._connections.setdefault(rival.process, set()).add(rival.connection)
        newest = self._newest.get(rival.process)
        if newest is None or rival.connection > newest.connection:
            self._newest[rival.process] = rival
        return self._decide(self._newest[rival.process])

    def _decide(self, rival: Rival) -> Rival | None:
        if len(self._connections[rival.process]) < 2 or not self.own.arrived:
            return None  # not shown alive yet, or this process's own ``found`` not final
        if holds_back(self.own, rival):
            return rival
        if rival.process not in self._warned:
            self._warned.add(rival.process)
            log.warning("another kiosk process uses device id %s (host %s, pid %d); it came "
                        "later and holds back, this one goes on", self.own.device_id,
                        rival.host, rival.pid)
        return None

    def _say_bad(self, payload: bytes) -> None:
        if not self._said_bad:
            self._said_bad = True
            log.warning("ignored a presence for device id %s that is not one (said once): %s",
                        self.own.device_id, shorten(repr(payload), SHOWN_PAYLOAD_CHARS))


class FailedLooks:
    """What a held-back kiosk says about looks that cannot tell (the broker out of reach): the
    first once, then at most a summary of how many failed every ``summary_s``, and once when a
    look can tell again. It looks every ``probe_s`` (a minute or so): a line each time would
    fill the journal through a night with the network down."""

    def __init__(self, device_id: str, summary_s: float = FAILED_LOOKS_SUMMARY_S) -> None:
        self.device_id, self.summary_s = device_id, summary_s
        self._failed = 0  # looks in a row that could not tell
        self._unsaid = 0  # of those, since the last line said
        self._summary_due_s = 0.0

    def failed(self, why: str, again_s: float) -> None:
        """A look could not tell now; the kiosk looks again in ``again_s``."""
        self._failed += 1
        self._unsaid += 1
        now_s = time.monotonic()
        if self._failed > 1 and now_s < self._summary_due_s:
            return
        self._summary_due_s = now_s + self.summary_s
        if self._failed == 1:
            log.warning("device id %s: could not look whether another kiosk still uses it (%s); "
                        "looking again every %.0f s (said once, then hourly)", self.device_id,
                        why, again_s)
        else:
            log.warning("device id %s: %d more look(s) could not tell whether another kiosk "
                        "still uses it (%d in a row; the last: %s); still looking every %.0f s",
                        self.device_id, self._unsaid, self._failed, why, again_s)
        self._unsaid = 0

    def answered(self) -> None:
        """A look could tell (the broker answered): said once after looks that could not."""
        if self._failed:
            log.warning("device id %s: a look can tell again after %d look(s) that could not",
                        self.device_id, self._failed)
        self._failed = self._unsaid = 0


class LookStep(Protocol):
    """Where a look stands (transport/presence_look.py's LookOutcome)."""

    @property
    def looking(self) -> bool: ...
    @property
    def rival(self) -> Rival | None: ...
    @property
    def retry(self) -> str | None: ...
    @property
    def unusable(self) -> str | None: ...


class Look(Protocol):
    """One look under a client id of its own (transport/presence_look.py's PresenceLook)."""

    def step(self) -> LookStep: ...
    def close(self) -> None: ...


def holding_message(own: Presence, rival: Rival, client_id: str, retry_s: float) -> str:
    """What the kiosk that holds back says: who else uses its device id, and what to do."""
    return (f"device id {own.device_id} (client id {client_id}) is in use by another live "
            f"kiosk process on host {rival.host} (pid {rival.pid}); two kiosks with one device "
            "id take the broker connection from each other. This one came later: it stops "
            f"measuring and stays off the broker, and looks again every {retry_s:.0f} s. Give "
            "this kiosk its own device.id and broker login (a cloned SD card or a copied "
            "config), or stop the other one. What it measured before it held back stays in its "
            "outbox, never lost: once it has its own device.id it is sent under that id (said "
            f"at that start); if the other one stops first, under {own.device_id}")


class PresenceKeeper:
    """The link's side of the presence: announce it at each connect, read the topic, answer a
    held-back kiosk's look, hold back (off the broker, measuring paused through ``held``) while
    a live rival has the device id, look again every ``retry_s`` (with ``new_look``, under a
    client id of its own: transport/presence_look.py), and clear the presence on a clean stop."""

    def __init__(self, topic: str, own: Presence, client_id: str, *, retry_s: float,
                 probe_s: float, new_look: Callable[[], Look] | None = None) -> None:
        self.topic, self.own, self.client_id = topic, own, client_id
        self.retry_s, self.probe_s = retry_s, probe_s
        # a look under a client id of its own (None: look by connecting with this one)
        self._new_look = new_look
        self._look: Look | None = None
        self._look_said = False  # a look that could not tell was said (once)
        self._failed_looks = FailedLooks(own.device_id)
        self.watch = DuplicateWatch(own)
        self.rival: Rival | None = None  # while holding back: the process that has the id
        self.held = threading.Event()  # set while holding back (or looking again)
        self._look_again_s = 0.0
        # looking again: a live rival shows itself by then (inf: until this one is connected)
        self._probe_ends_s: float | None = None
        self.refused = False  # the broker's ACL refuses the presence topic: none is published
        self._published_mid: int | None = None  # until its PUBACK
        self._unanswered = 0  # connections in a row that ended before that PUBACK

    def announce(self, client: mqtt.Client) -> int | None:
        """At CONNACK: subscribe (its retained presence first, also when the session holds
        the subscription: retain handling 0, MQTT 5 spec 3.8.3.1), then publish this one;
        the SUBSCRIBE's message id (None: the socket just closed, or the broker refuses)."""
        if self.refused:
            return None
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)
        _rc, mid = client.subscribe(self.topic, options=options)
        if self._probe_ends_s == math.inf:  # looking again: the rival's time starts now
            self._probe_ends_s = time.monotonic() + self.probe_s
        self.watch.connected()
        self._published_mid = client.publish(self.topic, self.own.payload(), qos=1,
                                             retain=True).mid
        return mid

    def answered(self, mid: int, code: int) -> bool:
        """Whether a PUBACK is the one of this connection's presence (a refusal is said)."""
        if mid != self._published_mid:
            return False
        self._published_mid = None
        if code >= 0x80:
            self.refuse(f"refused the presence on {self.topic} (reason code 0x{code:02X})")
        else:
            self._unanswered = 0
        return True

    def lost(self) -> None:
        """The connection ended. mosquitto's acl_file drops a client whose publish it refuses,
        and the PUBACK saying so is rarely read before the socket fails: a presence left
        unanswered by ``UNANSWERED_LIMIT`` connections in a row counts as refused."""
        if self._published_mid is None:
            return
        self._published_mid = None
        self._unanswered += 1
        if self._unanswered >= UNANSWERED_LIMIT:
            self.refuse(f"dropped {self._unanswered} connections in a row before it answered the "
                        f"presence on {self.topic}")

    def refuse(self, what: str) -> None:
        """The broker will not take the presence: go on without one (said once)."""
        if self.refused:
            return
        self.refused = True
        log.error("the broker %s, so another kiosk started with device id %s would go "
                  "unnoticed; the kiosk runs on without its presence. Let the device publish and "
                  "read its own presence topic (run deploy/mosquitto/provision.py again; it keeps "
                  "every password)", what, self.own.device_id)

    def heard(self, payload: bytes, retained: bool) -> bool:
        """A presence arrived; True when this process must now hold back (said in the log)."""
        rival = self.watch.heard(payload, retained)
        if rival is None:
            return False
        self.rival = rival
        self.held.set()
        self._probe_ends_s = None
        # this process leaves at once, its PUBACK maybe unread; and the broker does take
        # presences (the rival's, under the same role): nothing here counts as refused
        self._published_mid, self._unanswered = None, 0
        self._look_again_s = time.monotonic() + self.retry_s
        log.error("%s", holding_message(self.own, rival, self.client_id, self.retry_s))
        return True

    def answer(self, payload: bytes, retained: bool) -> bytes | None:
        """This process's answer to a look's probe (transport/presence_look.py); None where
        the payload is none, or this process does not have the device id now."""
        probe = None if retained else read_probe(payload)
        if probe is None or self.rival is not None or self.refused:
            return None
        return self.own.payload(answers=probe)

    def may_connect(self) -> bool:
        """Whether the link may connect now: not while holding back, until it looks again
        and finds no live rival (a look in progress is taken one step further)."""
        if self.rival is None or self._probe_ends_s is not None:
            return True
        if self._look is not None:
            return self._step_look(self._look)
        if time.monotonic() < self._look_again_s:
            return False
        log.info("device id %s: looking again whether another kiosk still uses it",
                 self.own.device_id)
        if self._new_look is not None:
            self._look = self._new_look()
            return self._step_look(self._look)
        return self._connect_to_look()

    def close_look(self) -> None:
        """End a look in progress (the link stops)."""
        if self._look is not None:
            self._look.close()
            self._look = None

    def _step_look(self, look: Look) -> bool:
        outcome = look.step()
        if outcome.looking:
            return False
        self.close_look()
        if outcome.retry is not None:
            self._look_again_s = time.monotonic() + self.probe_s
            self._failed_looks.failed(outcome.retry, self.probe_s)
            return False
        self._failed_looks.answered()
        if outcome.rival is not None:
            self.rival = outcome.rival
            self._look_again_s = time.monotonic() + self.retry_s
            log.info("device id %s is still in use by host %s (pid %d); looking again in "
                     "%.0f s", self.own.device_id, outcome.rival.host, outcome.rival.pid,
                     self.retry_s)
            return False
        if outcome.unusable is not None and not self._look_said:
            self._look_said = True
            log.error("%s, so this kiosk looks with its own client id %s, and each look ends the "
                      "other kiosk's connection for a while (said once). Provision the look "
                      "login (run deploy/mosquitto/provision.py again; it keeps every password)",
                      outcome.unusable, self.client_id)
        return self._connect_to_look()

    def _connect_to_look(self) -> bool:
        """Connect with this kiosk's own client id; a live rival shows itself within
        ``probe_s`` of the CONNACK, else this process measures again."""
        self.watch.forget()  # the rival must show again that it lives
        self._probe_ends_s = math.inf  # until connected
        return True

    def tick(self) -> None:
        """Measure again once a look found no live rival within ``probe_s``."""
        if self._probe_ends_s is None or time.monotonic() < self._probe_ends_s:
            return
        log.warning("device id %s: no other live kiosk process uses it now; measuring again",
                    self.own.device_id)
        self.rival, self._probe_ends_s = None, None
        self.held.clear()

    def clear(self, client: mqtt.Client) -> None:
        """A clean stop while connected: remove the presence (an empty retained message; while
        this connection lives the topic holds this process's own). Unsubscribed first, so the
        session the broker keeps holds no copy for whoever connects with this client id next
        (a daemon with another topic prefix would take it for a command)."""
        if self.rival is None and not self.refused:
            client.unsubscribe(self.topic)
            client.publish(self.topic, b"", qos=1, retain=True)
