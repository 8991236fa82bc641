"""Two kiosk links under one client id on a private mosquitto (each connect takes the other's
connection, MQTT 5 spec 3.1.4): how many connections each lost in a window. Prints ONE JSON
object.

Usage: .venv/bin/python benchmarks/reconnect_takeover.py [--seconds S] [--cap-s C]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    """The command line, built without the heavy modules imported below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cap-s", type=float, default=5.0)
    return parser


if __name__ == "__main__":  # --help and a bad argument end here, before the heavy imports
    _parser().parse_args()

from appliance.transport.broker import PrivateBroker
from appliance.transport.client import LinkSettings
from appliance.transport.mqtt import MqttLink
from appliance.transport.outbox import Outbox


def _link(folder: Path, broker: PrivateBroker, cap_s: float) -> MqttLink:
    settings = LinkSettings(broker.host, broker.port, "edge-bench-takeover",
                            reconnect_initial_s=0.5, reconnect_cap_s=cap_s)
    return MqttLink(settings, Outbox(folder / "outbox.db"),
                    status_topic="bench/takeover/status",
                    status_payload=lambda state: f'{{"state": "{state}"}}'.encode(),
                    ack_topic="bench/takeover/ack")


def run(seconds: float, cap_s: float) -> dict[str, Any]:
    """Both links for ``seconds``; the connections each lost."""
    with tempfile.TemporaryDirectory(prefix="takeover-") as tmp, \
            PrivateBroker(workdir=Path(tmp) / "broker") as broker:
        links = [_link(Path(tmp) / name, broker, cap_s) for name in ("a", "b")]
        for link in links:
            link.start()
        time.sleep(seconds)
        for link in links:
            link.stop_event.set()
            link.wake()
            link.join(5)
        lost = [link.stats.reconnects for link in links]
    return {"seconds": seconds, "reconnect_initial_s": 0.5, "reconnect_cap_s": cap_s,
            "connections_lost_per_link": lost,
            "connections_lost_per_link_per_min": [round(n * 60 / seconds, 1) for n in lost]}


def main() -> None:
    args = _parser().parse_args()
    logging.basicConfig(level=logging.ERROR)  # each lost connection logs a warning
    print(json.dumps(run(args.seconds, args.cap_s)))


if __name__ == "__main__":
    main()
