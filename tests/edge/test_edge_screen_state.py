"""The kiosk screen's state: guidance from the gate, bursts, results, choices, idle clear."""

from __future__ import annotations

import pytest

from appliance.capture.quality import FrameQuality
from appliance.edge.screen_state import ScreenState


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def verdict(name: str) -> FrameQuality:
    return FrameQuality(name, ())  # type: ignore[arg-type]


def test_guidance_follows_the_gate_and_burst_progress_counts_good_frames() -> None:
    state = ScreenState(burst_frames=5, idle_s=30, language="ja")
    state.on_gated(verdict("no_contact"), 0, False)
    assert state.snapshot()["phase"] == "welcome"  # nobody at the scope: keep the welcome
    state.on_gated(verdict("blurred"), 0, False)
    assert state.snapshot()["guidance"] == "guide_focus"
    state.on_gated(verdict("overexposed"), 0, False)
    assert state.snapshot()["guidance"] == "guide_too_bright"
    state.on_gated(verdict("ok"), 3, False)
    assert (state.snapshot()["phase"], state.snapshot()["progress"]) == ("measuring", 3)
    state.on_gated(verdict("no_contact"), 0, False)  # lifted mid-burst
    assert (state.snapshot()["phase"], state.snapshot()["guidance"]) == ("guiding",
                                                                        "guide_press")
    state.on_gated(verdict("ok"), 0, True)
    assert state.snapshot()["phase"] == "analysing"


def test_a_result_stays_until_the_scope_is_lifted_and_pressed_again() -> None:
    state = ScreenState(burst_frames=5, idle_s=30, language="en")
    state.show_result({"measurement_id": "m1"})
    state.on_gated(verdict("ok"), 0, False)  # still on the skin after the burst
    state.on_gated(verdict("moving"), 0, False)
    assert state.snapshot()["phase"] == "result"
    state.on_gated(verdict("no_contact"), 0, False)
    assert state.snapshot()["phase"] == "result"
    state.on_gated(verdict("blurred"), 0, False)  # the next customer
    assert state.snapshot()["phase"] == "guiding"


def test_the_subject_is_sent_only_with_consent_and_used_once() -> None:
    state = ScreenState(burst_frames=5, idle_s=30, language="ja")
    state.set_subject("40-49", consent=False)
    assert state.take_subject() is None  # no consent: not even the age band
    state.set_subject("40-49", consent=True)
    subject = state.take_subject()
    assert subject is not None
    assert (subject.age_band, subject.consent) == ("40-49", True)
    assert state.take_subject() is None  # the next customer chooses again


def test_the_screen_clears_itself_after_the_idle_timeout() -> None:
    clock = Clock()
    state = ScreenState(burst_frames=5, idle_s=60, language="ja", clock=clock)
    state.set_language("en")
    state.set_subject("30-39", consent=True)
    state.show_result({"measurement_id": "m1"})
    clock.now_s = 59.0
    state.tick()
    assert state.snapshot()["phase"] == "result"
    version = state.snapshot()["version"]
    clock.now_s = 61.0
    state.tick()
    cleared = state.wait_change(version, 1.0)
    assert cleared is not None
    assert (cleared["phase"], cleared["result"], cleared["subject"], cleared["language"]) == (
        "welcome", None, None, "ja")


def test_an_unknown_language_is_refused() -> None:
    state = ScreenState(burst_frames=5, idle_s=60, language="ja")
    with pytest.raises(ValueError, match="language 'fr'"):
        state.set_language("fr")
    assert state.snapshot()["language"] == "ja"


def test_a_stated_band_answers_only_when_nobody_chose_on_the_screen() -> None:
    state = ScreenState(burst_frames=5, idle_s=30, language="ja")
    stated = state.take_subject("30-39")  # a replayed synthetic customer, no screen choice
    assert stated is not None
    assert (stated.age_band, stated.consent) == ("30-39", True)  # stated, so agreed to keep
    state.set_subject("50-59", consent=False)
    assert state.take_subject("30-39") is None  # declined on the screen: nothing at all
    state.set_subject("50-59", consent=True)
    chosen = state.take_subject("30-39")
    assert chosen is not None
    assert chosen.age_band == "50-59"  # the screen's choice wins


def test_a_choice_for_a_started_measurement_or_an_ended_run_is_refused() -> None:
    state = ScreenState(burst_frames=5, idle_s=30, language="ja")
    run = state.snapshot()["run"]
    state.set_subject("40-49", consent=True, measurement=0, run=run)
    assert state.take_subject() is not None  # measurement 0 started with it
    with pytest.raises(ValueError, match=r"chosen for already started \(the kiosk is at "
                                         r"measurement 1\)"):
        state.set_subject("40-49", consent=True, measurement=0, run=run)
    with pytest.raises(ValueError, match="daemon run that has ended"):
        state.set_subject("40-49", consent=True, measurement=1, run="0123456789abcdef")
    assert state.snapshot()["subject"] is None
    assert state.take_subject() is None  # nothing left for the next customer
