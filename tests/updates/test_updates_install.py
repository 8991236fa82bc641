"""Install, health check, rollback and a SIGKILL in the middle, on real kiosks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from paho.mqtt import publish
from updates_helpers import Fleet, coarse_on_high_kime, inputs

from appliance.inference.runner import RUN_DEADLINE_S
from appliance.updates import kiosk
from appliance.updates.install import ModelStore
from appliance.updates.operations import assignments, release_model, unassign
from appliance.updates.release import manifest_for
from appliance.updates.testing import ModelEvents, linear_model
from tests.inference_helpers import answering_badly_above

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def _state_is(events: ModelEvents, device: str, state: str, version: str) -> bool:
    last = events.last_state(device)
    return (
        last is not None and last.state == state
        and last.model is not None and last.model.version == version
    )


def _rolled_back_after_the_swap(fleet: Fleet, events: ModelEvents, daemon: Any, model: Path,
                                why: str) -> None:
    """``model`` released as 1.1.0 and assigned to k1 is rolled back, its classification
    having failed after the swap for ``why``; 1.0.0 serves again and grades the next results."""
    built = manifest_for(model, "1.1.0", inputs())
    release_model(fleet.repo, model, built)
    fleet.assign(built, ["k1"])
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "rolled_back", "1.1.0"), 30), \
        events.states.get("k1")
    state = events.last_state("k1")
    assert state is not None
    assert state.reason is not None
    assert "classification failed after the swap" in state.reason
    assert why in state.reason
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"
    served = len(events.versions["k1"])
    assert events.wait_until(lambda: len(events.versions["k1"]) > served, 20)


def test_unhealthy_labels_after_the_swap_roll_back_automatically(
    fleet: Fleet, events: ModelEvents
) -> None:
    daemon = fleet.kiosk("k1", health_measurements=3)
    # self-test inputs say "fine"; this kiosk's measurements make the new model say "coarse"
    fleet.assign(fleet.release("1.1.0", weights=coarse_on_high_kime(), bias=(0, 0, -50)), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "rolled_back", "1.1.0"), 30)
    state = events.last_state("k1")
    assert state is not None
    assert state.reason is not None
    assert "label distribution far from the self-test's" in state.reason
    assert state.running is not None
    assert state.running.version == "1.0.0"
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"
    installed = ModelStore(fleet.tmp / "k1").read()
    assert installed.current == fleet.tmp / "initial.onnx"
    served = len(events.versions["k1"])
    assert events.wait_until(lambda: len(events.versions["k1"]) > served + 1, 20)
    versions = list(events.versions["k1"].values())
    assert versions[-1] == "1.0.0"
    assert "1.1.0" in versions
    daemon.updater.notify()  # the rolled-back release is not tried again
    assert events.wait_until(lambda: daemon.updater.checks >= 3, 20)
    assert events.last_state("k1") == state


def test_downgrade_is_refused_but_a_signed_rollback_decision_is_followed(
    fleet: Fleet, events: ModelEvents
) -> None:
    daemon = fleet.kiosk("k1")
    old = fleet.release("1.0.1")
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 30)
    fleet.assign(old, ["k1"])  # a plain deploy of an older version
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "rejected", "1.0.1"), 30)
    state = events.last_state("k1")
    assert state is not None
    assert "downgrade from 1.1.0 to 1.0.1 refused" in (state.reason or "")
    fleet.assign(old, ["k1"], decision="rollback")
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.0.1"), 30)
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.1"


def test_a_kiosk_on_a_halted_release_says_once_that_it_refuses_the_older_assignment_put_back(
    fleet: Fleet, events: ModelEvents
) -> None:
    """k1 installed 1.1.0 after its wave had given up on it; the halt put back the 1.0.5 it was
    assigned before. The kiosk refused the downgrade at every check (every hour by default),
    each time reporting "available" then "rejected" and logging a warning: noise, since nothing
    changes until the assignment or the serving model does. It says so once now; a new
    assignment is looked at as ever."""
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    fleet.assign(fleet.release("1.0.5"), ["k1"])  # not yet looked at when 1.1.0 comes
    [before] = assignments(fleet.repo, [(fleet.site, "k1")]).values()
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 30)
    unassign(fleet.repo, [(fleet.site, "k1")], {(fleet.site, "k1"): before})  # the halt's
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "rejected", "1.0.5"), 30)
    checked = daemon.updater.checks
    for more in (1, 2, 3):  # as every check_interval_s does
        daemon.updater.notify()
        assert events.wait_until(lambda n=more: daemon.updater.checks >= checked + n, 20)
    fleet.assign(fleet.release("1.2.0"), ["k1"])  # reported after all the above (one client)
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.2.0"), 30)
    about_105 = [(state.state, state.reason) for state in events.states["k1"]
                 if state.model is not None and state.model.version == "1.0.5"]
    assert about_105 == [("available", None), ("rejected", "downgrade from 1.1.0 to 1.0.5 "
                         "refused: only a signed rollback decision (`appliance models "
                         "rollback`) may lower the version")]


def test_a_notice_alone_installs_nothing(
    fleet: Fleet, events: ModelEvents, mqtt_broker: Any, topic_prefix: str
) -> None:
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    fleet.release("1.1.0")  # released, but not assigned to k1
    fleet.assign(fleet.release("1.2.0"), ["k2"])
    forged = json.dumps({"install": "models/skin-texture-grade/1.2.0/skin-texture-grade-1.2.0.onnx",
                         "version": "1.2.0", "rollout": "forged"})
    publish.single(f"{topic_prefix}/{fleet.site}/k1/model/update", forged, qos=1,
                   hostname=mqtt_broker.host, port=mqtt_broker.port)
    assert events.wait_until(lambda: daemon.updater.checks >= 2, 20)  # the notice woke it
    assert events.last_state("k1") is None
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"


def test_kiosk_killed_mid_install_comes_back_on_a_model(
    fleet: Fleet, events: ModelEvents
) -> None:
    config = fleet.config("k1").model_dump(mode="json")
    config_path = fleet.tmp / "k1.yaml"
    config_path.write_text(yaml.safe_dump(config))
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    log = (fleet.tmp / "k1.log").open("wb")
    kiosks = [_spawn(config_path, log)]
    try:
        _kill_after_verified_then_restart(fleet, events, config_path, log, kiosks)
    finally:
        for kiosk in kiosks:
            if kiosk.poll() is None:
                kiosk.send_signal(signal.SIGTERM)
                kiosk.wait(10)
        log.close()
    leftovers = [p.name for p in (fleet.tmp / "k1" / "models").iterdir()]
    assert not [name for name in leftovers if name.startswith(".download-")], leftovers
    assert json.loads((fleet.tmp / "k1" / "models" / "installed.json").read_text())["current"]


def _kill_after_verified_then_restart(
    fleet: Fleet, events: ModelEvents, config_path: Path, log: Any,
    kiosks: list[subprocess.Popen[bytes]],
) -> None:
    assert events.wait_until(
        lambda: any(s.state == "verified" for s in events.states.get("k1", [])), 60
    )
    os.kill(kiosks[0].pid, signal.SIGKILL)  # between "verified" and the pointer switch, or after
    kiosks[0].wait(10)
    pointer = ModelStore(fleet.tmp / "k1").read()
    assert pointer.current is None or pointer.current.is_file()
    served = len(events.versions["k1"])
    kiosks.append(_spawn(config_path, log))
    assert events.wait_until(lambda: len(events.versions["k1"]) > served, 60)
    after = list(events.versions["k1"].values())[served:]
    assert set(after) <= {"1.0.0", "1.1.0"}  # classified: never without a model
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 60)


def _spawn(config_path: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.updates.testing", str(config_path)],
        cwd=REPO, stdout=log, stderr=log,
    )


def test_a_kiosk_stopped_during_its_health_check_checks_again_though_no_longer_assigned(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A kiosk that died during the health check of a new model came back on it and checked
    its health again only while it was still assigned: the rollout had halted meanwhile (the
    kiosk said nothing in time) and withdrawn the assignment, so the model, never found
    healthy, served for good unchecked. The health check now resumes at start."""
    fleet.kiosk("k1", health_measurements=10_000, health_window_s=3600)
    unhealthy = fleet.release("1.1.0", weights=coarse_on_high_kime(), bias=(0, 0, -50))
    fleet.assign(unhealthy, ["k1"])
    fleet.notify_all()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 60)
    fleet.daemons["k1"].request_stop()  # dies in its health check
    fleet.threads[-1].join(30)
    unassign(fleet.repo, [(fleet.site, "k1")])  # the rollout halted: a timeout
    daemon = fleet.kiosk("k1", health_measurements=3)
    assert events.wait_until(lambda: _state_is(events, "k1", "rolled_back", "1.1.0"), 60)
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"
    assert ModelStore(fleet.tmp / "k1").read().current == fleet.tmp / "initial.onnx"


def test_a_kiosk_that_dies_on_every_start_before_its_health_verdict_goes_back(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A model that brings its kiosk down before the health check can end (a crash on the
    kiosk's own measurements, say) was started again for ever; the fourth start without a
    verdict goes back to the model before it."""
    probation = {"health_measurements": 10_000, "health_window_s": 3600}
    fleet.kiosk("k1", **probation)
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    fleet.notify_all()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 60)
    for start in range(4):
        fleet.daemons["k1"].request_stop()  # dies before its verdict
        fleet.threads[-1].join(30)
        if start < 3:
            fleet.kiosk("k1", **probation)
            assert events.wait_until(lambda n=start + 1: _resumed(events) == n, 60), [
                (state.state, str(state.at), state.reason) for state in events.states["k1"]]
    daemon = fleet.kiosk("k1", **probation)
    assert events.wait_until(lambda: _state_is(events, "k1", "rolled_back", "1.1.0"), 60)
    assert "started 4 times on it and never lived to its health verdict" in str(
        events.last_state("k1"))
    daemon.updater.notify()  # still assigned: not tried again, and nothing new to say
    assert events.wait_until(lambda: daemon.updater.checks >= 2, 20)
    assert events.last_state("k1").state == "rolled_back"
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"


def _resumed(events: ModelEvents) -> int:
    """How many times k1 started its health check again after a restart: its states saying
    so, told apart by their time, so that one delivered twice (a QoS 1 message sent again
    after a lost acknowledgement, seen once under load) counts once."""
    return len({state.at for state in list(events.states.get("k1", []))
                if "its health check starts again" in (state.reason or "")})


def test_a_release_answering_this_kiosk_with_nan_grades_nothing_and_rolls_back(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A signed release that loads, warms up and passes its self-test (kime_score near 30) but
    answers this kiosk's measurements (kime_score 61) with NaN: no result carries a grade of it
    (argmax read NaN as the first label, "fine", each probability clamped to 0, and the health
    check, seeing "fine" as the self-test did, kept it), and it is rolled back."""
    daemon = fleet.kiosk("k1")
    model = answering_badly_above(fleet.tmp / "nan-1.1.0.onnx", "1.1.0", 50.0, "nan")
    _rolled_back_after_the_swap(fleet, events, daemon, model,
                                "not finite numbers (nan, nan, nan)")
    assert "1.1.0" not in events.versions["k1"].values()


def test_a_release_slow_only_on_this_kiosk_s_measurements_fails_its_health_check(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A release whose runs count to 10^11 in a Loop node (hours) only when a kime_score is
    above 55: its self-test's (near 30) run in time, so `models release` and the kiosk's
    verification pass it, and this kiosk's measurements (61) each waited for it for ever, the
    health check saying nothing. Its runs are bounded until its health verdict: the first
    fails the check, and the kiosk goes back."""
    daemon = fleet.kiosk("k1")
    model = linear_model(fleet.tmp / "slow-1.1.0.onnx", "1.1.0", loop_trips=10**11,
                         loop_above_kime=55.0)
    _rolled_back_after_the_swap(fleet, events, daemon, model,
                                f"did not end within {RUN_DEADLINE_S:g} s")


def test_a_kiosk_serving_a_model_versioned_otherwise_than_semantically_installs_its_release(
    fleet: Fleet, events: ModelEvents
) -> None:
    """A kiosk set up with a model of the same name built elsewhere, versioned "1.0" (the
    contract takes any version): its downgrade check raised on that version, which nothing
    caught, so at every check it said "available" and then nothing, and installed no release
    ever. Such a version has no order to keep: the signed assignment is followed."""
    linear_model(fleet.tmp / "initial.onnx", "1.0")  # the model every kiosk here starts on
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(
        lambda: (s := events.last_state("k1")) is not None and s.healthy is True, 30
    ), events.states.get("k1")
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.1.0"


def test_an_install_step_failing_unforeseen_is_said_and_tried_again(
    fleet: Fleet, events: ModelEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no step of the install names (here the self-test's replay raising KeyError)
    was logged only: the kiosk said "available" last at every check, and a rollout waited out
    its timeout for it. It is said, retained, and the next check tries again."""
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)

    def broken(*args: Any) -> None:
        raise KeyError("probabilities")

    monkeypatch.setattr(kiosk, "check_self_test", broken)
    fleet.assign(fleet.release("1.1.0"), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(
        lambda: (s := events.last_state("k1")) is not None and s.state == "rejected", 30
    ), events.states.get("k1")
    state = events.last_state("k1")
    assert state is not None
    assert state.reason == ("install failed: KeyError: 'probabilities'; the serving model "
                            "stays, and the next check tries again")
    assert daemon.classifier is not None
    assert daemon.classifier.version == "1.0.0"
    assert list((fleet.tmp / "k1" / "models").glob(".download-*")) == []
    monkeypatch.undo()
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "installed", "1.1.0"), 30), \
        events.states.get("k1")


def test_a_release_refused_here_is_not_tried_again_after_a_restart_whatever_its_hash(
    fleet: Fleet, events: ModelEvents
) -> None:
    """The kiosk remembers the releases it refused for good (rejected.json), the newest 200:
    it kept the 200 whose hashes sort last instead, so with 200 remembered a new refusal was
    dropped from the file at once, and after a restart the kiosk installed that release
    again. Here 200 older refusals are remembered, each sorting after any likely hash."""
    models = fleet.tmp / "k1" / "models"
    models.mkdir(parents=True)
    older = [f"ffffffff{index:056x}" for index in range(200)]
    (models / "rejected.json").write_text(json.dumps(older))
    daemon = fleet.kiosk("k1")
    assert events.wait_until(lambda: daemon.updater.checks >= 1, 20)
    fleet.assign(fleet.release_failing_self_test("1.1.0"), ["k1"])
    daemon.updater.notify()
    assert events.wait_until(lambda: _state_is(events, "k1", "rejected", "1.1.0"), 30)
    state = events.last_state("k1")
    assert state is not None
    assert state.reason is not None
    assert "self-test failed" in state.reason
    daemon.request_stop()
    fleet.threads[-1].join(10)
    restarted = fleet.kiosk("k1")  # the same state folder
    assert events.wait_until(lambda: restarted.updater.checks >= 1, 20)
    assert events.wait_until(lambda: events.last_state("k1") != state, 20)
    again = events.last_state("k1")
    assert again is not None
    assert again.reason is not None
    assert "rejected on this kiosk before" in again.reason
    remembered = json.loads((models / "rejected.json").read_text())
    assert len(remembered) == 200
    assert remembered[:-1] == older[1:]  # the oldest one made room
