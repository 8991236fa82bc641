"""The handlers behind ``appliance models release|deploy|rollback|status``.

Deploy and rollback pick devices from what the fleet reports (retained statuses on the broker)
and from the store's device registry, then run a ``Rollout``. Status joins three sources: the
signed assignments (targeted), the devices' retained reports (running, state) and the store's
rollout records (why a rollout halted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from appliance.backoffice.store import Store, StoreError, open_store, store_url_for
from appliance.config import Config, ConfigError, load_config
from appliance.shipped import SKIN_SELF_TEST, shipped_path
from appliance.updates.fleetwatch import DeviceView, FleetWatcher
from appliance.updates.manifest import ManifestError
from appliance.updates.operations import assignments, release_model, released
from appliance.updates.release import manifest_for, table_inputs
from appliance.updates.repository import FileRepository, RepositoryError
from appliance.updates.rollout import Device, Rollout, RolloutPlan, latest_rollouts

EXIT_ERROR = 2
EXIT_HALTED = 1
_ERRORS = (ConfigError, StoreError, RepositoryError, ManifestError, OSError, TimeoutError)


def run_release(args: argparse.Namespace) -> int:
    """Sign a model into the repository with its manifest and self-test."""
    from appliance.inference.contract import ModelError  # noqa: PLC0415
    from appliance.modelbuild.table import TableError  # noqa: PLC0415

    repo = FileRepository(args.repo)
    vectors = args.vectors or shipped_path(SKIN_SELF_TEST)
    try:
        extra = {"feature_schema": args.feature_schema} if args.feature_schema else {}
        manifest = manifest_for(
            args.model, args.version, table_inputs(vectors),
            device_types=[t.strip() for t in args.device_types.split(",") if t.strip()], **extra,
        )
        target = release_model(repo, args.model, manifest)
    except (*_ERRORS, ModelError, TableError, ValueError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return EXIT_ERROR
    labels = ", ".join(f"{k} {v:.2f}" for k, v in sorted(manifest.label_shares().items()))
    print(f"released {manifest.name} {manifest.version} as {target}; "
          f"{len(manifest.self_test)} self-test vectors ({labels})")
    return 0


def _connect(config_path: str) -> tuple[Config, FleetWatcher, Store]:
    config = load_config(config_path)
    watcher = FleetWatcher(config.mqtt, f"models-{os.getpid()}")
    try:
        store = open_store(store_url_for(config.store.url, config.state_dir))
    except StoreError:
        watcher.close()
        raise
    return config, watcher, store


def _known_devices(watcher: FleetWatcher, store: Store) -> set[Device]:
    known = set(watcher.devices())
    known.update((row["site"], row["device_id"]) for row in store.devices())
    return known


def choose_devices(
    args: argparse.Namespace, known: set[Device], repo: FileRepository
) -> list[Device]:
    """The devices named by --devices, --site or --all (a rollback without them: every device
    the model is assigned to now), in a stable order."""
    if not (args.all or args.site or args.devices):
        chosen = sorted(d for d, a in assignments(repo).items() if a.model == args.name)
    elif args.all:
        chosen = sorted(known)
    elif args.site:
        chosen = sorted(d for d in known if d[0] == args.site)
    else:
        wanted = [d.strip() for d in args.devices.split(",") if d.strip()]
        by_id = {device_id: (site, device_id) for site, device_id in known}
        unknown = [d for d in wanted if d not in by_id]
        if unknown:
            raise ValueError(f"unknown device(s) {', '.join(unknown)}: no status from them yet")
        chosen = [by_id[d] for d in wanted]
    if not chosen:
        raise ValueError("no device matches; kiosks appear once they publish a status")
    return chosen


def run_deploy(args: argparse.Namespace) -> int:
    """Deploy (or roll back to) a release; exit 0 complete, 1 halted, 2 could not start."""
    try:
        _config, watcher, store = _connect(args.config)
    except _ERRORS as exc:
        print(f"{args.decision}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        repo = FileRepository(args.repo)
        plan = RolloutPlan(
            manifest=released(repo, args.name, args.version),
            devices=choose_devices(args, _known_devices(watcher, store), repo),
            canaries=0 if args.decision == "rollback" else max(0, args.canary),
            wave_size=max(1, args.wave), timeout_s=args.timeout_s,
            max_failures=max(0, args.max_failures), decision=args.decision,
            scope=args.devices or (f"site {args.site}" if args.site else
                                   "all" if args.all else f"assigned {args.name}"),
        )
        outcome = Rollout(repo, watcher, store, plan).run()
    except (*_ERRORS, ValueError) as exc:
        print(f"{args.decision}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        watcher.close()
        store.close()
    print(f"rollout {outcome.rollout_id} {outcome.state}: {outcome.reason}")
    return 0 if outcome.state == "complete" else EXIT_HALTED


def fleet_status(repo: FileRepository, watcher: FleetWatcher, store: Store) -> list[dict[str, Any]]:
    """Per device: running version, targeted version, last model state and rollout."""
    views = watcher.devices()
    targeted = assignments(repo)
    rollouts = latest_rollouts(store)
    devices = sorted(set(views) | set(targeted) | set(rollouts))
    return [_row(d, views.get(d), targeted, rollouts) for d in devices]


def _row(device: Device, view: DeviceView | None, targeted: Any, rollouts: Any) -> dict[str, Any]:
    state = view.state if view is not None else None
    assignment = targeted.get(device)
    rollout = rollouts.get(device)
    return {
        "site": device[0],
        "device_id": device[1],
        "running": view.running if view is not None else None,
        "targeted": f"{assignment.model} {assignment.version}" if assignment else None,
        "state": state.state if state is not None else None,
        "reason": state.reason if state is not None else None,
        "rollout": rollout[0] if rollout else None,
        "rollout_state": rollout[1] if rollout else None,
        "rollout_reason": rollout[3] if rollout else None,
    }


def run_status(args: argparse.Namespace) -> int:
    """Print the fleet's model status (a table, or one JSON object with --json)."""
    if not (args.repo / "settings.json").is_file():  # a typo would show an empty fleet
        print(f"status: {args.repo}: not a model repository (no settings.json)", file=sys.stderr)
        return EXIT_ERROR
    try:
        _config, watcher, store = _connect(args.config)
    except _ERRORS as exc:
        print(f"status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        rows = fleet_status(FileRepository(args.repo), watcher, store)
    except _ERRORS as exc:
        print(f"status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        watcher.close()
        store.close()
    if args.json:
        print(json.dumps({"devices": rows}, indent=2))
        return 0
    print(f"{'device':24} {'running':10} {'targeted':28} {'state':12} why")
    for row in rows:
        why = row["reason"] or row["rollout_reason"] or ""
        print(f"{row['site'] + '/' + row['device_id']:24} {row['running'] or '-':10} "
              f"{row['targeted'] or '-':28} {row['state'] or '-':12} {why[:120]}")
    return 0
