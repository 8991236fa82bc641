"""The fleet registry as people read it: one line per kiosk from its retained status, with its
clock as its latest live status read it (so an operator sees a kiosk whose NTP fails)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.backoffice.schema import second_text
from appliance.backoffice.store import Store
from appliance.logsafe import escape_controls
from appliance.texttable import aligned

FLEET_COLUMNS = ("site", "device_id", "state", "last_seen", "clock_ahead_s",
                 "software_version", "model", "camera", "outbox_depth", "outbox_oldest_age_s",
                 "dropped")
# the table's headers where the column name would mislead (the cell is a duration, not seconds)
HEADERS = {"outbox_oldest_age_s": "OLDEST_UNSENT", "clock_ahead_s": "CLOCK"}
JSON_COLUMNS = (*FLEET_COLUMNS, "clock_read_at", "measuring_paused", "outbox_in_use", "status_at",
                "status_sent_at")
# why an online kiosk does not measure, as its status says it (payloads.py: measuring_paused)
PAUSED_TEXT = {"disk_full": "measuring paused: disk full",
               "storage": "measuring paused: storage"}
# the file other than its outbox an online kiosk keeps its results in (payloads.py:
# outbox_in_use): it measures, but someone must free the damaged outbox
OUTBOX_TEXT = {"repaired_copy": "outbox on its repaired copy"}
# a kiosk clock off by more than this is flagged: its NTP is not working (statuses read the
# offset to a few seconds: erasure_clock.py)
CLOCK_OFF_S = 60.0


def fleet_rows(store: Store) -> list[dict[str, Any]]:
    """Every known device with its state (``fleet_row``); the console pages a site's
    kiosks with ``Store.device_page`` instead."""
    return [fleet_row(device) for device in store.devices()]


def fleet_row(device: dict[str, Any]) -> dict[str, Any]:
    """A stored device as the fleet shows it: its state ('unknown' for a device seen only
    through results) and its model as one text."""
    model = None
    if device["model_name"]:
        model = f"{device['model_name']} {device['model_version'] or ''}".strip()
    return {**device, "state": device["state"] or "unknown", "model": model}


def duration(seconds: float) -> str:
    """'12s', '5m', '3h', '2d' (the largest whole unit)."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def seen_ago(stored: str | None, now: datetime) -> str:
    """'12s ago', '5m ago', '3h ago', '2d ago' for a stored UTC time."""
    if not stored:
        return "-"
    seen = datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return f"{duration(max(0.0, (now - seen).total_seconds()))} ago"


def state_text(device: dict[str, Any]) -> str:
    """The state as the fleet shows it: with why an online kiosk does not measure, and the
    file other than its outbox it keeps its results in, as its latest status said ('online,
    measuring paused: disk full', 'online, outbox on its repaired copy'); an offline kiosk's
    last word on them is not shown, as it no longer holds."""
    if device["state"] != "online":
        return str(device["state"])
    paused, outbox = device.get("measuring_paused"), device.get("outbox_in_use")
    said = [PAUSED_TEXT.get(paused, "measuring paused")] if paused is not None else []
    said += [OUTBOX_TEXT.get(outbox, "outbox not its own")] if outbox is not None else []
    return ", ".join(["online", *said])


def needs_staff(device: dict[str, Any]) -> bool:
    """Whether an online kiosk's latest status says something someone must see to: measuring
    paused, or its results kept in a copy while the damaged outbox stays (shown in red)."""
    return device["state"] == "online" and any(
        device.get(key) is not None for key in ("measuring_paused", "outbox_in_use"))


def camera_text(device: dict[str, Any], now: datetime) -> str:
    """The camera as the fleet shows it: its state while the kiosk is online; for an offline
    kiosk the state it last reported and how long ago ('last said online, 2h ago': a bare
    'online' beside the kiosk's 'offline' read as a contradiction), or that it is not known
    ('unknown (offline)')."""
    camera = device.get("camera")
    if device["state"] != "offline":
        return camera or "-"
    # its age by the back office's clock: the kiosk's (status_at) may have stepped back
    reported = device.get("status_sent_at") or device.get("status_at")
    if camera is None or not reported:
        return "unknown (offline)"
    return f"last said {camera}, {seen_ago(reported, now)}"


# a year as astronomers count it (365.25 days): a clock a dead CMOS battery reset is years off
_YEAR_S = 31_557_600


def offset_text(seconds: float) -> str:
    """'3h 12m', '26y 340d', '42s': the two largest whole units of a clock offset."""
    whole = round(abs(seconds))
    parts: list[str] = []
    for unit, size in (("y", _YEAR_S), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


def clock_text(device: dict[str, Any], now: datetime) -> str:
    """A kiosk's clock as its latest live status read it ('3h 12m behind, read 2m ago'), with
    'check its NTP' where it is off by more than CLOCK_OFF_S; '-' where never read."""
    ahead_s, read_at = device.get("clock_ahead_s"), device.get("clock_read_at")
    if ahead_s is None or not read_at:
        return "-"
    way = "ahead" if ahead_s >= 0 else "behind"
    flag = " (check its NTP)" if abs(ahead_s) > CLOCK_OFF_S else ""
    return f"{offset_text(ahead_s)} {way}{flag}, read {seen_ago(read_at, now)}"


def _cell(column: str, row: dict[str, Any], now: datetime) -> str:
    """One cell; a kiosk's own text (versions, model, camera) with control characters escaped,
    so a hostile status cannot drive the operator's terminal."""
    worded = _WORDED.get(column)
    if worded is not None:
        return escape_controls(worded(row, now))
    value = row[column]
    if value is None:
        return "-"
    if column == "last_seen":
        return f"{second_text(value)} ({seen_ago(value, now)})"
    if column == "outbox_oldest_age_s":
        return duration(float(value))
    return escape_controls(str(value))


# the cells said in words (camera, state and clock texts) rather than as stored
_WORDED: dict[str, Callable[[dict[str, Any], datetime], str]] = {
    "camera": camera_text, "clock_ahead_s": clock_text,
    "state": lambda row, _now: state_text(row),
}


def fleet_table(store: Store, now: datetime | None = None) -> str:
    """A plain-text table of the fleet, with a count of online devices."""
    rows = fleet_rows(store)
    if not rows:
        return "no devices known yet (none has sent a status or a result)"
    moment = now or datetime.now(UTC)
    cells = [
        [
            _cell(c, row, moment)
            for c in FLEET_COLUMNS
        ]
        for row in rows
    ]
    header = [HEADERS.get(c, c.upper()) for c in FLEET_COLUMNS]
    lines = aligned([header, *cells])
    online = sum(1 for row in rows if row["state"] == "online")
    return "\n".join([*lines, f"{len(rows)} device(s), {online} online"])


def fleet_json(store: Store) -> str:
    """The fleet as a JSON array (for scripts)."""
    return json.dumps([{c: row[c] for c in JSON_COLUMNS} for row in fleet_rows(store)], indent=2)
