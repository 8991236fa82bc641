"""Simulated fleet traffic: plausible results, status messages and hostile payloads.

The benchmarks and the tests publish these through a real broker, or hand them to a kiosk's
outbox; ``appliance demo`` does not (its kiosks are real edge daemons grading with the shipped
model). Feature values follow the trends docs/measurement.md cites (hills coarsen, furrow density
falls and anisotropy rises with age; pore area rises into the 40s), with noise, so a cohort
report has something to find. Grades follow the kime score, not a model.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from appliance.transport.payloads import (
    Classification,
    Features,
    ModelInfo,
    Quality,
    Result,
    Status,
    Subject,
    new_measurement_id,
)

AGE_BANDS = ("20-29", "30-39", "40-49", "50-59", "60-69")
GRADES = ("fine", "normal", "coarse")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# What the simulated kiosks say they run: the release before the shipped grader (1.1.0), a fleet
# not yet updated, so a test has a newer model to report (tests/updates/test_updates_fleetwatch.py)
SIMULATED_MODEL = ModelInfo(name="skin-texture-grade", version="1.0.0")


def sample_features(rng: random.Random, age_band: str) -> Features:
    """Features of one plausible measurement of a person in ``age_band``."""
    decade = AGE_BANDS.index(age_band) if age_band in AGE_BANDS else 2
    hills = max(5.0, rng.gauss(60.0 - 7.0 * decade, 8.0))
    pores = max(0, round(rng.gauss(18 + 3 * min(decade, 2), 4)))
    area_mm2 = 1.28 * 0.96 * 100
    return Features(
        pore_count=pores,
        pore_density_per_cm2=pores / (area_mm2 / 100),
        pore_mean_diameter_um=max(20.0, rng.gauss(80 + 10 * min(decade, 2), 12)),
        pore_area_ratio=min(1.0, max(0.0, rng.gauss(0.02 + 0.004 * min(decade, 2), 0.004))),
        furrow_density_mm_per_mm2=max(0.5, rng.gauss(9.0 - 0.8 * decade, 1.0)),
        hill_density_per_mm2=hills,
        hill_mean_area_mm2=1.0 / hills,
        furrow_mean_width_um=max(10.0, rng.gauss(40 + 4 * decade, 5)),
        furrow_anisotropy=min(1.0, max(0.0, rng.gauss(0.2 + 0.08 * decade, 0.07))),
        kime_score=min(100.0, max(0.0, rng.gauss(75 - 8 * decade, 8))),
        lab_l=rng.uniform(55, 70),
        lab_a=rng.uniform(8, 14),
        lab_b=rng.uniform(12, 20),
        melanin_index=rng.uniform(20, 60),
        erythema_index=rng.uniform(5, 25),
        shine_ratio=rng.uniform(0.0, 0.05),
    )


def sample_quality_scores(rng: random.Random) -> dict[str, float]:
    """The sharpness and focus scores of a frame the quality gate passed, as a kiosk sends
    them (appliance/capture/quality.py): sharpness 0.6-1.2 (the gate refuses under 0.5;
    sharp frames read 0.7-1.25, docs/measurement.md "Frame sharpness"), focus 200-1300. One
    draw sets both (blur lowers them together), so the draws after it are those of before."""
    sharp_share = rng.random()
    return {"sharpness": round(0.6 + 0.6 * sharp_share, 3),
            "focus": round(200.0 + 1100.0 * sharp_share, 1)}


def sample_result(
    rng: random.Random, site: str, device_id: str, index: int, subject_id: str | None = None
) -> Result:
    """One valid result from ``site/device_id`` (its ``index``-th measurement)."""
    age_band = rng.choice(AGE_BANDS)
    features = sample_features(rng, age_band)
    grade = GRADES[0 if features.kime_score > 65 else 1 if features.kime_score > 45 else 2]
    captured = START + timedelta(minutes=index, milliseconds=rng.randrange(60_000))
    return Result(
        measurement_id=new_measurement_id(int(captured.timestamp() * 1000)),
        device_id=device_id,
        site=site,
        captured_at=captured,
        software_version="0.1.0",
        quality=Quality(verdict="ok", scores=sample_quality_scores(rng)),
        features=features,
        classification=Classification(
            model=SIMULATED_MODEL.name,
            version=SIMULATED_MODEL.version,
            label=grade,
            probabilities={g: (0.8 if g == grade else 0.1) for g in GRADES},
        ),
        subject=Subject(subject_id=subject_id, age_band=age_band, consent=True),
    )


def online_status(site: str, device_id: str, outbox_depth: int = 0) -> Status:
    """A device's retained birth message."""
    return Status(
        device_id=device_id,
        site=site,
        state="online",
        at=datetime.now(UTC),
        software_version="0.1.0",
        model=SIMULATED_MODEL,
        camera="online",
        outbox_depth=outbox_depth,
        dropped=0,
    )


def malformed_payloads(valid: Result) -> dict[str, bytes]:
    """Hostile and broken variants of a valid result, by what is wrong with them."""
    good = json.loads(valid.to_json())
    wrong_type = dict(good, features=dict(good["features"], pore_count="many"))
    missing = {k: v for k, v in good.items() if k != "features"}
    return {
        "bad json": b'{"schema": "appliance.result/1", "measurement_id": ',
        "not utf-8": b"\xff\xfe\x00garbage",
        "wrong schema": json.dumps(dict(good, schema="appliance.result/9")).encode(),
        "wrong type": json.dumps(wrong_type).encode(),
        "missing field": json.dumps(missing).encode(),
        "extra field": json.dumps(dict(good, sql="'; DROP TABLE results; --")).encode(),
        "not an object": b"[1, 2, 3]",
        "nul character": json.dumps(dict(good, software_version="0.1\u0000")).encode(),
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "huge": b'{"pad": "' + b"x" * 300_000 + b'"}',
        "empty": b"",
    }


def publish_messages(
    host: str, port: int, messages: list[tuple[str, bytes]], retain: bool = False
) -> None:
    """Publish (topic, payload) pairs at QoS 1 and wait until the broker acked every one."""
    from appliance.transport.client import LinkSettings, new_client  # noqa: PLC0415

    client = new_client(LinkSettings(host, port, "", max_inflight=1000))
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, body, qos=1, retain=retain) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                raise TimeoutError(f"broker {host}:{port} did not ack a publish on {info.mid}")
    finally:
        client.disconnect()
        client.loop_stop()
