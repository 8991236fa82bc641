"""``appliance edge [--config F]``: the edge daemon (systemd runs this)."""

from __future__ import annotations

import argparse
from typing import Any


def register(root: Any, groups: dict[str, Any]) -> None:
    """Add the ``edge`` command."""
    edge = root.add_parser(
        "edge", help="run the edge daemon: camera, measurement, durable MQTT delivery"
    )
    edge.add_argument("--config", default="config.yaml", help="config file (config.yaml)")
    edge.add_argument(
        "--out-of-order", action="store_true",
        help="serve only the kiosk screen, saying the kiosk is out of order and, for staff, why "
        "(systemd's words: $MONITOR_SERVICE_RESULT, $MONITOR_EXIT_CODE, $MONITOR_EXIT_STATUS); "
        "the edge unit's OnFailure= runs it (deploy/appliance-kiosk-out-of-order.service); "
        "reads only screen.language of --config (the language the page starts in; its "
        "default where the file cannot be read)")
    edge.add_argument("--screen-port", type=int, default=8090, metavar="PORT",
                      help="with --out-of-order: the kiosk screen's port (8090)")
    edge.set_defaults(handler=_run, own_stop_signals=True)  # held until run_edge takes them


def _run(args: argparse.Namespace) -> int:
    if args.out_of_order:
        from appliance.edge.out_of_order import serve_out_of_order  # noqa: PLC0415
        from appliance.edge.systemd import setup_logging  # noqa: PLC0415

        setup_logging(bool(getattr(args, "verbose", False)))
        return serve_out_of_order(args.screen_port, config_path=args.config)
    from appliance.edge.service import run_edge  # noqa: PLC0415 - heavy deps load on use

    return run_edge(args.config, verbose=bool(getattr(args, "verbose", False)))
