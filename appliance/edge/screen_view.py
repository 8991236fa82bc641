"""The result as the customer sees it: numbers, grade and where they stand for their age.

Reference ranges come from the cohort (the console's ``/api/v1/cohort`` figures, written for
kiosks by ``appliance console reference --out FILE``): per age band, each feature's mean and
SD. The typical range is the middle 80 % (mean ± 1.2816 SD). A feature the result names in
``not_validated`` (outside the range the method was validated on, docs/measurement.md) is
shown as "not measured" (the headline kime score too): its value is not sent to the page and
not compared. A grade withheld for numbers outside that range says why (``grade_withheld``:
the features the model needed that were not measured, or the whole picture). A grade the
model cannot tell from the next one is shown as lying between the two (``grade_between``,
edge/grade_margin.py). The text shown for every key lives in the screen's message catalogues,
not here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from appliance import safejson
from appliance.edge.grade_margin import grade_between
from appliance.edge.reasons import grade_withheld
from appliance.transport.payloads import Result

# key, unit, decimals shown (as the overlay's caption: no more digits than the method resolves)
SHOWN_FEATURES = (
    ("kime_score", "", 0),
    ("hill_density_per_mm2", "/mm²", 1),
    ("furrow_density_mm_per_mm2", "mm/mm²", 1),
    ("furrow_mean_width_um", "µm", 0),
    ("pore_count", "", 0),
    ("pore_mean_diameter_um", "µm", 0),
)
Z_10_90 = 1.2815515655446004  # the 10th and 90th percentiles of a normal distribution
MAX_REFERENCE_BYTES = 1_000_000
ALL_AGES = "all"


class ReferenceFileError(ValueError):
    """A reference-range file that cannot be used; the text names the file and the key."""


def load_references(path: Path | None) -> dict[str, dict[str, dict[str, float]]]:
    """Per band (and ``all``): feature -> {mean, sd, n}; empty when no file is configured."""
    if path is None:
        return {}
    try:
        size_bytes = path.stat().st_size
    except OSError as exc:
        raise ReferenceFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size_bytes > MAX_REFERENCE_BYTES:
        raise ReferenceFileError(f"{path}: larger than {MAX_REFERENCE_BYTES} bytes")
    try:
        bands = safejson.loads(path.read_text(encoding="utf-8"))["bands"]
        return {str(band): {str(key): _figures(path, f"{band}.{key}", figures)
                            for key, figures in features.items()}
                for band, features in bands.items()}
    except ReferenceFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReferenceFileError(f"{path}: not a reference-range file ({exc!r})") from exc


def _figures(path: Path, where: str, figures: dict[str, object]) -> dict[str, float]:
    """One feature's mean, SD and n, each a finite JSON number: Infinity would reach the page
    as JSON it cannot parse, and NaN has no percentile."""
    checked = {}
    for name in ("mean", "sd", "n"):
        value = figures[name]
        number = _finite(value)
        if number is None:
            raise ReferenceFileError(
                f"{path}: not a reference-range file: bands.{where}.{name} is "
                f"{str(value)[:40]!r}, not a finite number; "
                "write the file again with `appliance console reference --out FILE`")
        checked[name] = number
    return checked


def _finite(value: object) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past the float range
        return None
    return number if math.isfinite(number) else None


def standing(value: float, reference: dict[str, float] | None) -> dict[str, Any] | None:
    """Where a value stands in a reference range: below, within or above, and its percentile."""
    if reference is None or not reference["sd"] > 0 or not math.isfinite(value):
        return None
    low = reference["mean"] - Z_10_90 * reference["sd"]
    high = reference["mean"] + Z_10_90 * reference["sd"]
    if not (math.isfinite(low) and math.isfinite(high)):  # no JSON number: the page cannot read it
        return None
    z = (value - reference["mean"]) / reference["sd"]
    where = "below" if z < -Z_10_90 else "above" if z > Z_10_90 else "within"
    percentile = round(50.0 * (1.0 + math.erf(z / math.sqrt(2.0))))
    return {"where": where, "percentile": min(max(percentile, 1), 99), "low": low, "high": high}


def result_view(result: Result, references: dict[str, dict[str, dict[str, float]]],
                overlay: bool) -> dict[str, Any]:
    """What the page shows of a committed result (no image data: the overlay is a local URL)."""
    band = result.subject.age_band if result.subject else None
    table = references.get(band or "", references.get(ALL_AGES, {}))
    features = result.features.model_dump()
    outside = set(result.not_validated)  # outside the validated range: "not measured"
    shown = [{"key": key, "value": None if key in outside else features[key], "unit": unit,
              "digits": digits, "measured": key not in outside,
              "standing": None if key in outside
              else standing(float(features[key]), table.get(key))}
             for key, unit, digits in SHOWN_FEATURES]
    return {
        "measurement_id": result.measurement_id,
        "kime_score": None if "kime_score" in outside else features["kime_score"],
        "grade": result.classification.label if result.classification else None,
        "grade_between": _between_view(result),
        "grade_withheld": _withheld_view(result),
        "features": shown,
        "reference_band": band if band in references else (ALL_AGES if table else None),
        "overlay": f"/overlay.png?m={result.measurement_id}" if overlay else None,
    }


def _between_view(result: Result) -> list[str] | None:
    """The two grades a near-tie lies between (edge/grade_margin.py); None: one grade."""
    return grade_between(result.classification.probabilities if result.classification
                         else None)


def _withheld_view(result: Result) -> dict[str, object] | None:
    """Why the result has no grade, when it was withheld (None: graded, or no model)."""
    withheld = grade_withheld(result.quality.reasons) if result.classification is None else None
    return withheld.as_json() if withheld is not None else None
