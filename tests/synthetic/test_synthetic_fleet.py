"""The simulated fleet's results carry the quality scores a real kiosk sends: its quality
gate's `sharpness` (which the console's result page shows) was missing, and its `focus` read
0.6-1.0 where the gate's reads hundreds."""

from __future__ import annotations

import json
import random

import numpy as np

from appliance.capture.quality import MIN_SHARPNESS, QualityGate
from appliance.console.views import shown_quality
from appliance.synthetic.fleet import sample_result


def _sampled_scores(count: int) -> list[dict[str, float]]:
    rng = random.Random(7)
    return [sample_result(rng, "tokyo", "kiosk-1", index).quality.scores
            for index in range(count)]


def test_each_simulated_result_has_a_sharpness_the_gate_would_pass() -> None:
    sharpness = [scores["sharpness"] for scores in _sampled_scores(200)]
    assert min(sharpness) >= MIN_SHARPNESS  # each says verdict "ok"
    assert max(sharpness) <= 1.3  # sharp frames of every renderer read 0.7-1.25
    assert max(sharpness) - min(sharpness) > 0.3  # not one number for every frame


def test_the_simulated_scores_are_named_as_the_kiosk_s_quality_gate_names_them() -> None:
    frame = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    gate_names = set(QualityGate().scores(frame))
    for scores in _sampled_scores(20):
        assert set(scores) <= gate_names
        assert scores["focus"] >= 100.0  # the gate's focus: Laplacian variance / level^2


def test_a_simulated_result_s_page_shows_its_sharpness() -> None:
    result = sample_result(random.Random(1), "tokyo", "kiosk-1", 0)
    shown = dict(shown_quality(json.loads(result.to_json())["quality"])["scores"])
    assert shown["sharpness"] >= MIN_SHARPNESS
