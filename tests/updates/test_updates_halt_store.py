"""What each wave replaced is in the store (migration 17), on SQLite and PostgreSQL: a deploy
stopped mid-wave leaves its record, a deploy of the same release run again takes it over, and
either's halt puts back the assignments the devices had before the first one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from updates_helpers import inputs, unmarked

from appliance.backoffice.store import Store, open_store
from appliance.transport import payloads
from appliance.updates.fleetwatch import DeviceView
from appliance.updates.manifest import Assignment, ModelManifest
from appliance.updates.operations import assign, assignments, init_repository, release_model
from appliance.updates.release import manifest_for
from appliance.updates.repository import FileRepository
from appliance.updates.rollout import Rollout, RolloutPlan
from appliance.updates.rolloutrecords import latest_rollouts
from appliance.updates.testing import linear_model
from tests.store_helpers import BACKENDS, fresh_store

MODEL = "skin-texture-grade"
SITE = "lab"
A, B, C = (SITE, "a"), (SITE, "b"), (SITE, "c")


class _Stopped(BaseException):
    """The deploy stopped (Ctrl-C, or SIGTERM) once its wave was signed."""


class _Kiosks:
    """The fleet as the rollout sees it: a, b and c refuse the release (when ``refusing``;
    else they say nothing); with ``stop`` the deploy stops at its first look."""

    def __init__(self, *, stop: bool = False, refusing: ModelManifest | None = None) -> None:
        self.stop, self.refusing, self.rollout_id = stop, refusing, ""

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        self.rollout_id = rollout_id

    def devices(self) -> dict[tuple[str, str], DeviceView]:
        if self.stop:
            raise _Stopped
        if self.refusing is None:
            return {}
        about = payloads.ModelInfo(name=self.refusing.name, version=self.refusing.version)
        return {(site, device_id): DeviceView(site, device_id, state=payloads.ModelState(
            device_id=device_id, site=site, state="rejected", at=payloads.utc_now(),
            model=about, reason="self-test failed", rollout=self.rollout_id))
            for site, device_id in (A, B, C)}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "halt_replaced", open_store) as opened:
        yield opened


def _release(repo: FileRepository, tmp_path: Path, version: str) -> ModelManifest:
    model = linear_model(tmp_path / f"model-{version}.onnx", version)
    manifest = manifest_for(model, version, inputs())
    release_model(repo, model, manifest)
    return manifest


def _stopped_mid_wave(
    tmp_path: Path, store: Store
) -> tuple[FileRepository, ModelManifest, dict[tuple[str, str], Assignment]]:
    """A deploy of 1.1.0 to a, b (assigned 1.0.0 before) and c (none) stopped once its wave
    was signed: the repository, the release and a's and b's assignments from before."""
    repo = init_repository(tmp_path / "repo")
    assign(repo, [A, B], _release(repo, tmp_path, "1.0.0"))
    earlier = assignments(repo)
    release = _release(repo, tmp_path, "1.1.0")
    plan = RolloutPlan(release, [A, B, C], canaries=0, wave_size=3, timeout_s=30)
    with pytest.raises(_Stopped):
        Rollout(repo, _Kiosks(stop=True), store, plan).run()  # type: ignore[arg-type]
    assert {device: held.version for device, held in assignments(repo).items()} == {
        A: "1.1.0", B: "1.1.0", C: "1.1.0"}
    return repo, release, earlier


def test_a_deploy_run_again_after_one_stopped_puts_back_what_that_one_replaced(
    tmp_path: Path, store: Store
) -> None:
    """The deploy run again found a and b assigned this very release (by the stopped one) and
    took that for nothing to put back: its halt withdrew their assignments, and 1.0.0, which
    they had before, was lost."""
    repo, release, earlier = _stopped_mid_wave(tmp_path, store)
    kiosks = _Kiosks(refusing=release)
    plan = RolloutPlan(release, [A, B, C], canaries=0, wave_size=3, timeout_s=30)
    again = Rollout(repo, kiosks, store, plan).run()  # type: ignore[arg-type]
    assert again.state == "halted", again.reason
    assert "lab/a rejected: self-test failed" in again.reason
    assert unmarked(assignments(repo)) == earlier  # a and b: 1.0.0 again; c: none, as before


def test_a_halt_of_a_stopped_deploy_puts_back_what_its_wave_replaced(
    tmp_path: Path, store: Store
) -> None:
    from appliance.updates.halting import halt_stopped

    repo, _, earlier = _stopped_mid_wave(tmp_path, store)
    [(rollout_id, state)] = store.query("SELECT rollout_id, state FROM rollouts", [])
    assert state == "interrupted"
    assert halt_stopped(store, repo, rollout_id, "halted by test", {}) == ([A, B, C], 2, [])
    assert unmarked(assignments(repo)) == earlier
    rows = store.query("SELECT device_id, state, reason FROM rollout_devices ORDER BY device_id",
                       [])
    assert rows == [("a", "withdrawn", "halted by test; put back its assignment from before"),
                    ("b", "withdrawn", "halted by test; put back its assignment from before"),
                    ("c", "withdrawn", "halted by test")]
    [(state,)] = store.query("SELECT state FROM rollouts", [])
    assert state == "halted"


def test_a_halt_finds_the_devices_a_deploy_signed_but_was_stopped_before_recording(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped between signing the wave and recording its devices (rollout_devices has none
    of them): the halt looked only there and left all three assigned the halted release."""
    from appliance.updates.halting import halt_stopped

    def stopped(*_args: object) -> None:
        raise _Stopped

    with monkeypatch.context() as patched:
        patched.setattr(Rollout, "_record_device", stopped)
        repo, _, earlier = _stopped_mid_wave(tmp_path, store)
    assert store.query("SELECT * FROM rollout_devices", []) == []
    [(rollout_id,)] = store.query("SELECT rollout_id FROM rollouts", [])
    assert halt_stopped(store, repo, rollout_id, "halted by test", {}) == ([A, B, C], 2, [])
    assert unmarked(assignments(repo)) == earlier
    assert store.query("SELECT device_id, phase, state FROM rollout_devices ORDER BY device_id",
                       []) == [("a", "wave 1", "withdrawn"), ("b", "wave 1", "withdrawn"),
                               ("c", "wave 1", "withdrawn")]


def _report(device: tuple[str, str], rollout_id: str, state: str, *, healthy: bool | None = None,
            reason: str | None = None) -> DeviceView:
    """``device``'s newest report on 1.1.0 of ``rollout_id`` (running it once installed)."""
    about = payloads.ModelInfo(name=MODEL, version="1.1.0")
    return DeviceView(*device, state=payloads.ModelState(
        device_id=device[1], site=device[0], state=state, at=payloads.utc_now(), model=about,
        running=about if state == "installed" else None, healthy=healthy, reason=reason,
        rollout=rollout_id))


def test_a_halt_of_a_stopped_deploy_hears_each_device_as_its_deploy_would(
    tmp_path: Path, store: Store
) -> None:
    """Reports sent after the deploy stopped: a installed 1.1.0, healthy; b refused it; c
    installed it and is still in its health check. The halt withdrew all three and recorded
    each `withdrawn`, a's install and b's reason lost; then it withdrew c, which served the
    release, and put its older assignment back. A running deploy's halt hears them first: a
    keeps the release, b is recorded with its refusal, and c, still deciding, keeps it too
    (`kept`): a halt takes no kiosk back."""
    from appliance.updates.halting import halt_stopped

    repo, _, earlier = _stopped_mid_wave(tmp_path, store)
    [(rollout_id,)] = store.query("SELECT rollout_id FROM rollouts", [])
    signed = assignments(repo)
    views = {A: _report(A, rollout_id, "installed", healthy=True),
             B: _report(B, rollout_id, "rejected", reason="self-test failed"),
             C: _report(C, rollout_id, "installed")}
    assert halt_stopped(store, repo, rollout_id, "halted by test", views) == ([B], 1, [A, C])
    now = assignments(repo)
    assert now == {A: signed[A], B: now[B], C: signed[C]}
    assert unmarked(now)[B] == earlier[B]  # put back, marked as the halt's
    assert now[B].halted is not None
    assert (now[B].halted.rollout, now[B].halted.version) == (rollout_id, "1.1.0")
    rows = store.query("SELECT device_id, state, reason, running_version FROM rollout_devices "
                       "ORDER BY device_id", [])
    assert rows == [("a", "installed", "already serving it, healthy", "1.1.0"),
                    ("b", "rejected", "self-test failed", None),
                    ("c", "kept", "serving it, its health check still running as the rollout "
                     "halted: keeps skin-texture-grade 1.1.0 and its assignment (a halt takes "
                     "no kiosk back; `appliance models rollback` does); halted by test",
                     "1.1.0")]


class _SecondWaveStops:
    """The deploy's view of the fleet, where no kiosk has said anything yet: gone (the deploy
    with it) once b, of the second wave, was told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def notify(self, site: str, device_id: str, rollout_id: str) -> None:
        self.told.append((site, device_id))

    def devices(self) -> dict[tuple[str, str], DeviceView]:
        if B in self.told:
            raise _Stopped
        return {}


@pytest.mark.parametrize("installed", [True, False], ids=["installed-since", "silent"])
def test_a_halt_of_a_stopped_deploy_keeps_a_kiosk_that_installed_after_its_wave_timed_out(
    tmp_path: Path, store: Store, installed: bool
) -> None:
    """a's wave timed out (allowed: --max-failures 5), then the deploy stopped in b's wave.
    a installed the release after that, healthy: the halt kept a's `timeout` record and put
    its older assignment back, which a refused as a downgrade, or, put back as a signed
    rollback, went back to. a serves the release: it is recorded `kept` and keeps its
    assignment. Silent since, a keeps its `timeout` record (the halt wrote `withdrawn` over
    it, the timeout's reason lost), as under a running deploy's halt."""
    from appliance.updates.halting import halt_stopped

    repo = init_repository(tmp_path / "repo")
    assign(repo, [A, B], _release(repo, tmp_path, "1.0.0"))
    earlier = assignments(repo)
    plan = RolloutPlan(_release(repo, tmp_path, "1.1.0"), [A, B], canaries=0, wave_size=1,
                       timeout_s=0, max_failures=5)
    with pytest.raises(_Stopped):
        Rollout(repo, _SecondWaveStops(), store, plan).run()  # type: ignore[arg-type]
    [(rollout_id,)] = store.query("SELECT rollout_id FROM rollouts", [])
    signed = assignments(repo)
    views = {A: _report(A, rollout_id, "installed", healthy=True)} if installed else {}
    halted = halt_stopped(store, repo, rollout_id, "halted by test", views)
    rows = store.query("SELECT device_id, phase, state, reason FROM rollout_devices "
                       "ORDER BY device_id", [])
    assert rows[1:] == [("b", "wave 2", "withdrawn",
                         "halted by test; put back its assignment from before")]
    assert unmarked(assignments(repo))[B] == earlier[B]
    if not installed:
        assert halted == ([A, B], 2, [])
        assert unmarked(assignments(repo)) == earlier
        assert rows[0] == ("a", "wave 1", "timeout", "no installed and healthy report within 0 s")
        return
    assert halted == ([B], 1, [A])
    assert assignments(repo)[A] == signed[A]
    assert rows[0] == ("a", "wave 1", "kept", "serving it, healthy as the rollout halted: keeps "
                       "skin-texture-grade 1.1.0 and its assignment (a halt takes no kiosk back; "
                       "`appliance models rollback` does); halted by test")


def test_a_halt_of_a_stopped_deploy_after_the_clock_was_set_back_is_shown_newest(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rollouts of a ran while the back office's clock was an hour ahead; the second one's
    deploy stopped, NTP set the clock back, and the halt stamped a's row with the clock: under
    the first rollout's, so status showed a's rollout as that first one, not the halted one. A
    running deploy's halt stamps after the newest time recorded (``Rollout._stamp``)."""
    from appliance.updates import rollout as rollout_module
    from appliance.updates.halting import halt_stopped

    repo = init_repository(tmp_path / "repo")
    refused = _release(repo, tmp_path, "1.0.0")
    ahead = SimpleNamespace(utc_now=lambda: payloads.utc_now() + timedelta(hours=1))
    with monkeypatch.context() as clock_ahead:
        clock_ahead.setattr(rollout_module, "payloads", ahead)
        first = Rollout(repo, _Kiosks(refusing=refused), store, RolloutPlan(  # type: ignore[arg-type]
            refused, [A], canaries=0, timeout_s=30)).run()
        with pytest.raises(_Stopped):
            Rollout(repo, _Kiosks(stop=True), store, RolloutPlan(  # type: ignore[arg-type]
                _release(repo, tmp_path, "1.1.0"), [A], canaries=0, timeout_s=30)).run()
    assert first.state == "halted"
    [(stopped,)] = store.query("SELECT rollout_id FROM rollouts WHERE state = 'interrupted'", [])
    halt_stopped(store, repo, stopped, "halted by test", {})
    assert latest_rollouts(store, repo)[A][:3] == (stopped, "halted", "withdrawn")
