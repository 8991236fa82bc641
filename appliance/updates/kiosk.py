"""The kiosk's model updater: verified download, self-test, atomic install, hot swap, rollback.

One thread, woken by a notice on ``.../model/update`` or by ``check_interval_s``. A notice only
says "refresh now": what is installed comes from signed metadata alone (``fetch``). Steps, each
reported retained on ``.../model/state``: available -> downloading -> verified (compatible,
loads in ONNX Runtime, reproduces its self-test) -> installed (``install.ModelStore``, then
swapped between two measurements) -> healthy, or rolled_back when the health check fails. Any
refusal is ``rejected`` with its reason, and the serving model never changes then.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tuf.ngclient import Updater

from appliance.config import Config
from appliance.inference.classifier import SkinClassifier
from appliance.inference.contract import ModelError
from appliance.inference.runner import RUN_DEADLINE_S, ModelTooSlowError, OnnxRunner
from appliance.transport import payloads
from appliance.updates.fetch import Look, Offer, RepositoryClient, UpdateRefusedError
from appliance.updates.health import HealthCheck
from appliance.updates.install import POINTER, ModelStore, discard
from appliance.updates.manifest import (
    FEATURE_SCHEMA,
    SEMVER,
    Assignment,
    ManifestError,
    Withdrawal,
    semver_key,
)
from appliance.updates.rejected import RejectedReleases
from appliance.updates.selftest import SelfTestError, check_self_test
from appliance.updates.serving import ServingModel

log = logging.getLogger(__name__)

HEALTH_POLL_S = 0.2
# Checks a notice may start are this far apart at least: each one fetches and verifies signed
# metadata (about 0.1 s of a core), so a flood of notices kept the updater checking back to back
# and took a core from measuring; notices in between are answered by one check at the gap's end
MIN_CHECK_GAP_S = 1.0
MAX_PROBATION_STARTS = 3  # starts on a new model without a health verdict before going back
StatePublisher = Callable[[bytes], None]


class DowngradeRefusedError(UpdateRefusedError):
    """A plain deploy of a lower version than the kiosk runs: refused while both stay so."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelUpdater(threading.Thread):
    """Keeps the kiosk on the model its signed assignment names (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        serving: ServingModel,
        publish_state: StatePublisher,
        stop: threading.Event,
        on_swap: Callable[[ServingModel], None] = lambda _serving: None,
    ) -> None:
        super().__init__(name="ModelUpdater", daemon=True)
        self.config, self.serving, self.stop_event = config, serving, stop
        self._publish, self._on_swap = publish_state, on_swap
        state_dir = Path(config.state_dir)
        self.client = RepositoryClient(
            config.updates, config.device.site, config.device.id, state_dir
        )
        self.store = ModelStore(state_dir)
        self.wake = threading.Event()
        self.checks = 0
        self._health: HealthCheck | None = None
        self._rollout: str | None = None  # of the assignment the last report was about
        self._previous: Path | None = None  # what a failed health check goes back to
        self._confirmed = False  # the serving model passed a health check in this process
        self._rejected = RejectedReleases(self.store.dir)
        # the downgrade last refused: (release, its assignment's rollout, version serving then)
        self._refused_downgrade: tuple[str, str, str] | None = None
        # the assignment of a withdrawn release last said: (its rollout, the version serving)
        self._said_withdrawn: tuple[str, str] | None = None
        self._leaving: str | None = None  # why the install under way leaves a withdrawn release
        current = serving.classifier.path if serving.classifier is not None else None
        self._current_sha = _sha256(current) if current is not None and current.is_file() else ""

    def notify(self) -> None:
        """A notice arrived: refresh now (any thread)."""
        self.wake.set()

    def run(self) -> None:
        """Check at start, on every notice and every ``check_interval_s``; watch health."""
        self.store.clean(self.config.model.path)
        self._resume_probation()
        interval_s = self.config.updates.check_interval_s
        while not self.stop_event.is_set():
            self.wake.clear()
            checked_s = time.monotonic()
            self._check_safely()
            self._wait_watching_health(checked_s + MIN_CHECK_GAP_S - time.monotonic())
            waited_s = 0.0
            while waited_s < interval_s and not self.stop_event.is_set():
                if self.wake.wait(HEALTH_POLL_S):
                    break
                waited_s += HEALTH_POLL_S
                self._watch_health()

    def _wait_watching_health(self, wait_s: float) -> None:
        """Wait ``wait_s`` (or until stopped), watching the health check meanwhile."""
        deadline_s = time.monotonic() + wait_s
        while not self.stop_event.is_set() and (left_s := deadline_s - time.monotonic()) > 0:
            self.stop_event.wait(min(left_s, HEALTH_POLL_S))
            self._watch_health()

    def _check_safely(self) -> None:
        try:
            self.check_once()
        except Exception:  # a bug here must not end updates for good; the log says what
            log.exception("model update check failed")
        self.checks += 1

    # -- one check ------------------------------------------------------------------------

    def check_once(self) -> None:
        """Refresh signed metadata and install what it assigns to this kiosk, if new."""
        if self._health is not None:
            return  # the last install is still on probation
        self._leaving = None
        look = self._look()
        if look is None or look.offer is None:
            return
        updater, offer = look.updater, look.offer
        if offer.sha256 == self._current_sha:
            if not self._confirmed:  # restarted since the install: check its health again
                self._start_probation(offer.manifest.label_shares(), self.store.read().previous)
                self._report("installed", offer, "serving the assigned model since start")
            return
        if self._keeps_through_halt(offer) or self._refused_before(offer):
            return
        try:
            self._install(updater, offer)
        except UpdateRefusedError as exc:
            self._refused(offer, exc)
        except Exception as exc:
            if self._current_sha == offer.sha256:
                raise  # swapped in already: not a refusal (the caller logs it)
            self._failed(offer, exc)

    # -- a withdrawn release (``appliance models yank``) ------------------------------------

    def _look(self) -> Look | None:
        """The refreshed metadata, or None once a refusal, or a withdrawn release served or
        assigned, was seen to (``_left_withdrawn``, ``_say_withdrawn``)."""
        try:
            look = self.client.look()
            if self._left_withdrawn(look):
                return None
        except UpdateRefusedError as exc:
            self._report("rejected", None, exc.reason)
            return None
        if look.assignment is not None and look.withdrawn is not None:
            self._say_withdrawn(look.assignment, look.withdrawn)
            return None
        return look

    def _left_withdrawn(self, look: Look) -> bool:
        """Whether the serving model is a release the repository withdrew (its signed record
        names this very file), in which case it is left now: for the newest older release of
        it still signed that passes its self-test here (downloaded, verified, installed with
        nothing to go back to: the withdrawn file is never served again), else the model that
        served before it, if that is no withdrawn release; said ``rolled_back``, retained.
        With neither, it serves on and says so (``rejected``)."""
        serving = self.serving.classifier
        if serving is None or not self._current_sha:
            return False
        try:
            withdrawal = self.client.withdrawal(look.updater, serving.name, serving.version)
        except ManifestError as exc:
            raise UpdateRefusedError(str(exc)) from exc
        if withdrawal is None or withdrawal.sha256 != self._current_sha:
            return False
        left = _info(serving)
        self._rejected.remember(self._current_sha)
        why = f"{withdrawal.model} {withdrawal.version} was {withdrawal.said()}"
        if look.offer is not None and _takes_over(look.offer, serving, self._rejected):
            # the assignment names a release it installs over this one (a signed rollback,
            # `models rollback` after the yank): installed and reported as its rollout awaits
            self._leaving = why
            return False
        self._rollout = look.assignment.rollout if look.assignment is not None else None
        went = self._go_back_from_withdrawn(look, serving, withdrawal.version)
        if went is None:
            self._report_state("rejected", left, f"{why}; this kiosk has no other release to "
                               "go back to and serves it on: assign it a release")
            return True
        if look.assignment is not None:
            self._said_withdrawn = (look.assignment.rollout, self.serving.version)
        log.error("model %s %s withdrawn; serving %s now", left.name if left else "?",
                  withdrawal.version, self.serving.version)
        self._report_state("rolled_back", left, f"{why}; went back to {went}")
        return True

    def _go_back_from_withdrawn(self, look: Look, serving: SkinClassifier,
                                version: str) -> str | None:
        """Serve the newest older release of ``serving`` that passes here, else the model
        before it; what it serves now, said, or None when there was nothing."""
        for offer in self.client.older_releases(look.updater, serving.name, version):
            if offer.sha256 in self._rejected:
                continue
            try:
                self._check_compatible(offer)
                download = self.store.download_path(offer.sha256)
                self.client.download(look.updater, offer, download)
                runner = self._verify(download, offer)
                manifest = offer.manifest
                runner.path = self.store.install(download, manifest.name, manifest.version,
                                                 offer.sha256, None)
            except UpdateRefusedError as exc:
                if exc.permanent:
                    self._rejected.remember(offer.sha256)
                log.warning("%s %s not gone back to: %s", offer.manifest.name,
                            offer.manifest.version, exc.reason)
                continue
            except OSError as exc:  # a full disk: the next older one, or the one before
                log.warning("%s %s not installed: %s", offer.manifest.name,
                            offer.manifest.version, exc.strerror or exc)
                self.store.clean(self.config.model.path)
                continue
            self._serve_instead(SkinClassifier(runner), offer.sha256)
            return (f"{offer.manifest.name} {offer.manifest.version}, the newest older release "
                    "still signed that passes its self-test here")
        previous = self.store.read().previous
        if previous is None or not previous.is_file() or self._withdrawn_file(look, previous):
            return None
        before = _load_or_none(previous)
        if before is None:
            return None
        self.store.point_at(previous)
        self._serve_instead(before, _sha256(previous))
        return (f"{before.name} {before.version}, the model it served before (no older "
                "release of it is signed that passes here)")

    def _withdrawn_file(self, look: Look, path: Path) -> bool:
        """Whether the model file ``path`` is a withdrawn release."""
        try:
            model = SkinClassifier.load(path)
            withdrawal = self.client.withdrawal(look.updater, model.name, model.version)
        except (ModelError, ManifestError):
            return True  # not known to be fine: not gone back to
        return withdrawal is not None and withdrawal.sha256 == _sha256(path)

    def _serve_instead(self, classifier: SkinClassifier, sha256: str) -> None:
        """Serve ``classifier`` now, with no health check and no way back to what served."""
        self.serving.swap(classifier, None)
        self._current_sha = sha256
        self._previous = None
        self._confirmed = True
        self._on_swap(self.serving)

    def _say_withdrawn(self, assignment: Assignment, withdrawal: Withdrawal) -> None:
        """The assignment names a withdrawn release (this kiosk does not serve it): not
        installed, said once while it and the serving model stay."""
        said = (assignment.rollout, self.serving.version)
        if self._said_withdrawn == said:
            return
        self._said_withdrawn = said
        self._rollout = assignment.rollout
        serving = (f"{self.serving.name} {self.serving.version}" if self.serving.classifier
                   is not None else "no model")
        self._report_state(
            "rejected", payloads.ModelInfo(name=assignment.model, version=assignment.version),
            f"{withdrawal.model} {withdrawal.version} was {withdrawal.said()}; not installed, "
            f"serving {serving}")

    def _failed(self, offer: Offer, exc: Exception) -> None:
        """A step of the install failed in a way none of them names: said, retained, and
        tried again at the next check. Such errors (a version no semantic one, a self-test
        that ONNX Runtime could not run) were logged only, and the kiosk said "available"
        last, at every check, while a rollout waited for it."""
        log.exception("install of %s %s failed", offer.manifest.name, offer.manifest.version)
        discard(self.store.download_path(offer.sha256))
        self._report("rejected", offer, f"install failed: {type(exc).__name__}: {exc}; the "
                     "serving model stays, and the next check tries again")

    def _refused_before(self, offer: Offer) -> bool:
        """Whether ``offer`` was refused here already: for good (said again once when
        assigned anew), or as the same downgrade while the serving model stays (said once,
        retained: the same refusal every check_interval_s is noise)."""
        if offer.sha256 in self._rejected:
            if offer.assignment.rollout != self._rollout:  # assigned anew: say why, once
                self._report("rejected", offer, "rejected on this kiosk before (it failed its "
                             "self-test or its health check here); not tried again: release "
                             "a new version")
            return True
        return self._refused_downgrade == self._downgrade(offer)

    def _keeps_through_halt(self, offer: Offer) -> bool:
        """Whether ``offer`` is an assignment a halt put back (``Assignment.halted``) while
        this kiosk serves the halted release: it installed it after the halt's last look at
        the fleet (or during it), and keeps it, as that look would have had it; said once
        (retained). It refused the older release as a downgrade, or, put back as a signed
        rollback, went back to it: a downgrade no operator asked for."""
        halted, assigned = offer.assignment.halted, offer.assignment
        if halted is None or (self.serving.name, self.serving.version) != (
                halted.model, halted.version):
            return False
        if self._refused_downgrade != self._downgrade(offer):
            self._refused_downgrade = self._downgrade(offer)
            self._report("rejected", offer, (
                f"keeps {halted.model} {halted.version}: the assignment of {assigned.model} "
                f"{assigned.version} was put back by the halt of rollout {halted.rollout}, "
                f"after this kiosk had installed {halted.version}; a halt takes no kiosk back, "
                "only a signed rollback (`appliance models rollback`) does"))
        return True

    def _downgrade(self, offer: Offer) -> tuple[str, str, str]:
        return offer.sha256, offer.assignment.rollout, self.serving.version

    def _refused(self, offer: Offer, exc: UpdateRefusedError) -> None:
        """Report a refusal, remembering a release refused for good, or a downgrade refused
        while its assignment and the serving model stay as they are."""
        if exc.permanent:
            self._rejected.remember(offer.sha256)
        if isinstance(exc, DowngradeRefusedError):
            self._refused_downgrade = self._downgrade(offer)
        self._report("rejected", offer, exc.reason)

    def _install(self, updater: Updater, offer: Offer) -> None:
        # leaving a withdrawn release: said with the install, and never gone back to
        leaving, self._leaving = self._leaving, None
        self._report("available", offer)
        self._check_compatible(offer)
        self._report("downloading", offer)
        download = self.store.download_path(offer.sha256)
        self.client.download(updater, offer, download)
        runner = self._verify(download, offer)
        self._report("verified", offer)
        before = self.serving.classifier
        previous = before.path if before is not None and leaving is None else None
        manifest = offer.manifest
        final = self._install_file(download, offer, previous)
        runner.path = final
        self.serving.swap(SkinClassifier(runner), None)
        self._current_sha = offer.sha256
        self._start_probation(manifest.label_shares(), previous)
        self._on_swap(self.serving)
        log.info("model %s %s installed; health check running", manifest.name, manifest.version)
        self._report("installed", offer, None if leaving is None else (
            f"{leaving}; installed the release assigned instead, with no way back to it"))

    def _install_file(self, download: Path, offer: Offer, previous: Path | None) -> Path:
        """Put the verified download in place and point at it; a full disk (or any refusal of
        the folder) leaves the pointer as it was, clears what the pointer does not name, and
        is refused for now (tried again at the next check)."""
        manifest = offer.manifest
        try:
            return self.store.install(
                download, manifest.name, manifest.version, offer.sha256, previous,
                probation=manifest.label_shares(), rollout=offer.assignment.rollout,
            )
        except OSError as exc:
            # the download, or the file moved in place before the pointer
            self.store.clean(self.config.model.path)
            raise UpdateRefusedError(
                f"could not install in {self.store.dir}: {exc.strerror or exc}; the serving "
                f"model stays"
            ) from exc

    def _resume_probation(self) -> None:
        """At start, check again the health of a model installed before a kill or a stop that
        came before its verdict, assigned or not: a rollout that halted meanwhile (the kiosk
        said nothing in time) withdrew its assignment, and the model served unchecked."""
        installed, serving = self.store.read(), self.serving.classifier
        if (installed.probation is None or installed.current is None or serving is None
                or os.path.realpath(serving.path) != os.path.realpath(installed.current)):
            return
        self._previous, self._rollout = installed.previous, installed.rollout
        if self._current_sha in self._rejected:  # killed in its rollback: finish it
            self._roll_back(serving, "found unhealthy before the restart, which came in the "
                            "middle of its rollback")
            return
        starts = self._count_start()
        if starts > MAX_PROBATION_STARTS:  # it dies before any verdict: the model, likely
            self._roll_back(serving, f"started {starts} times on it and never lived to its "
                            "health verdict (it crashed or was stopped each time)")
            return
        self._start_probation(installed.probation, installed.previous)
        self._report_state("installed", _info(serving), "serving the model installed before "
                           "the restart; its health check starts again")

    def _count_start(self) -> int:
        """Count this start on a model on probation (a full disk: counted as the first)."""
        try:
            return self.store.count_start()
        except OSError as exc:
            log.error("%s: could not count this start (%s)", self.store.dir / POINTER,
                      exc.strerror or exc)
            return 1

    def _start_probation(self, label_shares: Mapping[str, float], previous: Path | None) -> None:
        """Watch the serving model's next measurements; ``previous`` is the way back."""
        updates = self.config.updates
        self._health = HealthCheck(
            label_shares,
            updates.health_measurements,
            updates.health_window_s,
            updates.health_max_label_distance,
        )
        self._previous = previous
        self._confirmed = False
        if self.serving.classifier is not None:
            # a model slow only on this kiosk's measurements (its self-test's ran in time)
            # held each one up, or for ever; each run now fails the check past the deadline
            self.serving.classifier.bound_runs(RUN_DEADLINE_S)
        self.serving.swap(self.serving.classifier, self._health)

    def _check_compatible(self, offer: Offer) -> None:
        manifest, assignment = offer.manifest, offer.assignment
        if (manifest.name, manifest.version) != (assignment.model, assignment.version):
            raise UpdateRefusedError(
                f"assignment names {assignment.model} {assignment.version} but the target is "
                f"{manifest.name} {manifest.version}",
                permanent=True,
            )
        if manifest.feature_schema != FEATURE_SCHEMA:
            raise UpdateRefusedError(
                f"incompatible feature schema {manifest.feature_schema!r}: this kiosk measures "
                f"{FEATURE_SCHEMA!r}",
                permanent=True,
            )
        device_type = self.config.updates.device_type
        if device_type not in manifest.device_types:
            raise UpdateRefusedError(
                f"release is for device types {manifest.device_types}, this kiosk is "
                f"{device_type!r}",
                permanent=True,
            )
        self._check_not_downgrade(offer)

    def _check_not_downgrade(self, offer: Offer) -> None:
        running = self.serving.version
        if not running or offer.assignment.decision == "rollback":
            return
        if SEMVER.match(running) is None:
            # a model of this name built elsewhere ("1.0"): no order to keep, so the signed
            # assignment is followed; comparing raised, and the kiosk installed nothing ever
            log.info("serving %s %s, no semantic version: %s is not compared with it",
                     self.serving.name, running, offer.manifest.version)
            return
        if self.serving.name == offer.manifest.name and semver_key(
            offer.manifest.version
        ) < semver_key(running):
            raise DowngradeRefusedError(
                f"downgrade from {running} to {offer.manifest.version} refused: only a signed "
                f"rollback decision (`appliance models rollback`) may lower the version"
            )

    def _verify(self, download: Path, offer: Offer) -> OnnxRunner:
        try:
            # each run bounded: a release whose runs take 10 s (or for ever) held every
            # measurement up once installed, or this thread, and so every later update, for good
            runner = OnnxRunner(download, run_deadline_s=RUN_DEADLINE_S)
            check_self_test(runner, offer.manifest)
        except ModelTooSlowError as exc:
            discard(download)
            raise UpdateRefusedError(f"model too slow: {exc}", permanent=True) from exc
        except ModelError as exc:
            discard(download)
            raise UpdateRefusedError(f"model does not load: {exc}", permanent=True) from exc
        except SelfTestError as exc:
            discard(download)
            raise UpdateRefusedError(f"self-test failed: {exc}", permanent=True) from exc
        return runner

    # -- after the swap -------------------------------------------------------------------

    def _watch_health(self) -> None:
        health = self._health
        verdict = health.verdict() if health is not None else None
        if verdict is None:
            return
        serving = self.serving.classifier
        model = _info(serving)
        self._health = None
        self.wake.set()  # assignments that came during the probation are looked at now
        if verdict.healthy:
            self._confirmed = True
            if serving is not None:
                serving.bound_runs(None)  # passed: a slow run under load is no failure
            self.serving.swap(serving, None)
            self._confirm_on_disk()
            self._report_state("installed", model, verdict.reason, healthy=True)
            return
        self._roll_back(serving, verdict.reason)

    def _roll_back(self, serving: SkinClassifier | None, reason: str) -> None:
        """Serve the model before ``serving`` again and never try ``serving`` here again."""
        model, previous = _info(serving), self._previous
        # refused for good first: killed once it pointed back, the kiosk came back on the
        # model before with nothing refusing the release, and installed it again
        self._rejected.remember(self._current_sha)
        unsaved = self._point_back(serving, previous)
        self.serving.swap(_load_or_none(previous), None)
        self._current_sha = _sha256(previous) if previous is not None and previous.is_file() else ""
        self._on_swap(self.serving)
        log.error("model %s rolled back: %s", model.name if model else "?", reason)
        self._report_state("rolled_back", model, reason + unsaved, healthy=False)

    def _confirm_on_disk(self) -> None:
        """Record that the serving model passed (a full disk: the next start checks again)."""
        try:
            self.store.confirm()
        except OSError as exc:
            log.error("%s: could not record the passed health check (%s); the next start "
                      "checks it again", self.store.dir / POINTER, exc.strerror or exc)

    def _point_back(self, serving: SkinClassifier | None, previous: Path | None) -> str:
        """Point the store back at ``previous``; "" when done, else what a restart will do (a
        full disk: the rollback holds in this process only)."""
        if serving is None:
            return ""
        try:
            self.store.rollback(serving.path, previous)
        except OSError as exc:
            log.error("%s: could not point back at the previous model (%s)", self.store.dir,
                      exc.strerror or exc)
            return (f"; rolled back in memory only: {self.store.dir / POINTER} could not be "
                    f"written ({exc.strerror or exc}), a restart starts on {serving.version} "
                    f"and checks its health again")
        return ""

    # -- reporting -------------------------------------------------------------------

    def _report(self, state: str, offer: Offer | None, reason: str | None = None) -> None:
        model = None
        self._rollout = offer.assignment.rollout if offer is not None else None
        if offer is not None:
            model = payloads.ModelInfo(name=offer.manifest.name, version=offer.manifest.version)
        self._report_state(state, model, reason)

    def _report_state(
        self,
        state: str,
        model: payloads.ModelInfo | None,
        reason: str | None,
        healthy: bool | None = None,
    ) -> None:
        if state == "rejected":
            log.warning("model update rejected: %s", reason)
        message = payloads.ModelState(
            device_id=self.config.device.id,
            site=self.config.device.site,
            state=state,  # type: ignore[arg-type]
            at=payloads.utc_now(),
            model=model,
            running=_info(self.serving.classifier),
            reason=reason[:1000] if reason else None,
            healthy=healthy,
            rollout=self._rollout,
        )
        self._publish(message.to_json())

def _takes_over(offer: Offer, serving: SkinClassifier, rejected: RejectedReleases) -> bool:
    """Whether the assigned ``offer`` installs over the (withdrawn) ``serving`` model: not
    refused here before, and a signed rollback, another model, or a newer version (a plain
    deploy of an older one is refused as a downgrade)."""
    if offer.sha256 in rejected:
        return False
    manifest = offer.manifest
    return (offer.assignment.decision == "rollback" or manifest.name != serving.name
            or semver_key(manifest.version) > semver_key(serving.version))


def _load_or_none(path: Path | None) -> SkinClassifier | None:
    """The model at ``path`` (None when there is none or it no longer loads)."""
    if path is None:
        return None
    try:
        return SkinClassifier.load(path)
    except ModelError as exc:
        log.error("previous model %s does not load (%s); results go unclassified", path, exc)
        return None


def _info(classifier: SkinClassifier | None) -> payloads.ModelInfo | None:
    if classifier is None:
        return None
    return payloads.ModelInfo(name=classifier.name, version=classifier.version)
