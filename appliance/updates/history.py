"""``appliance models status --history DEVICE``, and status while the broker is away: the
kiosks' model reports as the back office stored them (appliance/backoffice/model_reports.py).

The broker keeps only each kiosk's newest report, and only while it keeps its retained
messages; the store keeps every report the ingest workers received, with the kiosk's time and
the back office's receipt, so the operator can say which model a kiosk served when, years on.
"""

from __future__ import annotations

import json
import sys
from contextlib import closing
from typing import Any

from appliance.backoffice import storeerrors
from appliance.backoffice.sqlitefile import missing_sqlite_file
from appliance.backoffice.store import open_existing_store
from appliance.logsafe import escape_controls
from appliance.transport.client import BrokerRefusedError

EXIT_ERROR = 2
EXIT_BROKER_AWAY = 1  # status without the broker: the stored reports only, not the live view


def run_history(kiosk: tuple[str | None, str], url: str, *, limit: int, as_json: bool) -> int:
    """Print the newest ``limit`` stored reports of ``kiosk`` (its site, None for the device
    id at any site; its device id: kioskname.kiosk_of), newest first; exit 2 when the store
    cannot be read."""
    site, device_id = kiosk
    device = device_id if site is None else f"{site}/{device_id}"
    try:
        with closing(open_existing_store(url)) as store:
            rows = store.model_reports(device_id, site, limit=limit)
    except storeerrors.STORE_ERRORS as exc:
        print(escape_controls(f"models status: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    if as_json:
        print(json.dumps({"device": device, "reports": rows}, indent=2))
    elif not rows:
        print(escape_controls(f"no model report of {device} is stored (the back office stores "
                              "each one it receives on the kiosk's model/state topic)"))
    else:
        print("\n".join(report_lines(rows)))
    return 0


def run_without_broker(why: Exception, url: str, *, as_json: bool) -> int:
    """The status the store can give when the broker cannot be reached: each kiosk's newest
    stored report, after a line saying why the live view is missing; exit 1 (2 without a
    store to read, or when the broker answered with a refusal: its login is to be fixed, and
    the stored reports would bury that line)."""
    print(escape_controls(f"models status: {why}"), file=sys.stderr)
    if isinstance(why, BrokerRefusedError) or missing_sqlite_file(url) is not None:
        return EXIT_ERROR
    try:
        with closing(open_existing_store(url)) as store:
            rows = store.latest_model_reports()
    except storeerrors.STORE_ERRORS as exc:
        print(escape_controls(f"models status: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    print(escape_controls("the broker cannot be reached: each kiosk's newest model report as "
                          "the store holds it (`--history DEVICE` shows a kiosk's earlier ones)"),
          file=sys.stderr)
    if as_json:
        print(json.dumps({"broker": "unreachable", "stored_reports": rows}, indent=2))
    elif rows:
        print("\n".join(report_lines(rows, with_device=True)))
    else:
        print("no model report is stored yet")
    return EXIT_BROKER_AWAY


def report_lines(rows: list[dict[str, Any]], *, with_device: bool = False) -> list[str]:
    """Stored reports as a table (a kiosk's own words escaped, its reason cut to 120)."""
    head = f"{'DEVICE':24} " if with_device else ""
    lines = [f"{head}{'RECEIVED':20} {'KIOSK TIME':20} {'STATE':11} {'MODEL':24} "
             f"{'RUNNING AFTER':24} WHY"]
    for row in rows:
        device = f"{row['site'] + '/' + row['device_id']:24} " if with_device else ""
        lines.append(f"{device}{row['received_at'][:19]:20} {row['reported_at'][:19]:20} "
                     f"{row['state']:11} {_model(row, 'model'):24} {_model(row, 'running'):24} "
                     f"{(row['reason'] or '')[:120]}".rstrip())  # no reason: no blanks
    return [escape_controls(line) for line in lines]


def _model(row: dict[str, Any], which: str) -> str:
    name, version = row[f"{which}_name"], row[f"{which}_version"]
    return "-" if name is None else f"{name} {version}"
