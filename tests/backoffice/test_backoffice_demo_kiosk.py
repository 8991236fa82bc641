"""The demo's simulated customers choose age band and consent on the kiosk screens."""

from __future__ import annotations

import sys

import pytest

from appliance.backoffice import demo
from appliance.backoffice.demo_kiosk import age_band, customer_choice
from appliance.edge.screen_state import ScreenState

FAST_EDGE = (sys.executable, "-m", "appliance.edge.testing")


def test_age_bands_of_simulated_people() -> None:
    assert [age_band(a) for a in (15.2, 20.0, 44.9, 79.9, 86.0)] == [
        "10-19", "20-29", "40-49", "70-79", "80+"]
    choices = [customer_choice(1, index) for index in range(10)]
    assert [c["consent"] for c in choices].count(False) == 2  # every fifth person declines
    assert all(c["measurement"] == i for i, c in enumerate(choices))
    assert len({c["age_band"] for c in choices}) > 1  # the generator's ages vary


def test_a_choice_for_a_measurement_already_started_is_refused() -> None:
    state = ScreenState(burst_frames=5, idle_s=60, language="en")
    state.take_subject()  # measurement 0 starts without a choice
    with pytest.raises(ValueError, match="measurement 0 already started"):
        state.set_subject("40-49", True, measurement=0)
    state.set_subject("40-49", True, measurement=1)
    subject = state.take_subject()
    assert subject is not None
    assert subject.age_band == "40-49"


@pytest.mark.broker
@pytest.mark.slow
def test_demo_results_carry_the_age_bands_chosen_on_the_kiosk_screen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demo.run_demo(devices=1, count=5, timeout_s=120, edge_command=FAST_EDGE) == 0
    out = capsys.readouterr().out
    bands = [line.rsplit("age band ", 1)[1] for line in out.splitlines()
             if line.startswith("stored ")]
    assert len(bands) == 5
    chosen = [customer_choice(1, index) for index in range(5)]
    for band, choice in zip(bands, chosen, strict=True):
        # a person measured before the first choice arrived has none; a decliner never has one
        assert band in ({choice["age_band"], "-"} if choice["consent"] else {"-"})
    assert sum(band != "-" for band in bands) >= 3
    assert "with an age band chosen on the kiosk screens" in out
