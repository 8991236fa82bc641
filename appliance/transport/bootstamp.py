"""Where in its boot a kiosk built a status: the boot's id, the time since that boot, and the
time since boot when the link that sent it connected (its last will's stamp), sent with the
status (and with its last will) as MQTT 5 user properties, so that the back office orders one
boot's statuses by them, whatever the kiosk's wall clock did and however long a broker held a
status (appliance/backoffice/status_order.py). The link's stamp tells a last will (or a clean
stop's "offline") of one connection from the statuses of the next.

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
LINK_KEY = "appliance-link-since-boot-ms"
MAX_BOOT_CHARS = 32  # a boot id is a 63-bit number: 19 digits
MAX_SINCE_BOOT_MS = 2**62  # far beyond any uptime; a bigger number is no kiosk's

# (boot id, milliseconds since that boot, those when its link connected; None: not said)
BootStamp = tuple[str, int, int | None]


def boot_stamp(link_ms: int | None = None) -> BootStamp | None:
    """This moment's stamp, of a link connected at ``link_ms`` (None: this moment's, a last
    will's); None where the system does not say its boots apart."""
    boot = boot_id()
    if not boot:
        return None
    since_ms = int(clock_now()[1] * 1000)
    return str(boot), since_ms, since_ms if link_ms is None else link_ms


def stamped(properties: Any, stamp: BootStamp | None) -> Any:
    """``properties`` (paho PUBLISH properties) with ``stamp`` added as user properties."""
    if stamp is not None:
        properties.UserProperty = [(BOOT_KEY, stamp[0]), (SINCE_BOOT_KEY, str(stamp[1]))] + (
            [] if stamp[2] is None else [(LINK_KEY, str(stamp[2]))])
    return properties


def read_stamp(properties: Any) -> BootStamp | None:
    """The stamp a received message's properties carry (None: none, or not one a kiosk
    sends: a message from outside is only ordered as before; a link not said: None)."""
    pairs = dict(getattr(properties, "UserProperty", None) or ())
    boot, since_ms = pairs.get(BOOT_KEY), _milliseconds(pairs.get(SINCE_BOOT_KEY))
    if not boot or len(boot) > MAX_BOOT_CHARS or since_ms is None:
        return None
    return boot, since_ms, _milliseconds(pairs.get(LINK_KEY))


def _milliseconds(text: str | None) -> int | None:
    """A count of milliseconds as a kiosk writes it (None: none, or not one)."""
    if text is None or len(text) > 20 or not (text.isascii() and text.isdigit()):
        return None
    return int(text) if int(text) <= MAX_SINCE_BOOT_MS else None
