"""Where in its boot a kiosk built a status: the boot's id and the time since that boot, sent
with the status (and with its last will) as MQTT 5 user properties, so that the back office
orders one boot's statuses by them, whatever the kiosk's wall clock did and however long a
broker held a status (appliance/backoffice/status_order.py).

Not in the payload: ``appliance.status/1`` refuses unknown fields, so a back office not yet
updated would dead-letter every status that carried them. A user property is forwarded
unaltered (MQTT 5 spec 3.3.2.3.7) and ignored by whoever does not read it; a status without
one (a kiosk not yet updated, a system that does not say its boots apart) is ordered as
before. The time since boot runs on through a suspend and never steps (wallclock.py).
"""

from __future__ import annotations

from typing import Any

from appliance.transport.wallclock import boot_id, clock_now

BOOT_KEY = "appliance-boot"
SINCE_BOOT_KEY = "appliance-since-boot-ms"
MAX_BOOT_CHARS = 32  # a boot id is a 63-bit number: 19 digits
MAX_SINCE_BOOT_MS = 2**62  # far beyond any uptime; a bigger number is no kiosk's

BootStamp = tuple[str, int]  # (boot id, milliseconds since that boot)


def boot_stamp() -> BootStamp | None:
    """This moment's stamp (None where the system does not say its boots apart)."""
    boot = boot_id()
    return (str(boot), int(clock_now()[1] * 1000)) if boot else None


def stamped(properties: Any, stamp: BootStamp | None) -> Any:
    """``properties`` (paho PUBLISH properties) with ``stamp`` added as user properties."""
    if stamp is not None:
        properties.UserProperty = [(BOOT_KEY, stamp[0]), (SINCE_BOOT_KEY, str(stamp[1]))]
    return properties


def read_stamp(properties: Any) -> BootStamp | None:
    """The stamp a received message's properties carry (None: none, or not one a kiosk
    sends: a message from outside is only ordered as before)."""
    pairs = dict(getattr(properties, "UserProperty", None) or ())
    boot, since_ms = pairs.get(BOOT_KEY), pairs.get(SINCE_BOOT_KEY)
    if not boot or len(boot) > MAX_BOOT_CHARS or since_ms is None or len(since_ms) > 20:
        return None
    if not (since_ms.isascii() and since_ms.isdigit()) or int(since_ms) > MAX_SINCE_BOOT_MS:
        return None
    return boot, int(since_ms)
