"""A pathology server's retained presence on ``{prefix}/pathology/servers/{id}``, and the watch
that tells when another process serves under the same client id.

Two servers with one ``pathology.client_id`` take the broker connection from each other:
the broker ends the older connection of a client id when a new one connects (MQTT 5 spec
3.1.4, step 3), and each reconnects in a second. mosquitto 2.0.11 sends the one it drops no
reason code (paho says "Unspecified error"), so this cannot be told from a lost network; but
it does publish the dropped connection's last will. So every presence, the will included,
names its process (a random id), when that process started, and which of its connections it
is. A server subscribes to its own presence topic: a process of another id whose connection
number grows while this one runs has connected again, so it is alive (a dead predecessor's
presence and its will never change). Of the two, the one started later stops
(``appliance pathology serve`` exits 4); the other keeps serving. A server that finds, as it
first connects, the presence of another process that did not stop cleanly takes no job for
``PROBATION_S``: time for a live one to connect again and show itself. A presence of an
earlier version names no process; such a server cannot see this one, so this one gives way to
it when it is live (``RivalWatch._earlier_version``; docs/pathology-server.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from appliance.pathology.jobs import read_presence, utc_text

log = logging.getLogger(__name__)
PROBATION_S = 5.0  # a live server dropped by our connect is back within its 1 s reconnect delay
LEAVE_WAIT_S = 5.0  # for the broker to take the offline presence and the DISCONNECT


@dataclass
class Presence:
    """This process's presence: who it is and which of its connections is up."""

    server_id: str
    backend: dict[str, Any]
    process: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=utc_text)
    host: str = field(default_factory=socket.gethostname)
    connection: int = 0  # connections made so far; the will names the next one

    def payload(self, state: str, connection: int | None = None, *, lost: bool = False) -> bytes:
        """The retained presence (online, offline, or, lost, the will of a connection)."""
        return json.dumps({"server": self.server_id, "state": state, "at": utc_text(),
                           "backend": self.backend, "process": self.process,
                           "started_at": self.started_at, "host": self.host,
                           "connection": self.connection if connection is None else connection,
                           "lost": lost}, default=str).encode()

    def will(self) -> bytes:
        """The last will of the next connection."""
        return self.payload("offline", self.connection + 1, lost=True)


class RivalWatch:
    """Reads the presence on this server's own topic and finds a live rival process."""

    def __init__(self, own: Presence) -> None:
        self.own = own
        self._connections: dict[str, int] = {}  # other process -> highest connection seen
        self._warned: set[str] = set()
        self._heard_any = False  # the first presence heard is a predecessor's, if any
        self._heard_own = False  # this server's presence was retained on its topic
        self.probation_until = 0.0  # monotonic time before which the server takes no job

    def on_probation(self) -> bool:
        """Whether another process that may still run was heard too lately to take jobs."""
        return time.monotonic() < self.probation_until

    def heard(self, payload: bytes) -> dict[str, Any] | None:
        """The presence of another live server under this client id that this one must give
        way to (this one must stop), else None; a younger live rival is logged (it stops
        itself)."""
        presence = read_presence(payload) if payload else None  # empty: cleared, no one
        first, self._heard_any = not self._heard_any, True
        if presence is not None and not _names_a_process(presence):
            return self._earlier_version(presence, first=first)
        if presence is not None and presence["process"] == self.own.process:
            self._heard_own = True
            return None
        if presence is None:
            return None
        if first:
            self._begin_probation(presence)
        rival = self._live_rival(presence)
        if rival is None:
            return None
        if (rival["started_at"], rival["process"]) < (self.own.started_at, self.own.process):
            return rival
        if rival["process"] not in self._warned:
            self._warned.add(rival["process"])
            log.warning("another process serves as %s (started %s on %s): it started later "
                        "and stops; this server goes on", self.own.server_id,
                        rival["started_at"], rival["host"])
        return None

    def _earlier_version(self, presence: dict[str, Any], *, first: bool) -> dict[str, Any] | None:
        """A presence of a server of an earlier version, which names no process, no start
        and no connection, and cannot see this one: this one gives way to it when it is
        live. It is live when it says ``online``, or when its presence replaced this server's
        own (heard before): it connected since, and its will fired as our connect dropped it.
        Its ``offline``, heard first, is its clean stop or the will our connect fired, which
        cannot be told apart: no job for PROBATION_S, time for it to connect again."""
        if presence["state"] == "online" or self._heard_own:
            return presence
        if first:
            self.probation_until = time.monotonic() + PROBATION_S
            log.info("%s: the last presence under this name is of a server of an earlier "
                     "version (it names no process), which may still run; no job for %g s",
                     self.own.server_id, PROBATION_S)
        return None

    def _begin_probation(self, presence: dict[str, Any]) -> None:
        """No job for PROBATION_S when the first presence heard is of another process that
        did not stop cleanly (online, or its will): it may still run, and shows whether it
        does once it connects again."""
        if not (presence["state"] == "online" or presence.get("lost")):
            return
        self.probation_until = time.monotonic() + PROBATION_S
        log.info("%s: the last presence under this name is of another process (started %s on "
                 "%s) that did not stop cleanly; no job for %g s while it may still run",
                 self.own.server_id, presence["started_at"], presence["host"], PROBATION_S)

    def _live_rival(self, presence: dict[str, Any]) -> dict[str, Any] | None:
        """The presence when it proves its process connected again since this one first
        heard of it."""
        process, connection = presence["process"], presence["connection"]
        seen = self._connections.get(process)
        self._connections[process] = max(connection, seen or 0)
        return presence if seen is not None and connection > seen else None


def _names_a_process(presence: dict[str, Any]) -> bool:
    return all(isinstance(presence.get(key), str) for key in ("process", "started_at", "host")) \
        and isinstance(presence.get("connection"), int)


def rival_message(server_id: str, rival: dict[str, Any], topic: str) -> str:
    """What the server that stops says: who else serves under its name, and what to do."""
    if _names_a_process(rival):
        who = (f"another pathology server serves with client id {server_id!r} (started "
               f"{rival['started_at']} on host {rival['host']}, before this one)")
        unless = ""
    else:
        who = (f"another pathology server, of an earlier version, serves with client id "
               f"{server_id!r} (its presence on {topic} names no process: it cannot see this "
               "one and never gives way)")
        unless = ("; if none runs (it stopped without its last will reaching the broker), "
                  f"clear its retained presence: an empty retained message on {topic}")
    return (f"{who}: two servers with one client id take the broker connection from each "
            "other and both think they own the same jobs; give each server its own "
            "pathology.client_id (the default, pathology-HOSTNAME, is the same for containers "
            f"with one host name){unless}. This server stops (exit 4)")


def leave_broker(client: mqtt.Client, topic: str, offline: bytes | None,
                 connected: threading.Event) -> None:
    """Publish ``offline`` (None: nothing) retained, then DISCONNECT, each sent before paho's
    network thread stops (``connected`` clears once the DISCONNECT is out). loop_stop does not
    flush what is queued: a stop often ended with neither sent, the broker published the
    will, and the next start (a systemctl restart) took the clean stop for a crash."""
    if offline is not None and connected.is_set():
        sent = client.publish(topic, offline, qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):  # the connection went meanwhile
            sent.wait_for_publish(LEAVE_WAIT_S)
    client.disconnect()
    deadline_s = time.monotonic() + LEAVE_WAIT_S
    while connected.is_set() and time.monotonic() < deadline_s:
        time.sleep(0.01)
    client.loop_stop()
