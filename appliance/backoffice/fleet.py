"""The fleet registry as people read it: one line per kiosk from its retained status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from appliance.backoffice.store import Store
from appliance.logsafe import escape_controls

FLEET_COLUMNS = ("site", "device_id", "state", "last_seen", "software_version", "model",
                 "camera", "outbox_depth")


def fleet_rows(store: Store) -> list[dict[str, Any]]:
    """Every known device with its state; a device seen only through results is 'unknown'."""
    rows = []
    for device in store.devices():
        model = None
        if device["model_name"]:
            model = f"{device['model_name']} {device['model_version'] or ''}".strip()
        rows.append({**device, "state": device["state"] or "unknown", "model": model})
    return rows


def _age(last_seen: str, now: datetime) -> str:
    seen = datetime.strptime(last_seen, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    seconds = max(0, int((now - seen).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{last_seen[:19]}Z ({seconds // size}{unit} ago)"
    return f"{last_seen[:19]}Z ({seconds}s ago)"


def _cell(column: str, value: Any, now: datetime) -> str:
    """One cell; a kiosk's own text (versions, model, camera) with control characters escaped,
    so a hostile status cannot drive the operator's terminal."""
    if value is None:
        return "-"
    return _age(value, now) if column == "last_seen" else escape_controls(str(value))


def fleet_table(store: Store, now: datetime | None = None) -> str:
    """A plain-text table of the fleet, with a count of online devices."""
    rows = fleet_rows(store)
    if not rows:
        return "no devices known yet (none has sent a status or a result)"
    moment = now or datetime.now(UTC)
    cells = [
        [
            _cell(c, row[c], moment)
            for c in FLEET_COLUMNS
        ]
        for row in rows
    ]
    header = [c.upper() for c in FLEET_COLUMNS]
    widths = [max(len(x) for x in column) for column in zip(header, *cells, strict=True)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True))
             for line in [header, *cells]]
    online = sum(1 for row in rows if row["state"] == "online")
    return "\n".join([*lines, f"{len(rows)} device(s), {online} online"])


def fleet_json(store: Store) -> str:
    """The fleet as a JSON array (for scripts)."""
    return json.dumps([{c: row[c] for c in FLEET_COLUMNS} for row in fleet_rows(store)], indent=2)
