"""``appliance fleet resend --since TIME``: have the kiosks send again what the back office
confirmed since TIME, after its store was restored from a backup that lacks it.

Each kiosk keeps the results the back office confirmed for ``edge.keep_confirmed_h`` (48 h by
default; appliance/transport/outbox_kept.py). This command publishes ``{"since": TIME}`` at
QoS 1 on ``{prefix}/{site}/{device}/cmd/resend`` of every kiosk whose retained status the broker
holds (or of those named with ``--device``); a kiosk away gets it from its broker session when
it is back. It logs in as the config's ``mqtt.username`` with that name as client id: the
``rollout`` login on the shipped broker (deploy/mosquitto/provision.py lets it, and the
back-office workers, publish a kiosk's ``cmd/resend``; a kiosk's own login cannot). Each kiosk
takes at most one request a minute (appliance/transport/resend.py).

Run it after the erasures made since the backup are done again (``appliance results erase``):
their tombstones keep a resent result of an erased subject out of the store.

Exit codes: 0 every kiosk asked; 1 the broker did not take the request for some (each named);
2 nothing sent (a config error, a time that is none, the broker refused or unreachable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import closing
from datetime import UTC, datetime

from appliance.kioskname import site_and_device
from appliance.logsafe import escape_controls
from appliance.passwordfile import ROLLOUT_LOGIN, add_login_password_option, login_password
from appliance.transport.resend import RESEND_LEAF, ResendRequestError, parse_request

COMMAND = "fleet resend"
NO_MATCHING_SUBSCRIBERS = 0x10  # a PUBACK's reason code (MQTT 5 spec 3.4.2.1)


def request_body(since: str) -> bytes:
    """The request a kiosk takes for ``since`` (ISO 8601, UTC when it names no zone);
    ValueError saying why it is none."""
    try:
        moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {since[:80]!r}: not an ISO date-time (e.g. "
                         "2026-12-07T03:00:00Z)") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    body = json.dumps({"since": moment.astimezone(UTC).isoformat().replace("+00:00", "Z")})
    try:
        parse_request(body.encode(), time.time())  # as a kiosk checks it, and not ahead of us
    except ResendRequestError as exc:
        raise ValueError(f"--since {since[:80]!r}: {exc}") from exc
    return body.encode()


def run_resend(args: argparse.Namespace) -> int:
    """Ask the fleet (or ``--device`` kiosks) to send again what it confirmed since --since."""
    from appliance.config import ConfigError, load_config_or_defaults  # noqa: PLC0415
    from appliance.transport.client import BrokerRefusedError  # noqa: PLC0415
    from appliance.updates.fleetops import watch_fleet  # noqa: PLC0415 - tuf loads on use

    try:
        body = request_body(args.since)
        devices: list[tuple[str, str]] = args.device  # kioskname.site_and_device
        config = load_config_or_defaults(args.config)
        password = login_password(args.password_file, config.mqtt.username)
        with closing(watch_fleet(config, args.config, password)) as watcher:
            targets = devices or sorted(watcher.devices())
            answers = {device: watcher.command(*device, RESEND_LEAF, body)
                       for device in targets}
    except (ValueError, ConfigError, BrokerRefusedError, ConnectionError, OSError,
            TimeoutError) as exc:
        print(escape_controls(f"{COMMAND}: {exc}"), file=sys.stderr)
        return 2
    if not answers:
        print(f"{COMMAND}: the broker holds no kiosk's status; name kiosks with --device "
              "SITE/DEVICE", file=sys.stderr)
        return 2
    missed = [device for device, code in answers.items() if code is None or code >= 0x80
              or code == NO_MATCHING_SUBSCRIBERS]
    for (site, device), code in answers.items():
        print(f"{site}/{device}: {_said(code)}")
    asked = len(answers) - len(missed)
    print(f"asked {asked} of {len(answers)} kiosk(s) to send again what the back office "
          f"confirmed since {json.loads(body)['since']} (each kiosk keeps it "
          "edge.keep_confirmed_h, 48 h by default); the store keeps each result once")
    return 1 if missed else 0


def _said(code: int | None) -> str:
    """What the broker's answer to one kiosk's request means."""
    if code is None:
        return "NOT ASKED: the broker did not acknowledge the request; run the command again"
    if code == NO_MATCHING_SUBSCRIBERS:
        return ("NOT ASKED: no session of the kiosk on the broker (away longer than its session "
                "expiry); run the command again once it is back, with --device")
    if code >= 0x80:
        return (f"NOT ASKED: the broker refused the request (reason code 0x{code:02X}); this "
                "login may not publish cmd/resend (deploy/mosquitto/provision.py)")
    return "asked"


def register(fleet: argparse.ArgumentParser) -> None:
    """Add ``fleet resend`` under ``fleet``."""
    sub = fleet.add_subparsers(dest="fleet_command", metavar="{resend}")
    resend = sub.add_parser("resend", help="have the kiosks send again what the back office "
                            "confirmed since a time (after a store restore)")
    resend.add_argument("--since", required=True, metavar="TIME",
                        help="UTC ISO 8601 time: results the back office confirmed at or after "
                        "it (by the back office's clock) are sent again; `store restore` prints it")
    resend.add_argument("--device", action="append", default=[], metavar="SITE/DEVICE",
                        type=site_and_device,
                        help="only this kiosk (repeatable; default: every kiosk whose status "
                        "the broker holds)")
    add_login_password_option(resend, ROLLOUT_LOGIN)
    resend.add_argument("--config", default=None,
                        help="config whose mqtt section names the broker and the login "
                        "(the rollout login's, as for `models deploy`)")
    resend.set_defaults(handler=run_resend)
