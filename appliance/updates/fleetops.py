"""The handlers behind ``appliance models release|deploy|rollback|halt|status``.

Deploy and rollback run a ``Rollout`` on the devices ``fleetdevices`` picks from what the fleet
reports (retained statuses on the broker) and the store's device registry. Status prints
``fleetdevices.fleet_status``, which joins three sources: the signed assignments (targeted),
the devices' retained reports (running, state) and the store's rollout records (why a rollout
halted).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.backoffice import storeerrors
from appliance.backoffice.sqlitefile import missing_sqlite_file
from appliance.backoffice.store import Store, StoreError, open_existing_store, open_store
from appliance.backoffice.storeurl import store_name, store_url_for
from appliance.config import (
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigError,
    load_config_or_defaults,
    value_origin,
)
from appliance.diskspace import full_disk_text
from appliance.logsafe import SHOWN_ARGUMENT_CHARS, escape_controls, shorten
from appliance.passwordfile import login_password
from appliance.shipped import SKIN_SELF_TEST, shipped_path
from appliance.transport.client import BrokerRefusedError
from appliance.updates.fleetdevices import (
    choose_devices,
    deployable,
    fleet_status,
    online_first,
)
from appliance.updates.fleetwatch import FleetWatcher
from appliance.updates.halting import (
    KEEPING,
    drop_request,
    halt_stopped,
    request_halt,
    serving_devices,
)
from appliance.updates.history import run_history, run_without_broker
from appliance.updates.manifest import Device, ManifestError, ModelManifest, semver_key
from appliance.updates.operations import (
    assignment_bytes,
    assignments,
    check_fleet_room,
    release_model,
    released,
    releases,
    withdrawals,
)
from appliance.updates.release import load_once, runner_manifest, table_inputs
from appliance.updates.repofiles import RepositoryError, make_readable_by_all
from appliance.updates.repository import FileRepository
from appliance.updates.rollout import SHOWN_DEVICES, Rollout, RolloutPlan
from appliance.updates.rolloutrecords import mark_interrupted, rollout_reasons
from appliance.updates.withdraw import SET_ASIDE_DIR, checked_reason, withdraw_release

if TYPE_CHECKING:
    from appliance.inference.runner import OnnxRunner

EXIT_ERROR = 2
EXIT_HALTED = 1
EXIT_STORE_FAILED = 1  # the store failed after it was opened, as for the back-office commands
_ERRORS = (ConfigError, StoreError, RepositoryError, ManifestError, OSError, TimeoutError)


def run_release(args: argparse.Namespace) -> int:
    """Sign a model into the repository with its manifest and self-test."""
    from appliance.inference.contract import ModelError  # noqa: PLC0415
    from appliance.modelbuild.table import TableError  # noqa: PLC0415

    vectors = args.vectors or shipped_path(SKIN_SELF_TEST)
    try:
        repo = FileRepository(args.repo)
        # one read and one load of the file: what is self-tested is what is hashed and shipped
        data, runner = load_once(Path(args.model))
        manifest = _release_manifest(args, runner, vectors)
        target = release_model(repo, data, manifest)
    except (*_ERRORS, ModelError, TableError, ValueError) as exc:
        print(escape_controls(f"models release: {full_disk_text(exc) or exc}"), file=sys.stderr)
        return EXIT_ERROR
    labels = ", ".join(f"{k} {v:.2f}" for k, v in sorted(manifest.label_shares().items()))
    print(escape_controls(f"released {manifest.name} {manifest.version} as {target}; "
                          f"{len(manifest.self_test)} self-test vectors ({labels})"))
    return 0


def run_yank(args: argparse.Namespace) -> int:
    """Withdraw a release (``operations.withdraw_release``): exit 0 withdrawn, 2 an error
    (not released, withdrawn already, the targets key not at hand: nothing signed)."""
    try:
        repo = FileRepository(args.repo)
        withdrawal = withdraw_release(repo, args.name, args.version, args.reason, _who())
        assigned = sorted(d for d, a in assignments(repo).items()
                          if (a.model, a.version) == (args.name, args.version))
    except (*_ERRORS, ValueError) as exc:
        print(escape_controls(f"models yank: {full_disk_text(exc) or exc}"), file=sys.stderr)
        return EXIT_ERROR
    print(escape_controls(
        f"{withdrawal.model} {withdrawal.version} {withdrawal.said()}; no kiosk installs it "
        "from now on, and one running it goes back to the newest older release it may run, "
        "at its next check (updates.check_interval_s, or the next deploy's notice); its model "
        f"file is no longer served, kept in {args.repo / SET_ASIDE_DIR}"))
    if assigned:
        older = sorted((m.version for m in releases(repo) if m.name == args.name
                        and semver_key(m.version) < semver_key(args.version)), key=semver_key)
        if older:
            what = "they go back to an older release at their next check"
            now = (f"; to take them back now rather than at their next check: `appliance models "
                   f"rollback {args.name} --to {older[-1]} --repo {args.repo}`")
        else:  # updates/kiosk.py _go_back_from_withdrawn: the model before, if it has one
            what = ("no older release is signed: each goes back to the model it served before "
                    "at its next check, and one with none keeps running it until another is "
                    "deployed")
            now = ""
        print(escape_controls(f"{len(assigned)} device(s) still assigned it ({what}): "
                              f"{_devices_named(assigned)}{now}"))
    return 0


def _devices_named(devices: Sequence[Device]) -> str:
    shown = ", ".join(f"{site}/{device_id}" for site, device_id in devices[:SHOWN_DEVICES])
    more = f" and {len(devices) - SHOWN_DEVICES} more" if len(devices) > SHOWN_DEVICES else ""
    return shown + more


def _release_manifest(
    args: argparse.Namespace, runner: OnnxRunner, vectors: Path
) -> ModelManifest:
    given = args.feature_schema is not None  # "" is refused by the manifest, not defaulted
    extra = {"feature_schema": args.feature_schema} if given else {}
    reads = runner.contract.feature_names  # a table may hold only what the model reads
    return runner_manifest(
        runner, args.version, table_inputs(vectors, reads), input_names=reads,
        device_types=[t.strip() for t in args.device_types.split(",") if t.strip()], **extra,
    )


def _settings(args: argparse.Namespace) -> tuple[Config, str, str | None]:
    """The config (``--config``, else ./config.yaml, else built-in defaults; with the APPLIANCE__
    overrides), the store URL (``--store`` first) and the broker login's password
    ``--password-file`` holds (None without it: the config's); ValueError for a file refused."""
    config, url = _config_and_store(args)
    return config, url, login_password(args.password_file, config.mqtt.username)


def _config_and_store(args: argparse.Namespace) -> tuple[Config, str]:
    """The config (as ``_settings`` finds it) and the store URL (``--store`` first)."""
    config = load_config_or_defaults(args.config)
    return config, args.store or store_url_for(config.store.url, config.state_dir)


def _origins(config: Config, config_path: str | None, *keys: str) -> str:
    """Where each of the mqtt ``keys`` came from (the APPLIANCE__ variable, the config file or
    the built-in default), for an error that names them."""
    named = ", ".join(f"mqtt.{key} from {value_origin(config, f'mqtt.{key}', config_path)}"
                      for key in keys)
    if config_path is None and not Path(DEFAULT_CONFIG_FILE).is_file():
        named += "; no --config and no ./config.yaml"
    return named


def watch_fleet(config: Config, config_path: str | None,
                password: str | None = None) -> FleetWatcher:
    """A watcher on the configured broker (``password``: the login's, in place of the
    config's); an error names the broker and where it came from.

    Under a login its client id is that login (``rollout``): the shipped broker binds each
    login to one client id, its own name for every login but a kiosk's
    (deploy/mosquitto/provision.py), and refused ``models-PID`` (CONNACK 0x87), so no deploy,
    rollback, halt or status reached it. Two commands under one login take the connection
    from each other while both run (each reconnects); anonymous, each has an id of its own."""
    mqtt = config.mqtt
    try:
        return FleetWatcher(mqtt, mqtt.username or f"models-{os.getpid()}", password)
    except BrokerRefusedError as exc:  # it answered: the address is right, the identity not
        raise BrokerRefusedError(f"{exc} ({_origins(config, config_path, 'username')})",
                                 exc.reason_code) from exc
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"broker {mqtt.host}:{mqtt.port} ({_origins(config, config_path, 'host', 'port')})"
            f": {exc}; name the broker with --config FILE or APPLIANCE__MQTT__HOST and "
            "APPLIANCE__MQTT__PORT"
        ) from exc


def run_deploy(args: argparse.Namespace) -> int:
    """Deploy (or roll back to) a release; exit 0 complete, 1 halted or its store failed on
    the way, 2 could not start."""
    try:
        config, url, password = _settings(args)
        repo = FileRepository(args.repo)
        manifest = released(repo, args.name, args.version)  # before anything is created
        with ExitStack() as opened:
            opened.enter_context(repo.rolling_out(args.decision))
            # looked up again under the lock: a yank that ended since withdrew it (yank holds
            # the lock too, so none withdraws it from here on)
            manifest = released(repo, args.name, args.version)
            watcher = opened.enter_context(closing(watch_fleet(config, args.config, password)))
            store = opened.enter_context(closing(open_store(url)))  # records the rollout
            mark_interrupted(store, repo)
            devices = online_first(
                args, choose_devices(args, deployable(args, repo, watcher, store), repo), watcher)
            canaries = 0 if args.decision == "rollback" else args.canary
            _enough_canaries(canaries, devices)
            plan = RolloutPlan(
                manifest=manifest,
                devices=devices,
                canaries=canaries,
                canary_results=getattr(args, "canary_results", 0),
                wave_size=args.wave, timeout_s=args.timeout_s,
                max_failures=args.max_failures, decision=args.decision,
                # only kiosks named are waited for when offline; --all, --site and a rollback
                # of the devices assigned the model wait for those online at a wave's start
                await_offline=bool(args.devices),
                scope=args.devices or (f"site {args.site}" if args.site else
                                       "all" if args.all else f"assigned {args.name}"),
            )
            rollout = Rollout(repo, watcher, store, plan)
            raw = assignment_bytes(manifest, plan.decision, rollout.rollout_id)
            check_fleet_room(repo, plan.devices, raw)  # every wave's, before the first
            outcome = rollout.run()
    except storeerrors.DATABASE_ERRORS as exc:  # the store failed on the way (its server went away)
        return _store_failed(args.decision, url, exc, "; the rollout stopped where it was "
                             "(`appliance models status` shows it; run the command again to "
                             "complete it)")
    except (*_ERRORS, ValueError) as exc:
        print(escape_controls(f"models {args.decision}: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    print(escape_controls(f"rollout {outcome.rollout_id} {outcome.state}: {outcome.reason}"))
    if outcome.state == "halted":
        print(escape_controls(_serving_line(outcome.serving(), args.name, args.version)))
    return 0 if outcome.state == "complete" else EXIT_HALTED


def _enough_canaries(canaries: int, devices: Sequence[Device]) -> None:
    """ValueError, before anything is signed, where the rollout has fewer devices than the
    canaries asked for: the canary phase took them all, and the completion rested on fewer
    kiosks' reports (each kiosk reports over its own login) than the operator asked for, one
    alone with ``--canary 2`` and one device (or one device named twice, which was assigned and
    awaited once)."""
    if canaries > len(devices):
        raise ValueError(
            f"--canary {canaries}, and the rollout takes {len(devices)} device(s) "
            f"({_devices_named(devices)}): its completion would rest on the reports of fewer "
            "kiosks than the canaries asked for; name more devices or ask for fewer canaries")


def _serving_line(serving: Sequence[Device], name: str, version: str) -> str:
    """Which kiosks a halted rollout leaves on its release (none taken back by the halt)."""
    if not serving:
        return f"no device serves {name} {version}: every assignment of it was withdrawn"
    shown = ", ".join(f"{site}/{device_id}" for site, device_id in serving[:SHOWN_DEVICES])
    more = f" and {len(serving) - SHOWN_DEVICES} more" if len(serving) > SHOWN_DEVICES else ""
    return (f"{len(serving)} device(s) serve {name} {version} and keep it (a halt takes no "
            f"kiosk back; `appliance models rollback` does): {shown}{more}")


HALT_WAIT_S = 60.0  # for the running deploy to see the request (it looks every 0.1 s)
# a halt's --reason: the record keeps 1,000 characters, "halted by user@host (...): " first
MAX_HALT_REASON_CHARS = 800


def run_halt(args: argparse.Namespace) -> int:
    """Halt the newest ``running`` or ``interrupted`` rollout of a model: the deploy running it
    (another process) is asked to and halts as on its own failures; with none running, it is
    halted here. Exit 0 halted, 1 the deploy did not say so in time, 2 nothing to halt (one that
    ended before the halt took hold included) or an error."""
    if not os.path.lexists(args.repo / "settings.json"):  # as status says it
        shown = shorten(str(args.repo), SHOWN_ARGUMENT_CHARS)
        print(f"models halt: {shown}: not a model repository (no settings.json)", file=sys.stderr)
        return EXIT_ERROR
    try:
        said = checked_reason(args.reason, kept_by="the halt record",
                              limit=MAX_HALT_REASON_CHARS, nothing_done="nothing was halted")
        config, url, password = _settings(args)
        repo = FileRepository(args.repo)
        if (missing := missing_sqlite_file(url)) is not None:
            raise ValueError(f"no rollouts yet: no store at {missing}")
        with closing(open_store(url)) as store:  # exists (checked): it records the halt
            rollout_id, state = _halted_rollout(store, repo, args.name)
            reason = f"halted by {_who()} (`appliance models halt`): {said}"[:1000]
            if state == "running" and repo.rollout_held():  # its deploy is at work: ask it
                request_halt(repo, rollout_id, reason)
                ended = _await_halt(store, repo, rollout_id)
                if ended != "interrupted":  # else its deploy stopped or is gone: halted here
                    return _answered(store, rollout_id, reason, ended)
            return _halt_here(store, repo, rollout_id, reason,
                              lambda: watch_fleet(config, args.config, password))
    except storeerrors.DATABASE_ERRORS as exc:
        return _store_failed("halt", url, exc)
    except (*_ERRORS, ValueError) as exc:
        print(escape_controls(f"models halt: {exc}"), file=sys.stderr)
        return EXIT_ERROR


def _who() -> str:
    """user@host of whoever halts (the uid where the user has no name)."""
    try:
        user = getpass.getuser()
    except OSError:
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _halted_rollout(store: Store, repo: FileRepository, name: str) -> tuple[str, str]:
    """The newest rollout of ``name`` on ``repo`` still ``running`` (or ``interrupted``)."""
    rows = store.query(
        "SELECT rollout_id, state, reason FROM rollouts WHERE model_name = ? AND (repository = ? "
        "OR repository IS NULL) ORDER BY updated_at DESC LIMIT 1", [name, repo.identity()])
    if not rows or rows[0][1] not in ("running", "interrupted"):
        newest = f" (its newest, {rows[0][0]}, ended {rows[0][1]}: {rows[0][2]})" if rows else ""
        raise ValueError(f"no rollout of {shorten(name, SHOWN_ARGUMENT_CHARS)} is running on "
                         f"{repo.dir}{newest}")
    return str(rows[0][0]), str(rows[0][1])


def _halt_here(
    store: Store, repo: FileRepository, rollout_id: str, reason: str,
    watch: Callable[[], FleetWatcher],
) -> int:
    """Halt a rollout no deploy runs, holding the rollout lock, after the last look at the
    fleet (``watch``: the broker's retained reports) a deploy's halt takes. It is read again
    under the lock: a deploy that ended it between the first read and the look at the lock
    (complete) was taken for a killed one, and its finished rollout was recorded halted."""
    with repo.rolling_out("halt"):  # no deploy starts while this one withdraws
        [(state,)] = store.query("SELECT state FROM rollouts WHERE rollout_id = ?", [rollout_id])
        if state not in ("running", "interrupted"):
            return _answered(store, rollout_id, reason, state)
        try:
            watcher = watch()
        except (OSError, TimeoutError) as exc:  # a broker refusing it is a ConnectionError
            raise ConnectionError(f"{exc}; nothing halted: the halt looks at the kiosks' "
                                  "reports first, as a deploy's halt does") from exc
        with closing(watcher):
            halted = halt_stopped(store, repo, rollout_id, reason, watcher.devices())
            for device in halted.withdrawn:  # told now, not at their next check
                watcher.notify(*device, rollout_id)
    print(escape_controls(f"rollout {rollout_id} halted (no deploy was running it; "
                          f"{len(halted.withdrawn)} assignment(s) withdrawn, {halted.put_back} "
                          f"of them put back to what they replaced, their kiosks told): "
                          f"{reason}"))
    print(escape_controls(_serving_line(halted.serving, *_release_of(store, rollout_id))))
    return 0


def _release_of(store: Store, rollout_id: str) -> tuple[str, str]:
    [(name, version)] = store.query(
        "SELECT model_name, model_version FROM rollouts WHERE rollout_id = ?", [rollout_id])
    return str(name), str(version)


def _await_halt(store: Store, repo: FileRepository, rollout_id: str) -> str | None:
    """The state the rollout ends in once its deploy took the request or ended otherwise:
    ``interrupted`` where the deploy let go of the rollout lock without ending it (killed
    before it read the request), None while it still runs after HALT_WAIT_S; a request it did
    not take is removed."""
    deadline_s = time.monotonic() + HALT_WAIT_S
    while time.monotonic() < deadline_s:
        [(state,)] = store.query("SELECT state FROM rollouts WHERE rollout_id = ?", [rollout_id])
        if state != "running" or not repo.rollout_held():  # ended, or its deploy is gone
            drop_request(repo, [rollout_id])  # gone already when its deploy took it
            return "interrupted" if state == "running" else str(state)
        time.sleep(0.2)
    return None


def _answered(store: Store, rollout_id: str, reason: str, state: str | None) -> int:
    """Say how the rollout ended after the halt was asked for: halted by it (0), halted on its
    own failures first (0, with their reason), ended otherwise before the halt took hold
    (nothing to halt: 2), or its deploy did not say so in time (1)."""
    if state is None:
        print(escape_controls("models halt: "
                              f"asked the deploy running rollout {rollout_id} to halt; it "
                              f"did not say so within {HALT_WAIT_S:.0f} s (`appliance models "
                              "status` shows when it does)"), file=sys.stderr)
        return EXIT_HALTED
    [(stored,)] = store.query("SELECT reason FROM rollouts WHERE rollout_id = ?", [rollout_id])
    if state == "halted":
        first = "" if stored == reason else "on its own before it read the halt: "
        print(escape_controls(f"rollout {rollout_id} halted: {first}{stored}"))
        print(escape_controls(_serving_line(serving_devices(store, rollout_id),
                                            *_release_of(store, rollout_id))))
        return 0
    print(escape_controls("models halt: "
                          f"rollout {rollout_id} ended {state} before the halt took hold "
                          f"({stored}); nothing halted (`appliance models rollback` takes "
                          "devices back)"), file=sys.stderr)
    return EXIT_ERROR


def run_status(args: argparse.Namespace) -> int:
    """Print the fleet's model status (a table, or one JSON object with --json); creates
    nothing (without a store yet, there are no rollouts to show)."""
    if (problem := _status_repo_problem(args)) is not None:
        print(f"models status: {problem}", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.history is not None:  # the store alone: no broker, so no login's password
            _, url = _config_and_store(args)
            if args.password_file is not None:
                print("models status: --password-file is not read with --history (it shows "
                      "what the store holds and logs in to no broker)", file=sys.stderr)
            return run_history(args.history, url, limit=args.limit, as_json=args.json)
        config, url, password = _settings(args)
        report = _status_report(args, config, url, password)
    except storeerrors.DATABASE_ERRORS as exc:  # the store failed on the way (its server went away)
        return _store_failed("status", url, exc)
    except ConnectionError as exc:  # no broker: what the store holds (history.py)
        return run_without_broker(exc, url, as_json=args.json)
    except (*_ERRORS, ValueError) as exc:  # ValueError: a --password-file refused
        print(escape_controls(f"models status: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report, indent=2) if args.json else _status_text(report, args.repo))
    return 0


def _status_repo_problem(args: argparse.Namespace) -> str | None:
    """Why ``--repo`` cannot serve ``models status``, or None; ``--history`` reads the store's
    reports alone, so it needs no repository."""
    if args.history is not None:
        return None
    if args.repo is None:
        return ("--repo DIR is needed (the model repository folder); only --history DEVICE "
                "reads no repository")
    if not os.path.lexists(args.repo / "settings.json"):  # a typo would show an empty fleet
        repo = shorten(str(args.repo), SHOWN_ARGUMENT_CHARS)
        return f"{repo}: not a model repository (no settings.json)"
    return None


def _store_failed(command: str, url: str, exc: Exception, after: str = "") -> int:
    """Say in one line that the store failed while the command used it (its server went
    away), naming the database, as the back-office commands do; the exit code."""
    failed = " ".join(str(exc).split())
    print(escape_controls(f"models {command}: the {store_name(url)} failed: {failed}{after}"),
          file=sys.stderr)
    return EXIT_STORE_FAILED


def _status_report(args: argparse.Namespace, config: Config, url: str,
                   password: str | None) -> dict[str, Any]:
    """Releases, devices and the store rollouts were read from (``exists``: false before the
    first deploy); ``password``: the broker login's, in place of the config's."""
    repo = FileRepository(args.repo)
    if (unfinished := repo.unfinished()) is not None:  # else: "no releases yet"
        raise unfinished
    make_readable_by_all(repo.dir / "public")  # served files from before they were written so
    with ExitStack() as opened:
        never_made = missing_sqlite_file(url) is not None
        store = None if never_made else opened.enter_context(closing(open_existing_store(url)))
        watcher = opened.enter_context(closing(watch_fleet(config, args.config, password)))
        rows = fleet_status(repo, watcher, store)
        shown = [row for row in rows if args.all_devices or not row["elsewhere"]]
        newest = {row["rollout"] for row in shown if row["rollout"]}
        recorded = rollout_reasons(store, newest) if store is not None else {}
        return {
            "releases": [{"name": m.name, "version": m.version} for m in sorted(
                releases(repo), key=lambda m: (m.name, semver_key(m.version)))],
            "withdrawn": [{"name": w.model, "version": w.version, "sha256": w.sha256,
                           "at": w.at, "by": w.by, "reason": w.reason}
                          for (_, _), w in sorted(withdrawals(repo).items(), key=lambda kv: (
                              kv[0][0], semver_key(kv[0][1])))],
            "store": {"url": url, "exists": not never_made},
            "devices": shown,
            # each device's newest rollout: how it ended, and (complete) whose reports it
            # rested on
            "rollouts": [{"rollout": rollout_id, "state": state, "reason": reason}
                         for rollout_id, (state, reason) in recorded.items()],
            "other_devices": 0 if args.all_devices else sum(row["elsewhere"] for row in rows),
        }


def _status_text(report: dict[str, Any], repo: Path) -> str:
    """The status report as a table, with a line for what does not exist yet; every line
    escaped (a kiosk's own words, device ids, the folder and store as given)."""
    lines = []
    if not report["releases"] and report["withdrawn"]:
        lines.append(f"no release listed in {repo}: every one was withdrawn (below)")
    elif not report["releases"]:
        lines.append(f"no releases yet in {repo} (appliance models release MODEL --repo {repo} "
                     f"--version VERSION)")
    if not report["store"]["exists"]:
        lines.append(f"no rollouts yet: no store at {report['store']['url']} (appliance models "
                     f"deploy creates it)")
    if report["other_devices"]:
        lines.append(f"{report['other_devices']} other device(s) on this broker prefix run models "
                     "this repository never released (--all-devices lists them too)")
    if not report["devices"]:
        if not report["other_devices"]:
            lines.append("no device has reported a model or been assigned one yet")
        lines.extend(_withdrawn_lines(report))
        return "\n".join(escape_controls(line) for line in lines)
    wide = max([28, *(len(row["targeted"] or "") + len(" (withdrawn)") * bool(
        row["targeted_withdrawn"]) for row in report["devices"])])  # the columns kept in line
    lines.append(f"{'DEVICE':24} {'RUNNING':10} {'TARGETED':{wide}} {'STATE':12} {'ROLLOUT':12} "
                 "WHY")
    for row in report["devices"]:
        why = row["reason"] or row["rollout_reason"] or ""
        targeted = (row["targeted"] or "-") + (" (withdrawn)" if row["targeted_withdrawn"] else "")
        running = (row["running"] or "-") + ("!" if row["running_withdrawn"] else "")
        lines.append(f"{row['site'] + '/' + row['device_id']:24} {running:10} "
                     f"{targeted:{wide}} {row['state'] or '-':12} "
                     f"{row['rollout_state'] or '-':12} {why[:120]}")
    for rollout in report["rollouts"]:
        if rollout["state"] == "complete":
            lines.append(f"rollout {rollout['rollout']} complete: {rollout['reason']}")
    lines.extend(_withdrawn_lines(report))
    kept = [f"{row['site']}/{row['device_id']}" for row in report["devices"]
            if row["rollout_state"] == "halted" and row["rollout_device_state"] in KEEPING]
    if kept:
        more = f" and {len(kept) - SHOWN_DEVICES} more" if len(kept) > SHOWN_DEVICES else ""
        lines.append(f"{len(kept)} device(s) serve the release of their halted rollout and keep "
                     "it (a halt takes no kiosk back; `appliance models rollback` does): "
                     f"{', '.join(kept[:SHOWN_DEVICES])}{more}")
    return "\n".join(escape_controls(line) for line in lines)


def _withdrawn_lines(report: dict[str, Any]) -> list[str]:
    """A line for each withdrawn release: when, by whom, why, and the devices still reported
    running it (shown whether or not any device has reported yet)."""
    lines = []
    for withdrawn in report["withdrawn"]:
        release = (withdrawn["name"], withdrawn["version"])
        running = [f"{row['site']}/{row['device_id']}" for row in report["devices"]
                   if row["running_withdrawn"] and row["running"] == release[1]]
        lines.append(f"withdrawn: {' '.join(release)} ({withdrawn['at']} by {withdrawn['by']}: "
                     f"{withdrawn['reason']})" + (
                         f"; still reported running it (marked !): {', '.join(running)}"
                         if running else ""))
    return lines
