"""Staged rollouts: canaries first, then waves, halting by itself past a failure threshold.

A rollout signs assignments (``operations.assign``) for one group of devices at a time,
notifies them, and waits for their ``.../model/state``: a device succeeds when it reports the
version ``installed`` and healthy, fails when it reports ``rejected`` or ``rolled_back`` or says
nothing before the timeout. Every canary must succeed before any other device is assigned; the
waves after them go on while failures stay within ``max_failures``. On a halt the devices that
did not install get back the assignment they had before a deploy, or none (they keep serving
what they run; one switched off installs, when back, what it was assigned before). Each step is
recorded in the back-office store (tables ``rollouts`` and ``rollout_devices``), and what each
wave replaced before it is signed (``halting.record_replaced``), so that a halt puts it back
even after this process is gone; ``rolloutrecords`` reads the records back.

A plan that does not ``await_offline`` (``--all`` or ``--site``, or a rollback of the devices
assigned the model) waits, in the waves after the canaries, only for the kiosks online (their
retained status) at the wave's start: the others are assigned all the same, install when they
are back, and are named "offline, assigned, not awaited" instead of holding the wave for its
whole timeout; so is one switched off during the wave before it reported. Canaries are always
awaited: a release no kiosk has installed yet goes no further.

``appliance models halt`` halts a rollout from another process: it writes a request naming the
rollout (``halting.request_halt``), which the deploy reads while it waits for a wave, before
each wave and before it records the rollout complete, and halts on as on its failures (a
last look at the reports of the devices it waits for first: one that installed the release
since the look before keeps it, as at a wave's end); a rollout whose deploy is gone it halts
itself (``halting.halt_stopped``) after the same last look, putting back what the store says
its waves replaced.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store import Store
from appliance.transport import payloads
from appliance.updates import verdicts
from appliance.updates.fleetwatch import DeviceView, FleetWatcher
from appliance.updates.halting import (
    KEEPING,
    PUT_BACK,
    assignments_before,
    drop_request,
    halt_requested,
    kept_reason,
    record_replaced,
    replaced_by,
)
from appliance.updates.manifest import Assignment, Device, HaltedRelease, ModelManifest
from appliance.updates.operations import assign, assignments, unassign
from appliance.updates.repository import FileRepository
from appliance.updates.rolloutrecords import newest_stamp, stamp_after

log = logging.getLogger(__name__)

POLL_S = 0.1
NOT_AWAITED = "offline, assigned, not awaited"
SHOWN_DEVICES = 10  # named in a log line or a reason; the rest are counted


@dataclass(frozen=True)
class RolloutPlan:
    """Who gets which release, in what order, and when to stop."""

    manifest: ModelManifest
    devices: Sequence[Device]
    canaries: int = 1
    wave_size: int = 10
    timeout_s: float = 300.0
    max_failures: int = 0
    decision: str = "deploy"
    scope: str = ""
    await_offline: bool = True  # False: waves after the canaries wait only for kiosks online
    # results of each canary the store must hold classified by the release, captured after
    # its installed and healthy report, before any wave (0: its report alone; ``canary_proof``)
    canary_results: int = 0


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended: ``complete`` or ``halted``, and why."""

    rollout_id: str
    state: str
    reason: str
    outcomes: dict[Device, tuple[str, str]]
    not_awaited: tuple[Device, ...] = ()  # assigned while offline; no report from them yet

    def serving(self) -> list[Device]:
        """The devices that serve the release and keep it: installed and healthy, or, as it
        halted, serving it still in their health check or after their wave gave up on them."""
        return sorted(d for d, (state, _) in self.outcomes.items() if state in KEEPING)


def stop_cause(exc: BaseException) -> str:
    """What stopped a deploy, in an operator's words: Ctrl-C or the stop signal by its name
    (appliance/cli.py turns SIGTERM into exit 143), else the error with its type."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128:
        try:
            return f"{signal.Signals(exc.code - 128).name} (exit {exc.code})"
        except ValueError:
            return f"exit {exc.code}"
    return f"{type(exc).__name__}: {exc}"


class Rollout:
    """Runs one plan against the repository, the fleet and the store."""

    def __init__(
        self, repo: FileRepository, watcher: FleetWatcher, store: Store, plan: RolloutPlan
    ) -> None:
        self.repo, self.watcher, self.store, self.plan = repo, watcher, store, plan
        self.rollout_id = uuid.uuid4().hex[:12]
        self.outcomes: dict[Device, tuple[str, str]] = {}
        self.not_awaited: dict[Device, str] = {}  # offline when assigned: device -> its phase
        self.phases: dict[Device, str] = {}  # every device assigned: device -> its phase
        self._started_s = time.monotonic()
        self._newest: datetime | None = None  # the last stamp recorded (``_stamp``)
        self._repository = repo.identity()
        self.requested: str | None = None  # why `models halt` asked this rollout to halt
        # when each device that reported installed and healthy said so (its own clock)
        self.reported_at: dict[Device, datetime] = {}
        self.proof: dict[Device, int] = {}  # canary -> its results classified by the release

    def run(self) -> RolloutOutcome:
        """Canaries, then waves; returns how it ended (recorded in the store too). A rollout
        stopped by an error or Ctrl-C is recorded ``interrupted`` with why before it is raised:
        left ``running``, status would show it running until the next deploy."""
        drop_request(self.repo)  # one left from before names no rollout running now
        self._record_rollout("running", None)
        try:
            return self._run_waves()
        except BaseException as exc:  # recorded, then raised as it came
            self._record_rollout("interrupted", f"its deploy stopped: {stop_cause(exc)}"[:1000])
            raise
        finally:  # a request that came after the last look is no one's now
            drop_request(self.repo, [self.rollout_id])

    def _run_waves(self) -> RolloutOutcome:
        plan = self.plan
        canaries, rest = list(plan.devices[: plan.canaries]), list(plan.devices[plan.canaries :])
        waves = [canaries] if canaries else []
        waves += [rest[i : i + plan.wave_size] for i in range(0, len(rest), plan.wave_size)]
        for index, wave in enumerate(waves):
            phase = "canary" if canaries and index == 0 else f"wave {index + (not canaries)}"
            self.requested = halt_requested(self.repo, self.rollout_id)
            if self.requested is None:  # asked between waves: the next one is not assigned
                self._run_wave(wave, phase)
            if phase == "canary" and self.requested is None and self._halt_reason(phase) is None:
                self._prove_canaries(wave)
            halt = self.requested or self._halt_reason(phase)
            if halt is not None:
                self._halt(halt)
                return self._outcome("halted", halt)
        self.requested = halt_requested(self.repo, self.rollout_id)
        if self.requested is not None:  # asked after the last wave's last look
            self._halt(self.requested)
            return self._outcome("halted", self.requested)
        installed = sum(o[0] == "installed" for o in self.outcomes.values())
        reason = f"{installed} device(s) installed {self._model()} and are healthy"
        if self.not_awaited:
            reason += (f"; {len(self.not_awaited)} {NOT_AWAITED} (they install when they are "
                       f"back): {_named(sorted(self.not_awaited))}")
        reason += self._rested_on()
        self._record_rollout("complete", reason)
        return self._outcome("complete", reason)

    def _rested_on(self) -> str:
        """Whose reports the completion rests on: each kiosk reports over its own login
        (docs/threat-model.md), so the canaries named are the logins a forger would need."""
        canaries = sorted(d for d, p in self.phases.items() if p == "canary"
                          and self.outcomes.get(d, ("",))[0] == "installed")
        others = sorted(d for d, o in self.outcomes.items()
                        if o[0] == "installed" and d not in canaries)
        said = f"; on the reports of {len(canaries) + len(others)} kiosk(s), each its own login"
        if canaries:
            said += f": canaries {_named(canaries)}"
            if self.plan.canary_results:
                said += (f" (each with at least {self.plan.canary_results} result(s) in the store "
                         f"classified by {self.plan.manifest.version} since)")
        if others:
            said += f"; waves {_named(others)}"
        return said

    def _prove_canaries(self, canaries: Sequence[Device]) -> None:
        """With ``canary_results``: wait, up to the timeout, until the store holds that many
        results of each canary classified by the release and captured after its installed
        and healthy report; a result captured since that another model classified fails the
        canary at once (the kiosk does not serve what it reported: a stolen login's forged
        report, say). Each failure is recorded as the canary's outcome, and the rollout halts
        on it as on a canary's failure. Results reach the store through the back-office
        ingest, as the kiosks' other messages do; a login can forge its own results too, so
        this binds a forger to forge both, consistently, while the kiosk itself is off."""
        wanted = self.plan.canary_results
        if not wanted:
            return
        deadline_s = time.monotonic() + self.plan.timeout_s
        waiting = {d for d in canaries if self.outcomes.get(d, ("",))[0] == "installed"}
        while waiting:
            self.requested = halt_requested(self.repo, self.rollout_id)
            if self.requested is not None:
                return
            for device in sorted(waiting):
                proven, failure = self._results_since(device)
                self.proof[device] = proven
                if failure is None and proven < wanted:
                    continue
                waiting.discard(device)
                if failure is not None:
                    self.outcomes[device] = ("unconfirmed", failure)
                    self._record_device(device, "canary", "unconfirmed", failure,
                                        self._running(device))
            if waiting and time.monotonic() >= deadline_s:
                break
            if waiting:
                time.sleep(POLL_S)
        for device in sorted(waiting):
            failure = (f"reported {self._model()} installed and healthy, but the store holds "
                       f"{self.proof.get(device, 0)} of the {wanted} result(s) of it classified "
                       f"by it since that --canary-results asks for, after "
                       f"{self.plan.timeout_s:.0f} s (is the back-office ingest running? was "
                       "the report its own?)")
            self.outcomes[device] = ("unconfirmed", failure)
            self._record_device(device, "canary", "unconfirmed", failure, self._running(device))

    def _results_since(self, device: Device) -> tuple[int, str | None]:
        """How many stored results of ``device`` captured since its installed report are
        classified by the release, and why it fails if one is classified otherwise."""
        since = self.reported_at.get(device)
        if since is None:
            return 0, None
        rows = self.store.query(
            "SELECT model_name, model_version, COUNT(*) FROM results WHERE site = ? AND "
            "device_id = ? AND captured_at > ? AND model_version IS NOT NULL "
            "GROUP BY model_name, model_version", [*device, iso_utc(since)])
        release = self._release()
        proven = sum(int(count) for name, version, count in rows if (name, version) == release)
        other = [f"{count} by {name} {version}" for name, version, count in rows
                 if (name, version) != release]
        if other:
            return proven, (f"reported {self._model()} installed and healthy at "
                            f"{iso_utc(since)}, but results of it captured since are classified "
                            f"{', '.join(other)}: it does not serve what its report says (a "
                            "forged report? its login may be stolen)")
        return proven, None

    def _outcome(self, state: str, reason: str) -> RolloutOutcome:
        return RolloutOutcome(self.rollout_id, state, reason, dict(self.outcomes),
                              tuple(sorted(self.not_awaited)))

    def _model(self) -> str:
        return f"{self.plan.manifest.name} {self.plan.manifest.version}"

    def _run_wave(self, wave: Sequence[Device], phase: str) -> None:
        plan = self.plan
        skipped = set() if phase == "canary" or plan.await_offline else self._offline(wave)
        self._record_replaced(wave, phase)
        assign(self.repo, wave, plan.manifest, decision=plan.decision, rollout=self.rollout_id)
        self.phases.update(dict.fromkeys(wave, phase))
        for site, device_id in wave:
            offline = (site, device_id) in skipped
            self._record_device((site, device_id), phase, "assigned",
                                NOT_AWAITED if offline else None, None)
            self.watcher.notify(site, device_id, self.rollout_id)
        self.not_awaited.update(dict.fromkeys(sorted(skipped), phase))
        awaited = [device for device in wave if device not in skipped]
        self._say_wave(phase, awaited, sorted(skipped))
        self._await(awaited, phase)

    def _say_wave(self, phase: str, awaited: Sequence[Device], skipped: Sequence[Device]) -> None:
        """Log whom a wave just assigned waits for, and whom it does not (a wave of kiosks
        all offline waits for none)."""
        not_awaited = f"; {len(skipped)} {NOT_AWAITED}: {_named(skipped)}" if skipped else ""
        if not awaited:
            log.info("rollout %s: %s of %s: no device to wait for%s", self.rollout_id, phase,
                     self._model(), not_awaited)
            return
        log.info("rollout %s: %s of %s to %d device(s): %s; waiting up to %.0f s for each to "
                 "report it installed and healthy%s", self.rollout_id, phase, self._model(),
                 len(awaited), _named(awaited), self.plan.timeout_s, not_awaited)

    def _record_replaced(self, wave: Sequence[Device], phase: str) -> None:
        """Record in the store, before the wave is signed, what a halt puts back on each of its
        devices: for a deploy, the assignment of another release it held (or what an earlier
        rollout of this release, killed, replaced there); for a rollback, nothing (the release
        it goes back from is withdrawn: one switched off that never installed it would install
        it when back)."""
        before: dict[Device, Assignment | None] = dict.fromkeys(wave)
        if self.plan.decision == "deploy":
            before.update(assignments_before(self.store, assignments(self.repo, wave),
                                             self._release(), self.rollout_id))
        record_replaced(self.store, self.rollout_id, phase, before)

    def _offline(self, wave: Sequence[Device]) -> set[Device]:
        """The devices of ``wave`` whose newest status is not "online" (or that sent none)."""
        views = self.watcher.devices()
        statuses = {device: views[device].status for device in wave if device in views}
        return {device for device in wave
                if (status := statuses.get(device)) is None or status.state != "online"}

    def _await(self, wave: Sequence[Device], phase: str) -> None:
        """Wait for each device of ``wave`` to report on this release, up to the timeout; a
        device not awaited that reports meanwhile is heard too."""
        plan = self.plan
        deadline_s = time.monotonic() + plan.timeout_s
        waiting = set(wave)
        while waiting and time.monotonic() < deadline_s:
            self.requested = halt_requested(self.repo, self.rollout_id)
            if self.requested is not None:  # withdrawn by the halt, as a failure is
                self._hear(waiting, phase)  # one that installed since the last look keeps it
                for device in sorted(waiting):
                    self.outcomes[device] = ("halted", self.requested)
                    self._record_device(device, phase, "halted", self.requested,
                                        self._running(device))
                return
            views = self._hear(waiting, phase)
            self._let_go_of_offline(waiting, phase)
            self._hear_late(views)
            time.sleep(POLL_S)
        for device in waiting:
            reason = f"no installed and healthy report within {plan.timeout_s:.0f} s"
            self.outcomes[device] = ("timeout", reason)
            self._record_device(device, phase, "timeout", reason, self._running(device))

    def _hear(self, waiting: set[Device], phase: str) -> Mapping[Device, DeviceView]:
        """Record the verdict of each device of ``waiting`` that reported on this release and
        stop waiting for it; returns the devices as the watcher sees them now."""
        views = self.watcher.devices()
        for device in sorted(waiting):
            view = views.get(device)
            verdict = self._verdict(view)
            if verdict is not None:
                waiting.discard(device)
                self.outcomes[device] = verdict
                if verdict[0] == "installed" and view is not None and view.state is not None:
                    self.reported_at[device] = view.state.at
                self._record_device(device, phase, *verdict, self._running(device))
        return views

    def _let_go_of_offline(self, waiting: set[Device], phase: str) -> None:
        """In a wave that waits only for kiosks online, stop waiting for one switched off
        before it reported (a shop closing during the rollout), as for one switched off
        before the wave started; its report, once back, is heard as theirs is."""
        if self.plan.await_offline or phase == "canary":
            return
        for device in sorted(self._offline(sorted(waiting))):
            waiting.discard(device)
            self.not_awaited[device] = phase
            self._record_device(device, phase, "assigned", NOT_AWAITED, None)
            log.info("rollout %s: %s/%s switched off during its wave: %s", self.rollout_id,
                     *device, NOT_AWAITED)

    def _hear_late(self, views: Mapping[Device, DeviceView]) -> None:
        """Record the report of each device not awaited that came back and reported on this
        release (a failure then counts as any wave's does)."""
        for device, phase in sorted(self.not_awaited.items()):
            verdict = self._verdict(views.get(device))
            if verdict is not None:
                del self.not_awaited[device]
                self.outcomes[device] = verdict
                self._record_device(device, phase, *verdict, self._running(device))

    def _verdict(self, view: DeviceView | None) -> tuple[str, str] | None:
        """("installed" | a failed state, reason) once the device (``view``: as the watcher
        sees it) reported on this release (``verdicts.verdict``)."""
        return verdicts.verdict(view, self._release(), self.rollout_id, self._started_s)

    def _release(self) -> tuple[str, str]:
        return self.plan.manifest.name, self.plan.manifest.version

    def _running(self, device: Device) -> str | None:
        view = self.watcher.devices().get(device)
        return view.running if view is not None else None

    def _halt_reason(self, phase: str) -> str | None:
        failed = {d: o for d, o in self.outcomes.items() if o[0] != "installed"}
        if phase == "canary" and failed:
            limit = 0
        elif len(failed) > self.plan.max_failures:
            limit = self.plan.max_failures
        else:
            return None
        first = sorted(failed.items())[0]
        return (
            f"halted after {phase}: {len(failed)} failure(s) (allowed {limit}); "
            f"{first[0][0]}/{first[0][1]} {first[1][0]}: {first[1][1]}"
        )

    def _halt(self, reason: str) -> None:
        """Freeze the rollout: a device that serves the release keeps it (``_keep_serving``);
        the others' assignments are withdrawn, those replaced put back, and their kiosks told
        at once (they learnt it at their next check, an hour later by default)."""
        views = self.watcher.devices()
        self._hear_late(views)
        self._keep_serving(views, reason)
        withdrawn = [*(d for d, o in self.outcomes.items() if o[0] not in KEEPING),
                     *self.not_awaited]
        restore = replaced_by(self.store, self.rollout_id, withdrawn)
        if withdrawn:
            unassign(self.repo, withdrawn, restore, self._halted())
        for device, phase in self.not_awaited.items():
            undone = PUT_BACK if device in restore else "withdrew its assignment"
            self._record_device(device, phase, "withdrawn",
                                f"{NOT_AWAITED}; the rollout halted and {undone}", None)
        log.error("rollout %s %s", self.rollout_id, reason)
        self._record_rollout("halted", reason)
        for device in withdrawn:  # recorded first: a notice may wait for the broker
            self.watcher.notify(*device, self.rollout_id)

    def _keep_serving(self, views: Mapping[Device, DeviceView], reason: str) -> None:
        """Record ``kept`` each device not recorded installed whose newest report says it
        serves the release (``verdicts.serves_through_halt``): one still in its health check,
        one that installed after its wave stopped waiting for it. The halt put its older
        assignment back, which it refused as a downgrade or, put back as a signed rollback,
        carried out."""
        for device in sorted(set(self.outcomes) | set(self.not_awaited)):
            if self.outcomes.get(device, ("",))[0] == "installed":
                continue
            why = verdicts.serves_through_halt(views.get(device), self._release())
            if why is not None:
                self.not_awaited.pop(device, None)
                self.outcomes[device] = (verdicts.KEPT, kept_reason(why, self._model(), reason))
                self._record_device(device, self.phases.get(device, ""), *self.outcomes[device],
                                    self._running(device))

    def _halted(self) -> HaltedRelease:
        return HaltedRelease(rollout=self.rollout_id, model=self.plan.manifest.name,
                             version=self.plan.manifest.version)

    # -- the store ------------------------------------------------------------------------

    def _stamp(self) -> str:
        """Now, as the store records it (``rolloutrecords.stamp_after``)."""
        if self._newest is None:
            self._newest = newest_stamp(self.store)
        self._newest = stamp_after(self._newest, payloads.utc_now())
        return iso_utc(self._newest)

    def _record_rollout(self, state: str, reason: str | None) -> None:
        plan, now = self.plan, self._stamp()
        self.store.write(
            "INSERT INTO rollouts (rollout_id, model_name, model_version, decision, scope, "
            "canaries, state, reason, created_at, updated_at, repository) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rollout_id) DO UPDATE SET state = excluded.state, "
            "reason = excluded.reason, updated_at = excluded.updated_at",
            [(self.rollout_id, plan.manifest.name, plan.manifest.version, plan.decision,
              plan.scope, plan.canaries, state, reason, now, now, self._repository)],
        )

    def _record_device(
        self, device: Device, phase: str, state: str, reason: str | None, running: str | None
    ) -> None:
        self.store.write(
            "INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, site, device_id) DO UPDATE SET state = excluded.state, "
            "reason = excluded.reason, running_version = excluded.running_version, "
            "updated_at = excluded.updated_at",
            [(self.rollout_id, *device, phase, state, reason, running, self._stamp())],
        )


def _named(devices: Sequence[Device]) -> str:
    """The first SHOWN_DEVICES devices as site/device, then how many more."""
    named = ", ".join(f"{site}/{device_id}" for site, device_id in devices[:SHOWN_DEVICES])
    more = len(devices) - SHOWN_DEVICES
    return named + (f" and {more} more" if more > 0 else "")
