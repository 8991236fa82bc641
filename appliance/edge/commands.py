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
    edge.set_defaults(handler=_run, own_stop_signals=True)  # held until run_edge takes them


def _run(args: argparse.Namespace) -> int:
    from appliance.edge.service import run_edge  # noqa: PLC0415 - heavy deps load on use

    return run_edge(args.config, verbose=bool(getattr(args, "verbose", False)))
