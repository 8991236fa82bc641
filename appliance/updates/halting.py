"""Halting a rollout: what each wave replaced, kept in the store, and `models halt`'s request.

Before a wave's assignments are signed, the rollout records each of its devices in the store
(table ``rollout_replaced``, migration 17) with the assignment the device held before (none:
nothing to put back). A halt puts those back for the devices that did not install the release:
the deploy's own halt, and ``appliance models halt`` of a rollout whose deploy was killed (the
record outlives the deploy's memory), which first takes the deploy's last look at the kiosks'
reports (``verdicts``): one that installed the release since its deploy stopped keeps it. A
deploy run again over the assignments an earlier rollout of the same release left (killed, or
stopped by Ctrl-C) takes over what that one replaced, so its halt puts back the assignment
from before either.

``appliance models halt`` asks a running deploy through a request file naming the rollout
(``.rollout.halt`` in the repository folder, written atomically): the deploy reads it while it
waits for a wave, before each wave and before it records the rollout complete. A request no
deploy took (the rollout ended first) is removed by the command that wrote it and by the deploy
that ends, so none lingers in the folder.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from appliance import safejson
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store
from appliance.transport import payloads
from appliance.updates.fleetwatch import DeviceView
from appliance.updates.manifest import Assignment, Device, HaltedRelease
from appliance.updates.operations import assignments, unassign
from appliance.updates.repofiles import RepositoryError, read_regular_file, write_atomically
from appliance.updates.repository import FileRepository
from appliance.updates.rolloutrecords import newest_stamp, stamp_after
from appliance.updates.verdicts import KEPT, serves_through_halt, verdict

HALT_REQUEST = ".rollout.halt"  # in the repository folder: `models halt` asks a deploy to halt
MAX_HALT_REQUEST_BYTES = 4096
PUT_BACK = "put back its assignment from before"
KEEPING = ("installed", KEPT)  # device outcomes of a rollout that serve its release


def record_replaced(
    store: Store, rollout_id: str, phase: str, before: Mapping[Device, Assignment | None]
) -> None:
    """Record, before a wave of ``rollout_id`` is signed, each of its devices with what a halt
    puts back (``before``; None: nothing). A device named twice keeps its first record."""
    store.write(
        "INSERT INTO rollout_replaced (rollout_id, site, device_id, phase, assignment) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rollout_id, site, device_id) DO NOTHING",
        [(rollout_id, *device, phase,
          assignment.model_dump_json() if assignment is not None else None)
         for device, assignment in sorted(before.items())],
    )


def replaced_by(
    store: Store, rollout_id: str, devices: Collection[Device] | None = None
) -> dict[Device, Assignment]:
    """The assignments ``rollout_id`` replaced (of ``devices``, or all), as recorded."""
    rows = store.query("SELECT site, device_id, assignment FROM rollout_replaced "
                       "WHERE rollout_id = ? AND assignment IS NOT NULL", [rollout_id])
    return {(site, device_id): Assignment.model_validate_json(raw)
            for site, device_id, raw in rows
            if devices is None or (site, device_id) in devices}


def assignments_before(
    store: Store, held: Mapping[Device, Assignment], release: tuple[str, str], rollout_id: str
) -> dict[Device, Assignment | None]:
    """What a deploy of ``release`` (name, version) replaces on each device holding ``held``:
    an assignment of another release; for one of this release by an earlier rollout (a deploy
    killed or stopped, run again), what that rollout replaced; nothing for one of its own."""
    before: dict[Device, Assignment | None] = {}
    earlier: dict[str, list[Device]] = {}
    for device, assignment in held.items():
        if (assignment.model, assignment.version) != release:
            before[device] = assignment
        elif assignment.rollout != rollout_id:
            earlier.setdefault(assignment.rollout, []).append(device)
    for earlier_id, devices in earlier.items():
        recorded = replaced_by(store, earlier_id, devices)
        before.update({device: recorded.get(device) for device in devices})
    return before


def kept_reason(why: str, model: str, halt: str) -> str:
    """What a device that serves the release as its rollout halts is recorded with (``why``:
    ``verdicts.serves_through_halt``; ``halt``: why the rollout halted)."""
    return (f"{why} as the rollout halted: keeps {model} and its assignment (a halt takes no "
            f"kiosk back; `appliance models rollback` does); {halt}")


class StoppedHalt(NamedTuple):
    """What a halt of a rollout whose deploy is gone did."""

    withdrawn: list[Device]  # assignments withdrawn (their kiosks to be told)
    put_back: int  # of them, with the assignment from before put back
    serving: list[Device]  # devices that serve the release and keep it


def halt_stopped(
    store: Store, repo: FileRepository, rollout_id: str, reason: str,
    views: Mapping[Device, DeviceView],
) -> StoppedHalt:
    """Halt ``rollout_id``, whose deploy is no longer running (the caller holds the rollout
    lock), as its deploy halts: a last look at the newest reports (``views``) of the devices
    it still waited for, recording each verdict (``verdicts.verdict``), so that one that
    installed the release since keeps it, and so does one whose report says it serves the
    release whatever its wave recorded (``verdicts.serves_through_halt``: still in its health
    check, or installed after its wave timed out); then withdraw the assignments of the others,
    putting back what they replaced (a failure recorded before stays recorded), and record the
    rollout ``halted``."""
    [(name, version)] = store.query(
        "SELECT model_name, model_version FROM rollouts WHERE rollout_id = ?", [rollout_id])
    unfinished = _unfinished(store, rollout_id)
    ours = sorted(device for device, held in assignments(repo, unfinished).items()
                  if held.rollout == rollout_id)
    awaited = [device for device in ours if unfinished[device][1] in (None, "assigned")]
    heard = {device: found for device in awaited if (found := verdict(
        views.get(device), (name, version), rollout_id, None)) is not None}
    kept = {device: (KEPT, kept_reason(why, f"{name} {version}", reason)) for device in ours
            if heard.get(device, ("",))[0] != "installed"
            and (why := serves_through_halt(views.get(device), (name, version))) is not None}
    withdrawn = [device for device in ours
                 if device not in kept and heard.get(device, ("",))[0] != "installed"]
    restore = replaced_by(store, rollout_id, withdrawn)
    if withdrawn:
        unassign(repo, withdrawn, restore, HaltedRelease(rollout=rollout_id, model=name,
                                                         version=version))
    left = {device: ("withdrawn", f"{reason}; {PUT_BACK}" if device in restore else reason)
            for device in awaited if device in withdrawn}
    outcomes = {**left, **heard, **kept}  # one heard refusing it is recorded so, as by a deploy
    _record_halt(store, rollout_id, reason, {
        device: (unfinished[device][0], *outcome, _running(views.get(device)))
        for device, outcome in outcomes.items()})
    return StoppedHalt(withdrawn, len(restore), serving_devices(store, rollout_id))


def serving_devices(store: Store, rollout_id: str) -> list[Device]:
    """The devices ``rollout_id`` recorded serving its release: installed and healthy, or
    ``kept`` as it halted."""
    return sorted((site, device_id) for site, device_id in store.query(
        "SELECT site, device_id FROM rollout_devices WHERE rollout_id = ? AND state IN "
        f"({', '.join('?' * len(KEEPING))})", [rollout_id, *KEEPING]))


def _unfinished(store: Store, rollout_id: str) -> dict[Device, tuple[str, str | None]]:
    """The devices ``rollout_id`` assigned and did not record installed, with their phase and
    the state recorded: those it recorded, and those its waves signed (``rollout_replaced``)
    before it could record them (None: its deploy stopped then)."""
    recorded = {(site, device_id): (phase, state)
                for site, device_id, phase, state in store.query(
                    "SELECT site, device_id, phase, state FROM rollout_devices "
                    "WHERE rollout_id = ?", [rollout_id])}
    signed: dict[Device, tuple[str, str | None]] = {
        (site, device_id): (phase, None) for site, device_id, phase in store.query(
            "SELECT site, device_id, phase FROM rollout_replaced WHERE rollout_id = ?",
            [rollout_id])}
    return {device: held for device, held in {**signed, **recorded}.items()
            if held[1] != "installed"}


def _record_halt(store: Store, rollout_id: str, reason: str,
                 devices: Mapping[Device, tuple[str, str, str, str | None]]) -> None:
    """Record ``rollout_id`` halted for ``reason``, and each of ``devices`` with its (phase,
    state, reason, version running), stamped as its deploy stamps (``stamp_after``)."""
    now = iso_utc(stamp_after(newest_stamp(store), payloads.utc_now()))
    store.write(
        "INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (rollout_id, site, device_id) DO UPDATE SET state = excluded.state, "
        "reason = excluded.reason, running_version = excluded.running_version, "
        "updated_at = excluded.updated_at",
        [(rollout_id, *device, *outcome, now) for device, outcome in sorted(devices.items())])
    store.write("UPDATE rollouts SET state = 'halted', reason = ?, updated_at = ? "
                "WHERE rollout_id = ?", [(reason, now, rollout_id)])


def _running(view: DeviceView | None) -> str | None:
    return view.running if view is not None else None


def request_halt(repo: FileRepository, rollout_id: str, reason: str) -> None:
    """Ask the deploy running ``rollout_id`` on ``repo`` to halt, for ``reason`` (who and
    why): it looks at the request while it waits for a wave and halts as on its failures."""
    write_atomically(repo.dir / HALT_REQUEST,
                     json.dumps({"rollout": rollout_id, "reason": reason}).encode())


def halt_requested(repo: FileRepository, rollout_id: str) -> str | None:
    """The reason `models halt` gave for halting ``rollout_id``, if it asked."""
    request = _request(repo)
    if request is None or request.get("rollout") != rollout_id:
        return None
    return str(request.get("reason", "halted by `appliance models halt`"))[:1000]


def drop_request(repo: FileRepository, rollout_ids: Sequence[str] | None = None) -> None:
    """Remove the halt request naming one of ``rollout_ids`` (None: whichever it names)."""
    request = _request(repo) if rollout_ids is not None else None
    if rollout_ids is None or (request is not None and request.get("rollout") in rollout_ids):
        (repo.dir / HALT_REQUEST).unlink(missing_ok=True)


def _request(repo: FileRepository) -> dict[str, object] | None:
    try:
        raw = read_regular_file(repo.dir / HALT_REQUEST, MAX_HALT_REQUEST_BYTES)
        request = safejson.loads(raw)
    except (OSError, ValueError, RepositoryError):  # none, or not written by `models halt`
        return None
    return request if isinstance(request, dict) else None
