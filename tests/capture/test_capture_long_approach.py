"""A long approach of the synthetic camera: approach frame i is blurred by a Gaussian of sigma
16 + 6 x (approach_frames - 1 - i) px, so the first frame of a 10**6-frame approach asked
OpenCV for sigma ~6e6 px, hours of CPU (a test's capture thread spun on it for weeks,
docs/experiments/README.md, the leak of the resend test). A blur as wide as the frame leaves
its mean colour, and is given as that; a script of no frames or of negative ones is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.capture.synthetic import CustomerScript, SyntheticSource, defocused
from appliance.synthetic.camera import textured_skin

HANG_BOUND_S = 120.0  # a bound on a hang (main: hours), not a speed
REPOSITORY = Path(__file__).resolve().parents[2]
FIRST_FRAME = """
import json
import numpy as np
from appliance.capture.synthetic import CustomerScript, SyntheticSource
from appliance.synthetic.camera import textured_skin

skin = textured_skin(3, (320, 240))
source = SyntheticSource(skin, fps=0, script=CustomerScript(approach_frames=10**6))
source.open()
frame = source.read()
assert frame is not None
colours = np.unique(frame.rgb.reshape(-1, 3), axis=0)
mean = skin(0).reshape(-1, 3).mean(axis=0)
print(json.dumps({"colours": colours.tolist(), "mean": mean.tolist()}))
"""


def test_the_first_frame_of_a_million_frame_approach_is_the_skin_s_mean_colour() -> None:
    """Run apart, so a blur that takes hours fails the test at the bound instead of holding
    the suite."""
    try:
        done = subprocess.run([sys.executable, "-c", FIRST_FRAME], capture_output=True,
                              text=True, timeout=HANG_BOUND_S, check=True,
                              env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"the first frame of a 10**6-frame approach took over {HANG_BOUND_S} s")
    shown = json.loads(done.stdout)
    assert shown["colours"] == [[round(channel) for channel in shown["mean"]]]


def test_a_blur_just_narrower_than_the_frame_is_within_a_level_of_its_mean() -> None:
    """The flat mean at the frame's width continues the Gaussians just below it."""
    skin = textured_skin(3, (320, 240))(0)
    narrower = defocused(skin, 319).astype(int)
    widest = defocused(skin, 320).astype(int)
    assert len(np.unique(widest.reshape(-1, 3), axis=0)) == 1
    assert len(np.unique(narrower.reshape(-1, 3), axis=0)) > 1  # still a blur, not flat
    assert np.abs(narrower - widest).max() <= 1


def test_the_last_approach_frames_are_blurred_as_before() -> None:
    """Only blurs as wide as the frame are given flat: a short approach is unchanged."""
    skin = textured_skin(3, (320, 240))
    source = SyntheticSource(skin, fps=0, script=CustomerScript(approach_frames=2))
    source.open()
    frames = []
    for _ in range(3):
        frame = source.read()
        assert frame is not None
        frames.append(frame.rgb)
    assert [len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1 for rgb in frames] == [True] * 3
    assert np.array_equal(frames[0], defocused(skin(0), 22.0))  # 16 + 6 x (2 - 1 - 0)
    assert np.array_equal(frames[1], defocused(skin(0), 16.0))
    assert np.array_equal(frames[2], skin(0))  # at rest


@pytest.mark.parametrize(("phases", "said"), [
    ({"approach_frames": -1}, "CustomerScript approach_frames=-1: a whole number of frames"),
    ({"rest_frames": 2.5}, "CustomerScript rest_frames=2.5: a whole number of frames"),
    ({"approach_frames": 0, "rest_frames": 0, "lift_frames": 0},
     "CustomerScript: a visit of no frames"),
], ids=["negative", "a-fraction", "no-frames"])
def test_a_script_of_no_frames_or_of_negative_ones_is_refused(
        phases: dict[str, float], said: str) -> None:
    with pytest.raises(ValueError, match=f"^{said}"):
        CustomerScript(**phases)  # type: ignore[arg-type]
