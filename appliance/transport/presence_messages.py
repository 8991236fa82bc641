"""The messages on a device's presence topic: a kiosk process's presence, a look's probe, and
the answer to one; and how a received one is read.

A presence names its process (a random id, its pid and host), the how-manieth of its
connections is up, and the processes it ``found`` (transport/presence.py says how two live
processes use that to decide which holds back). A held-back kiosk's look asks with a probe (not
retained), and a live process answers with its presence naming that probe
(transport/presence_look.py). A received payload that is not one of these reads as None, never
as an error: the callers decide what to say about it.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

PRESENCE_SCHEMA = "appliance.presence/1"
PROBE_SCHEMA = "appliance.presence-probe/1"  # a held-back kiosk's look asks who is alive
MAX_FOUND = 4  # processes listed in ``found`` (more than two kiosks share an id only rarely)
MAX_TEXT_CHARS = 255  # of a host name or process id read from a presence


@dataclass(frozen=True)
class Rival:
    """Another live process under this device id, as its newest presence names it."""

    process: str
    host: str
    pid: int
    connection: int
    found: tuple[str, ...]


@dataclass
class Presence:
    """This process's presence: who it is, which of its connections is up, what it found."""

    device_id: str
    site: str
    process: str = field(default_factory=lambda: uuid.uuid4().hex)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    connection: int = 0  # connections made so far
    found: list[str] = field(default_factory=list)
    arrived: bool = False  # the first connection is over, or its own presence came back

    def payload(self, answers: str | None = None) -> bytes:
        """The retained presence of the current connection; with ``answers``, the (not
        retained) answer to a look's probe of that id (transport/presence_look.py)."""
        data = {"schema": PRESENCE_SCHEMA, "device_id": self.device_id, "site": self.site,
                "process": self.process, "pid": self.pid, "host": self.host,
                "connection": self.connection, "found": self.found}
        if answers is not None:
            data["answers"] = answers
        return json.dumps(data).encode()


def probe_payload(probe: str) -> bytes:
    """A look's question on the presence topic: which live process has this device id."""
    return json.dumps({"schema": PROBE_SCHEMA, "probe": probe}).encode()


def read_probe(payload: bytes) -> str | None:
    """The id of the look's probe a payload is, or None for anything that is not one."""
    data = _json_object(payload)
    probe = data.get("probe") if data.get("schema") == PROBE_SCHEMA else None
    return probe if isinstance(probe, str) and 0 < len(probe) <= MAX_TEXT_CHARS else None


def read_answer(payload: bytes, probe: str) -> Rival | None:
    """The live process a presence names when it answers the probe ``probe``, else None."""
    rival = read_rival(payload)
    return rival if rival is not None and _json_object(payload).get("answers") == probe else None


def _json_object(payload: bytes) -> dict[str, Any]:
    """A payload's JSON object (empty for anything else)."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_rival(payload: bytes) -> Rival | None:
    """The process a presence names, or None for anything that is not a presence."""
    data = _json_object(payload)
    if data.get("schema") != PRESENCE_SCHEMA:
        return None
    found = data.get("found")
    texts = [data.get("process"), data.get("host")]
    numbers = [data.get("pid"), data.get("connection")]
    if not (all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT_CHARS for t in texts)
            and all(type(n) is int and n > 0 for n in numbers)
            and isinstance(found, list) and len(found) <= MAX_FOUND
            and all(isinstance(f, str) and len(f) <= MAX_TEXT_CHARS for f in found)):
        return None
    return Rival(data["process"], data["host"], data["pid"], data["connection"], tuple(found))
