"""The fleet's devices as a model repository sees them: what each runs and is assigned
(``models status``), and which of them a deploy or rollback takes.

Three sources are joined: the signed assignments (targeted), the devices' retained reports on
the broker (running, state) and the store's rollout records (the newest rollout of each) and
device registry. A device another repository serves (its kiosk reports a model this one never
released) is told apart, so that neither status nor ``--all`` counts it as this fleet's.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.backoffice.store import Store
from appliance.logsafe import escape_controls
from appliance.updates.fleetwatch import DeviceView, FleetWatcher
from appliance.updates.manifest import Device
from appliance.updates.operations import assignments, releases, withdrawals
from appliance.updates.repository import FileRepository
from appliance.updates.rolloutrecords import latest_rollouts


def fleet_status(
    repo: FileRepository, watcher: FleetWatcher, store: Store | None
) -> list[dict[str, Any]]:
    """Per device: running version, targeted version, last model state and rollout (none
    without a store: no rollout was ever recorded), and ``elsewhere``: another repository
    serves it.

    That is a kiosk this repository never targeted nor rolled out to, whose reported model is
    none this repository released (several repositories' kiosks can share a broker prefix). A
    kiosk that reports no model yet is not: it may be waiting for its first deploy from here.
    """
    views = watcher.devices()
    targeted = assignments(repo)
    rollouts = latest_rollouts(store, repo) if store is not None else {}
    withdrawn = withdrawals(repo)
    names = {manifest.name for manifest in releases(repo)} | {name for name, _ in withdrawn}
    devices = sorted(set(views) | set(targeted) | set(rollouts))
    return [{**_row(d, views.get(d), targeted, rollouts), **_withdrawn(d, views.get(d),
                                                                      targeted, withdrawn),
             "elsewhere": d not in targeted and d not in rollouts and _served_elsewhere(
                 views[d], names)} for d in devices]


def _served_elsewhere(view: DeviceView, names: set[str]) -> bool:
    """The device reports a model, and no model of that name is released here."""
    reported = {model.name for model in _reported_models(view)}
    return bool(reported) and not reported & names


def _reported_models(view: DeviceView) -> list[Any]:
    state, status = view.state, view.status
    models = [status.model] if status is not None else []
    if state is not None:
        models += [state.running, state.model]
    return [model for model in models if model is not None]


def _withdrawn(device: Device, view: DeviceView | None, targeted: Any,
               withdrawn: Any) -> dict[str, Any]:
    """Whether the release the device is assigned, and the one it reports running, were
    withdrawn (``models yank``): each the record's "when, by whom: why", or None."""
    assignment = targeted.get(device)
    assigned = withdrawn.get((assignment.model, assignment.version)) if assignment else None
    model = view.running_model if view is not None else None
    running = withdrawn.get((model.name, model.version)) if model is not None else None
    return {"targeted_withdrawn": assigned.said() if assigned else None,
            "running_withdrawn": running.said() if running else None}


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
        # installed, kept (serving the release as the rollout halted), withdrawn, timeout, ...
        "rollout_device_state": rollout[2] if rollout else None,
        "rollout_reason": rollout[3] if rollout else None,
    }


def known_devices(watcher: FleetWatcher, store: Store) -> set[Device]:
    known = set(watcher.devices())
    known.update((row["site"], row["device_id"]) for row in store.devices())
    return known


def deployable(
    args: argparse.Namespace, repo: FileRepository, watcher: FleetWatcher, store: Store
) -> set[Device]:
    """The devices a deploy may pick: every known one, less, for --all and --site, those
    another repository serves (as status leaves them out; said on stderr): their kiosks never
    read this repository, so one would time out as a canary and halt the rollout."""
    known = known_devices(watcher, store)
    if not (args.all or args.site):  # --devices names them; a rollback takes the assigned
        return known
    elsewhere = {(row["site"], row["device_id"])
                 for row in fleet_status(repo, watcher, store) if row["elsewhere"]}
    left_out = sorted(d for d in known & elsewhere if args.all or d[0] == args.site)
    if left_out:
        shown = escape_controls(", ".join(f"{site}/{device}" for site, device in left_out[:10]))
        more = f" and {len(left_out) - 10} more" if len(left_out) > 10 else ""
        print(f"models {args.decision}: left out {len(left_out)} device(s) that run models this "
              f"repository never released ({shown}{more}); --devices takes them",
              file=sys.stderr)
    return known - elsewhere


def choose_devices(
    args: argparse.Namespace, known: set[Device], repo: FileRepository
) -> list[Device]:
    """The devices named by --devices, --site or --all (a rollback without them: every device
    the model is assigned to now), in a stable order."""
    if not (args.all or args.site or args.devices):
        chosen = sorted(d for d, a in assignments(repo).items() if a.model == args.name)
        if not chosen:
            raise ValueError(f"no device is assigned {args.name} now; name the devices with "
                             f"--devices, --site or --all")
    elif args.all:
        chosen = sorted(known)
    elif args.site:
        chosen = sorted(d for d in known if d[0] == args.site)
    else:
        chosen = named_devices([d.strip() for d in args.devices.split(",") if d.strip()], known)
    if not chosen:
        raise ValueError("no device matches; kiosks appear once they publish a status")
    return chosen


def online_first(
    args: argparse.Namespace, devices: list[Device], watcher: FleetWatcher
) -> list[Device]:
    """For --all and --site, the kiosks online now first (each group in its order), so the
    canaries are kiosks that can answer: an offline one, the first by name, was made the
    canary, and the rollout waited out --timeout-s and halted. --devices keeps its order."""
    if not (args.all or args.site):
        return devices
    views = watcher.devices()

    def offline(device: Device) -> bool:
        status = views[device].status if device in views else None
        return status is None or status.state != "online"

    return sorted(devices, key=offline)


def named_devices(names: list[str], known: set[Device]) -> list[Device]:
    """The devices ``--devices`` names, each as DEVICE or SITE/DEVICE (needed where two sites
    have a device of that id)."""
    by_name: dict[str, list[Device]] = {}
    for site, device_id in sorted(known):
        by_name.setdefault(device_id, []).append((site, device_id))
        by_name[f"{site}/{device_id}"] = [(site, device_id)]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown device(s) {', '.join(unknown)}: no status from them yet")
    named: dict[Device, str] = {}
    for name in names:
        if len(by_name[name]) > 1:
            sites = ", ".join(site for site, _ in by_name[name])
            raise ValueError(f"{name} is a device of sites {sites}; name it as SITE/DEVICE")
        device = by_name[name][0]
        if device in named:  # a device taken twice was two canaries, and one kiosk's report
            raise ValueError(f"{named[device]} and {name} name one device, "
                             f"{device[0]}/{device[1]}; name each device once")
        named[device] = name
    return list(named)
