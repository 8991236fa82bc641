"""Simulated customers state the age band their skin was generated for (the cohort report needs
it), and the edge pipeline carries it into the result's subject, each customer's into their own
result, however slow the kiosk."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from appliance.capture.quality import QualityGate
from appliance.capture.sources import Frame
from appliance.capture.supervisor import CaptureRunner
from appliance.capture.synthetic import CustomerScript, SyntheticSource
from appliance.edge.measure import Measurement
from appliance.edge.pipeline import Accepted, AnalysisRunner, Identity
from appliance.edge.session import SessionTracker
from appliance.edge.testing import SMALL_FRAME_PX, fixed_analyzer
from appliance.synthetic.camera import age_band_of, generated_skin, stated_age_band, textured_skin
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


def test_a_kiosk_slower_than_the_visits_measures_every_customer_in_turn() -> None:
    """The n-th measurement is the n-th customer, also where measuring takes longer than a
    visit (a busy machine): the demo makes the n-th measurement's screen choices (age band,
    consent) for the n-th customer. The capture thread dropped the frames that came while a
    measurement ran, whole customers went unmeasured, and each later result carried another
    customer's choices (on 2 busy vCPUs every demo result had a wrong age band)."""
    bands = ["20-29", "30-39", "40-49", "50-59", "60-69"]
    frames: queue.Queue[Frame] = queue.Queue(maxsize=4)  # edge.frame_queue_size's default
    results: queue.Queue[Accepted] = queue.Queue()
    stop = threading.Event()

    def slow_analyzer(rgb: np.ndarray, um_per_px: float) -> Measurement:
        time.sleep(1.5)  # a visit is 16 frames at 15 fps: 1.07 s
        return fixed_analyzer(rgb, um_per_px)

    source = SyntheticSource(textured_skin(3, SMALL_FRAME_PX), fps=15,
                             age_band=lambda index: bands[index % len(bands)])
    capture = CaptureRunner(source, frames, stop, stall_s=None)
    analysis = AnalysisRunner(
        frames, results, stop, gate=QualityGate(), sessions=SessionTracker(),
        analyzer=slow_analyzer, classifier=lambda: None, identity=Identity("k1", "lab", "t/r"),
        um_per_px=10.0, limit=3,
    )
    capture.start()
    analysis.start()
    try:
        measured = [results.get(timeout=60).result.subject for _ in range(3)]
    finally:
        stop.set()
        capture.join(5)
        analysis.join(5)
    assert [subject.age_band if subject else None for subject in measured] == bands[:3]
    assert capture.frames_dropped == 0
