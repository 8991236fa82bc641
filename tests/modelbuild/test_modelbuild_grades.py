"""The synthetic grade table: labels follow texture, expert noise blurs only the boundaries."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from appliance.modelbuild.grades import (
    TableSpec,
    build_skin_table,
    grade_labels,
    grade_scores,
)
from appliance.modelbuild.table import assign_splits
from appliance.modelbuild.table_splits import SPLITS
from appliance.transport.payloads import FEATURE_KEYS


def _truths(rows: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(1)
    return [
        {"hill_density_per_mm2": float(h), "furrow_mean_width_um": float(w)}
        for h, w in zip(rng.lognormal(2.5, 0.4, rows), rng.lognormal(3.7, 0.2, rows), strict=True)
    ]


def test_finer_skin_scores_higher() -> None:
    truths = [
        {"hill_density_per_mm2": 30.0, "furrow_mean_width_um": 30.0},  # many hills, thin furrows
        {"hill_density_per_mm2": 15.0, "furrow_mean_width_um": 45.0},
        {"hill_density_per_mm2": 6.0, "furrow_mean_width_um": 65.0},  # few hills, wide furrows
    ]
    scores = grade_scores(truths)
    assert scores[0] > scores[1] > scores[2]
    assert grade_labels(scores, 0.0, seed=0) == ("fine", "normal", "coarse")


def test_without_noise_grades_are_tertiles() -> None:
    labels = grade_labels(grade_scores(_truths(900)), 0.0, seed=0)
    assert Counter(labels) == {"fine": 300, "normal": 300, "coarse": 300}


def test_expert_noise_moves_labels_only_to_a_neighbouring_grade() -> None:
    scores = grade_scores(_truths(900))
    clean = grade_labels(scores, 0.0, seed=0)
    noisy = grade_labels(scores, 0.25, seed=0)
    changed = [(a, b) for a, b in zip(clean, noisy, strict=True) if a != b]
    assert 0.02 < len(changed) / len(clean) < 0.3
    assert ("fine", "coarse") not in changed
    assert ("coarse", "fine") not in changed


def test_splits_have_the_planned_shares_and_depend_on_the_seed() -> None:
    splits = assign_splits(1500, seed=0)
    assert Counter(splits) == {"train": 900, "calibration": 150, "validation": 150, "test": 300}
    assert set(splits) == set(SPLITS)
    assert assign_splits(1500, seed=1) != splits


@pytest.mark.slow
def test_truth_table_from_synthetic_frames_has_every_feature() -> None:
    table = build_skin_table(TableSpec(rows=6, seed=5, features="truth", label_noise=0.0))
    assert table.feature_names == FEATURE_KEYS
    assert table.features.shape == (6, len(FEATURE_KEYS))
    assert np.isfinite(table.features).all()
    pore_counts = table.features[:, FEATURE_KEYS.index("pore_count")]
    assert np.array_equal(pore_counts, np.round(pore_counts))
    assert "SYNTHETIC" in table.description
    assert table.sources[3] == "synthetic:5:3:mixed"
