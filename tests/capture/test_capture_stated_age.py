"""Simulated customers state the age band their skin was generated for (the cohort report needs
it), and the edge pipeline carries it into the result's subject."""

from __future__ import annotations

import pytest

from appliance.capture.synthetic import CustomerScript, SyntheticSource
from appliance.synthetic.camera import age_band_of, generated_skin, stated_age_band
from appliance.synthetic.skin import synthetic_frame


@pytest.mark.parametrize(
    ("age_years", "band"), [(20.0, "20-29"), (49.9, "40-49"), (79.99, "70-79"), (83.0, "80+")]
)
def test_age_band_of(age_years: float, band: str) -> None:
    assert age_band_of(age_years) == band


def test_each_generated_customer_states_their_own_age_band() -> None:
    script = CustomerScript(approach_frames=1, rest_frames=1, lift_frames=1)
    source = SyntheticSource(generated_skin(4), fps=0, script=script,
                             age_band=stated_age_band(4))
    source.open()
    frames = [source.read() for _ in range(6)]
    bands = [frame.age_band for frame in frames if frame is not None]
    expected = [age_band_of(synthetic_frame(4, i, "mixed").params.age_years) for i in (0, 1)]
    assert bands == [expected[0]] * 3 + [expected[1]] * 3
