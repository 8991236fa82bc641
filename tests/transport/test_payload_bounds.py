"""A result the back office stores must be possible: physical bounds on the features, a grade
that is one distribution over its labels, a subject only with consent (docs/measurement.md
"Definitions"; the bounds' derivations are in appliance/transport/payloads.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.transport.payloads import (
    FEATURE_KEYS,
    SCHEMA_DIR,
    Features,
    PayloadError,
    Result,
    new_measurement_id,
    parse_payload,
)

GRADE = {"model": "grader", "version": "1.0.0", "label": "fine",
         "probabilities": {"fine": 0.7, "normal": 0.2, "coarse": 0.1}}


def result_json(features: dict[str, Any] | None = None, **over: Any) -> bytes:
    measured = dict.fromkeys(FEATURE_KEYS, 0.5) | {"pore_count": 12, "kime_score": 70.0}
    return json.dumps({
        "schema": "appliance.result/1", "measurement_id": new_measurement_id(),
        "device_id": "kiosk-1", "site": "shop-7", "captured_at": "2026-11-25T10:00:00Z",
        "software_version": "0.1.0", "quality": {"verdict": "ok"},
        "features": measured | (features or {}),
    } | over).encode()


@pytest.mark.parametrize(("key", "value", "said"), [
    ("pore_count", 2**62, "less than or equal to 2764800"),
    ("pore_count", 2_764_801, "less than or equal to 2764800"),
    ("pore_density_per_cm2", 1e300, "less than or equal to 257874"),
    ("pore_mean_diameter_um", 1e300, "less than or equal to 48000"),
    ("furrow_density_mm_per_mm2", 1e300, "less than or equal to 203.125"),
    ("hill_density_per_mm2", 1e300, "less than or equal to 2579"),
    ("hill_mean_area_mm2", 1e300, "less than or equal to 1105.92"),
    ("furrow_mean_width_um", 1e300, "less than or equal to 48000"),
    ("lab_a", 127.0, "less than or equal to 99"),
    ("lab_b", -127.0, "greater than or equal to -108"),
    ("melanin_index", -1e300, "greater than or equal to -0.000001"),
    ("melanin_index", 300.5, "less than or equal to 300"),
    ("erythema_index", -1e300, "greater than or equal to -300"),
])
def test_a_feature_past_what_it_can_physically_be_is_refused_naming_key_and_bound(
    key: str, value: float, said: str,
) -> None:
    """pore_count 2^62, a density of 1e300, melanin_index -1e300 were stored and entered the
    cohort report's correlations."""
    with pytest.raises(PayloadError) as refused:
        parse_payload(result_json({key: value}), Result)
    assert str(refused.value).startswith(f"features.{key}: Input should be {said}")


def test_features_at_their_bounds_are_taken() -> None:
    at_bounds = {"pore_count": 2_764_800, "pore_density_per_cm2": 257_874.0,
                 "pore_mean_diameter_um": 48_000.0, "furrow_density_mm_per_mm2": 203.125,
                 "hill_density_per_mm2": 2_579.0, "hill_mean_area_mm2": 1105.92,
                 "furrow_mean_width_um": 48_000.0, "lab_a": -87.0, "lab_b": 95.0,
                 "melanin_index": 300.0, "erythema_index": -300.0}
    assert parse_payload(result_json(at_bounds), Result).features.pore_count == 2_764_800


def test_the_bounds_follow_the_frame_the_scale_and_the_work_pixel_they_are_derived_from(
) -> None:
    """The contract imports no measurement code: its copies of the frame size, the coarsest
    scale and the work scale must be the measurement's, or a bound no longer says what the
    frame can hold."""
    from appliance.capture import sources
    from appliance.config import skin as skin_config
    from appliance.inference import runner
    from appliance.skin import frames, preprocess
    from appliance.transport import payloads

    assert payloads.KIOSK_FRAME_PX == (sources.FRAME_WIDTH_PX, sources.FRAME_HEIGHT_PX)
    assert payloads.KIOSK_FRAME_PX == (frames.FRAME_WIDTH_PX, frames.FRAME_HEIGHT_PX)
    assert payloads.COARSEST_UM_PER_PX == preprocess.MAX_UM_PER_PX == skin_config.MAX_UM_PER_PX
    assert payloads.WORK_UM_PER_PX == preprocess.WORK_UM_PER_PX
    assert payloads.PROBABILITY_TOLERANCE == runner.PROBABILITY_TOLERANCE
    width = payloads.KIOSK_FRAME_PX[0]
    narrowest = min(um * width / preprocess.work_size(width, 960, um)[0]
                    for um in np.linspace(skin_config.MIN_UM_PER_PX, 30.0, 20_000))
    assert narrowest >= payloads.NARROWEST_WORK_PX_UM
    work = preprocess.work_size(*payloads.KIOSK_FRAME_PX, preprocess.MAX_UM_PER_PX)
    assert work[0] * work[1] == payloads.MAX_PORE_COUNT


def test_every_colour_a_frame_can_have_lies_inside_the_colour_bounds() -> None:
    """CIELAB and the indices of the sRGB cube's colours (the mean of 8-bit values), as the
    colour measurement converts them, and of frames of its extreme colours."""
    from appliance.skin.colour import colour_features

    steps = np.linspace(0.0, 1.0, 52, dtype=np.float32)
    cube = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 1, 3)
    lab = cv2.cvtColor(cube, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    fields = Features.model_fields
    for column, key in enumerate(("lab_l", "lab_a", "lab_b")):
        low, high = _bounds(fields[key].metadata)
        assert float(lab[:, column].min()) >= low, key
        assert float(lab[:, column].max()) <= high, key
    # a white frame's melanin index reads -1e-14: a mean red of 1 up to rounding
    for colour in [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
                   (255, 0, 255), (0, 255, 255)]:
        frame = np.full((120, 160, 3), colour, np.uint8)
        Features.model_validate(dict.fromkeys(FEATURE_KEYS, 0.0) | colour_features(frame))


def _bounds(metadata: list[Any]) -> tuple[float, float]:
    low = next(item.ge for item in metadata if getattr(item, "ge", None) is not None)
    high = next(item.le for item in metadata if getattr(item, "le", None) is not None)
    return float(low), float(high)


def test_the_published_schema_says_the_models_bounds() -> None:
    """Third-party subscribers read the shipped schema, not the model: every feature has a
    lower and an upper bound there, the model's."""
    shipped = json.loads((SCHEMA_DIR / "appliance-result-v1.schema.json").read_text())
    features = shipped["$defs"]["Features"]["properties"]
    for key, field in Features.model_fields.items():
        low, high = _bounds(field.metadata)
        assert (features[key]["minimum"], features[key]["maximum"]) == (low, high), key
        assert math.isfinite(high)


def _shipped_part(name: str) -> dict[str, Any]:
    shipped = json.loads((SCHEMA_DIR / "appliance-result-v1.schema.json").read_text())
    part: dict[str, Any] = shipped["$defs"][name]
    return part


@pytest.mark.parametrize(("grade", "said"), [
    (GRADE | {"label": "excellent"}, "label 'excellent' is not among the probabilities' labels"),
    (GRADE | {"probabilities": {"fine": 1.0, "normal": 1.0, "coarse": 1.0}},
     "probabilities sum to 3;"),
    (GRADE | {"probabilities": {"fine": 0.5, "normal": 0.4}}, "probabilities sum to 0.9;"),
    (GRADE | {"probabilities": {}}, "label 'fine' is not among"),
])
def test_a_grade_that_is_no_distribution_over_its_labels_is_refused(
    grade: dict[str, Any], said: str,
) -> None:
    """A label not among the probabilities, or probabilities summing to 3, were stored and
    counted in the cohort's grades."""
    with pytest.raises(PayloadError) as refused:
        parse_payload(result_json(classification=grade), Result)
    assert str(refused.value).startswith("classification: Value error, " + said)


def test_a_grade_a_kiosk_sends_is_taken() -> None:
    """A float32 softmax over 64 labels, and the most a kiosk may send: each probability its
    check let through 0.001 outside 0-1 clamped (inference/classifier.py)."""
    logits = np.random.default_rng(3).normal(size=64).astype(np.float32)
    soft = np.exp(logits) / np.exp(logits).sum(dtype=np.float32)
    labels = [f"l{i}" for i in range(64)]
    grade = GRADE | {"label": "l0", "probabilities": dict(zip(labels, map(float, soft),
                                                              strict=True))}
    assert parse_payload(result_json(classification=grade), Result).classification
    clamped = dict.fromkeys(labels, 0.0) | {"l0": 1.0}  # from -0.001 x 63 and 1.001: sum 0.938
    grade = GRADE | {"label": "l0", "probabilities": clamped}
    assert parse_payload(result_json(classification=grade), Result).classification


def test_the_published_schema_says_what_a_grade_s_probabilities_sum_to() -> None:
    probabilities = _shipped_part("Classification")["properties"]["probabilities"]
    assert "the label among them; they sum to 1 within 0.065" in probabilities["description"]


@pytest.mark.parametrize("subject", [{"age_band": "40-49"}, {"subject_id": "s1"},
                                     {"age_band": "40-49", "consent": False},
                                     {"age_band": "40-49", "consent": None}])
def test_a_subject_without_consent_is_refused(subject: dict[str, Any]) -> None:
    """Without consent a kiosk sends no subject at all (DESIGN.md): one with an age band and no
    consent was stored and counted in the cohort."""
    with pytest.raises(PayloadError) as refused:
        parse_payload(result_json(subject=subject), Result)
    assert str(refused.value).startswith("subject.consent: ")


def test_a_subject_with_consent_is_taken() -> None:
    subject = {"age_band": "40-49", "consent": True}
    parsed = parse_payload(result_json(subject=subject), Result)
    assert parsed.subject is not None
    assert parsed.subject.consent is True


def test_the_published_schema_requires_consent_of_a_subject() -> None:
    subject = _shipped_part("Subject")
    assert subject["required"] == ["consent"]
    assert subject["properties"]["consent"]["const"] is True
