"""Connections the broker keeps dropping soon after they start: when to try again, and what
that likely is.

``Reconnects`` paces the link's attempts: growing delays while they fail, and from the first
delay again only after a connection that worked: one that lasted ``SHORT_S`` or more and
either had its subscribe answered by the broker or lasted the longest delay too. One dropped
right after its CONNACK (a broker too loaded to keep it) is no success: when each CONNACK
started the backoff again, such a broker was tried again after the first delay for ever, twice
a second by every kiosk of a fleet. Nor is one taken over by another client with its client
id: the broker answers the subscribe before the other connects, and when that reset the delay
two kiosks with one client id took the connection from each other twice a second each, for
ever.

A broker drops the older connection of a client id when another client connects with it
(MQTT 5 spec 3.1.4), and mosquitto 2.0 tells the dropped one no reason (reason 128). A kiosk
whose login and client id someone else uses (a copied config that runs no presence, or a
stolen password) then only sees its connection lost again and again, each time it came back.
After ``IN_A_ROW`` such connections in a row, each lost within ``SHORT_S`` of its start, the
link says so once, naming its client id and what to check; one connection that lasts ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.transport.backoff import Backoff

log = logging.getLogger("appliance.transport.mqtt")

SHORT_S = 5.0
IN_A_ROW = 3


class ConnectionChurn:
    """Counts connections lost soon after they started; warns once per streak."""

    def __init__(self, client_id: str, login: str | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client_id, self.login, self._clock = client_id, login, clock
        self._started_s: float | None = None
        self.short_in_a_row = 0

    def connected(self) -> None:
        """A CONNACK with reason code 0."""
        self._started_s = self._clock()

    def lost(self, code: int, results_unanswered: bool = False) -> float:
        """The connection that ``connected`` started ended with ``code``; how long it lasted
        (0 when none had started). ``results_unanswered``: it ended with results in flight
        and none answered, which is how mosquitto drops a client whose results its ACL
        refuses (transport/confirmations.py says that once): then the warning names both."""
        if self._started_s is None:
            return 0.0
        lasted_s, self._started_s = self._clock() - self._started_s, None
        if lasted_s >= SHORT_S or code == 0:  # lasted, or this side ended it
            self.short_in_a_row = 0
            return lasted_s
        self.short_in_a_row += 1
        if self.short_in_a_row == IN_A_ROW and results_unanswered:
            log.warning(
                "the broker dropped this kiosk's connection %d times in a row within %.0f s of "
                "connecting (last reason %d), each time with results unanswered: its ACL may "
                "refuse this device's results, or another client connects as client id %s "
                "(login %s); the broker's log says which ('already connected, closing old "
                "connection' names the other's address)",
                IN_A_ROW, SHORT_S, code, self.client_id, self.login or "none")
        elif self.short_in_a_row == IN_A_ROW:
            log.warning(
                "the broker dropped this kiosk's connection %d times in a row within %.0f s of "
                "connecting (last reason %d): another client is likely connecting as client id "
                "%s (login %s), a copied config or a stolen password; the broker's log names "
                "its address ('already connected, closing old connection'). If it is no kiosk "
                "of yours, give this one a new password (deploy/mosquitto/provision.py)",
                IN_A_ROW, SHORT_S, code, self.client_id, self.login or "none")
        return lasted_s


class Reconnects:
    """When the link tries its broker next (see the module's opening), and the warning of
    connections dropped soon (``ConnectionChurn``)."""

    def __init__(self, initial_s: float, cap_s: float, client_id: str, login: str | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backoff = Backoff(initial_s, cap_s)
        self._churn = ConnectionChurn(client_id, login, clock)
        self._subscribed = False  # whether the broker answered a subscribe since the CONNACK

    def failed(self) -> float:
        """An attempt that did not connect (unreachable, refused, no CONNACK); the delay
        before the next."""
        return self._backoff.next_delay_s()

    def connected(self) -> None:
        """A CONNACK with reason code 0."""
        self._subscribed = False
        self._churn.connected()

    def subscribed(self) -> None:
        """The broker answered a subscribe on this connection."""
        self._subscribed = True

    def lost(self, code: int, results_unanswered: bool = False) -> float:
        """The connection ended with ``code``; the delay before the next attempt."""
        lasted_s = self._churn.lost(code, results_unanswered)
        if lasted_s >= SHORT_S and (self._subscribed or lasted_s >= self._backoff.cap_s):
            self._backoff.reset()  # it worked
        return self._backoff.next_delay_s()
