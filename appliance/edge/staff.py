"""Whether the kiosk's staff know why it cannot measure: what the customer's screen may claim.

The screen says "staff have been told" only when that is true: the kiosk's retained status
reports the state (the camera: ``camera: offline``; measuring paused for storage or a full
disk: ``measuring_paused``; both shown by the back office's fleet table), a status built after
the state began has reached the broker (its PUBACK), and the link is connected now. Otherwise
nobody was told (the broker unreachable; a kiosk held back off the broker for a duplicate
device id, which sends no status) and the screen asks the customer to tell a member of staff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

# the out-of-order states (screen catalogue keys) that the retained status reports
REPORTED_IN_STATUS = frozenset(
    {"guide_camera_offline", "guide_paused_storage", "guide_paused_disk_full"})


class StatusLink(Protocol):
    """What the notice needs of the MQTT link (transport/mqtt.py)."""

    def send_status(self) -> None: ...

    def status_reached_since(self, since_s: float) -> bool: ...


class StaffNotice:
    """Follows the out-of-order state (supervisor thread) and says whether staff were told."""

    def __init__(self, link: StatusLink, clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._clock = clock
        self._why: str | None = None
        self._since_s = clock()

    def told(self, why: str | None) -> bool:
        """Whether staff were told of ``why`` (a catalogue key; None: the kiosk measures). A
        new state the status reports asks the link for a fresh status at once."""
        if why != self._why:
            self._why, self._since_s = why, self._clock()
            if why in REPORTED_IN_STATUS:
                self._link.send_status()
        return why in REPORTED_IN_STATUS and self._link.status_reached_since(self._since_s)
