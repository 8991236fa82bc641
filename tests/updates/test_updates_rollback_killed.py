"""A kiosk killed (kill -9, a power cut) at each step of rolling back an unhealthy model comes
back on the model before it and never installs the rolled-back release again. Real
mosquitto, a real repository server, the kiosk a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from updates_helpers import Fleet, coarse_on_high_kime

from appliance.transport.payloads import ModelState
from appliance.updates.install import ModelStore
from appliance.updates.testing import ModelEvents

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker

# the kiosk, killed (SIGKILL) right after one step of its rollback: OWNER.STEP ran whole
KILLED_AFTER = """
import os, signal, sys
from appliance.updates import install, rejected
owner = {{"install": install.ModelStore, "rejected": rejected.RejectedReleases}}[{owner!r}]
step = getattr(owner, {step!r})
def killed_after(*args, **kwargs):
    step(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(owner, {step!r}, killed_after)
from appliance.updates.testing import main
sys.exit(main(sys.argv[1:]))
"""


def _states(events: ModelEvents, states: set[str], version: str) -> list[ModelState]:
    return [s for s in events.states.get("k1", [])
            if s.state in states and s.model is not None and s.model.version == version]


@pytest.mark.parametrize(("owner", "step"), [("install", "rollback"), ("rejected", "remember")],
                         ids=["pointed-back", "refusal-remembered"])
def test_a_kiosk_killed_in_its_rollback_never_grades_with_the_release_again(
    fleet: Fleet, events: ModelEvents, owner: str, step: str
) -> None:
    config_path = fleet.tmp / "k1.yaml"
    config_path.write_text(yaml.safe_dump(
        fleet.config("k1", health_measurements=3).model_dump(mode="json")))
    fleet.assign(fleet.release("1.1.0", weights=coarse_on_high_kime(), bias=(0, 0, -50)), ["k1"])
    log = (fleet.tmp / "k1.log").open("wb")
    kiosk = subprocess.Popen(
        [sys.executable, "-c", KILLED_AFTER.format(owner=owner, step=step), str(config_path)],
        cwd=REPO, stdout=log, stderr=log)
    try:
        assert kiosk.wait(90) == -9, (fleet.tmp / "k1.log").read_text()
        before = len(events.states.get("k1", []))
        assert _states(events, {"installed"}, "1.1.0")  # it was, and was found unhealthy
        kiosk = subprocess.Popen([sys.executable, "-m", "appliance.updates.testing",
                                  str(config_path)], cwd=REPO, stdout=log, stderr=log)
        served = len(events.versions["k1"])
        assert events.wait_until(lambda: len(events.versions["k1"]) > served + 3, 60)
        assert events.wait_until(lambda: len(events.states["k1"]) > before, 30)
    finally:
        if kiosk.poll() is None:
            kiosk.terminate()
            kiosk.wait(10)
        log.close()
    again = events.states["k1"][before:]
    assert not [s for s in again if s.state in {"available", "downloading", "installed"}
                and s.model is not None and s.model.version == "1.1.0"], again
    assert again[-1].running is not None
    assert again[-1].running.version == "1.0.0"
    assert ModelStore(fleet.tmp / "k1").read().current == fleet.tmp / "initial.onnx"
