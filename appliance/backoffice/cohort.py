"""Cohort statistics of stored results: features by age band, correlations, repeat measurements.

The analysis of the source paper's Fig. 4: each texture/pore feature against age band, with
Pearson and Spearman correlation and a 95 % confidence interval from Fisher's z transform
(Spearman's standard error uses the Fieller, Hartley & Pearson 1957 factor 1.06), which shows how
noisy such data are. Age bands are placed at their midpoints ("40-49" -> 44.5, "80+" -> 85).
A value the result names in ``not_validated`` (outside the validated range, docs/measurement.md)
was not measured: it is NaN here, left out of every figure, and counted (``not_measured``).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.backoffice.schema import NOT_VALIDATED_COLUMN, not_validated_keys
from appliance.backoffice.store import Store
from appliance.transport.payloads import TEXTURE_PORE_KEYS

REPORT_FEATURES = (*TEXTURE_PORE_KEYS, "kime_score")
Z_95 = 1.959963984540054
_BAND = re.compile(r"^([0-9]{2})(?:-([0-9]{2})|\+)$")


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its 95 % confidence interval and p-value."""

    r: float
    low: float
    high: float
    p_value: float
    n: int


@dataclass(frozen=True)
class Repeat:
    """One subject measured more than once: mean, SD and CV % of each report feature."""

    subject_id: str
    count: int
    devices: int
    mean: dict[str, float]
    sd: dict[str, float]
    cv_percent: dict[str, float]


@dataclass(frozen=True)
class Cohort:
    """Report features per stored result that has an age band, plus subject ids."""

    age_bands: list[str]
    values: dict[str, np.ndarray]  # NaN where the value was outside the validated range
    subjects: list[str | None]
    devices: list[str]

    def not_measured(self, key: str) -> int:
        """How many results with an age band have no measured value of ``key``."""
        return int(np.isnan(self.values[key]).sum())


def band_midpoint_years(band: str) -> float:
    """The middle of an age band in years ("40-49" -> 44.5, "80+" -> 85)."""
    match = _BAND.match(band)
    if match is None:
        raise ValueError(f"age band {band!r}: expected NN-NN or NN+")
    low = int(match.group(1))
    return (low + int(match.group(2))) / 2 if match.group(2) else low + 5.0


def is_age_band(text: str | None) -> bool:
    """Whether ``text`` is an age band ("40-49", "80+"; ASCII digits). A store may hold others
    from before the payload's pattern took ASCII digits only ("٤٠-٤٩"): figures leave them out."""
    return text is not None and _BAND.match(text) is not None


def load_cohort(store: Store) -> Cohort:
    """Every stored result with an age band."""
    columns = ("age_band", "subject_id", "device_id", NOT_VALIDATED_COLUMN, *REPORT_FEATURES)
    rows = [row for row in store.select_results(columns) if is_age_band(row[0])]
    outside = [not_validated_keys(row[3]) for row in rows]
    values = {
        key: np.array([math.nan if key in out else row[4 + i] for row, out in
                       zip(rows, outside, strict=True)], dtype=float)
        for i, key in enumerate(REPORT_FEATURES)
    }
    return Cohort([row[0] for row in rows], values, [row[1] for row in rows],
                  [row[2] for row in rows])


def _interval(r: float, n: int, se_factor: float) -> tuple[float, float]:
    if n <= 3 or not math.isfinite(r):
        return math.nan, math.nan
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    half = Z_95 * math.sqrt(se_factor / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def correlations(
    ages: Sequence[float], feature: Sequence[float] | np.ndarray
) -> tuple[Correlation, Correlation]:
    """Pearson and Spearman correlation of a feature with age, each with a Fisher-z 95 % CI."""
    from scipy import stats  # noqa: PLC0415  (scipy is slow to import; reports only)

    x, y = np.asarray(ages, dtype=float), np.asarray(feature, dtype=float)
    measured = np.isfinite(y)  # values outside the validated range are NaN: left out
    x, y = x[measured], y[measured]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        empty = Correlation(math.nan, math.nan, math.nan, math.nan, n)
        return empty, empty
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    p_r, s_r = float(pearson[0]), float(spearman[0])
    return (
        Correlation(p_r, *_interval(p_r, n, 1.0), float(pearson[1]), n),
        Correlation(s_r, *_interval(s_r, n, 1.06), float(spearman[1]), n),
    )


def by_band(cohort: Cohort, key: str) -> dict[str, np.ndarray]:
    """A feature's values grouped by age band, bands in age order."""
    groups: dict[str, list[float]] = defaultdict(list)
    for band, value in zip(cohort.age_bands, cohort.values[key], strict=True):
        if math.isfinite(value):  # not measured values are left out
            groups[band].append(float(value))
    order = sorted(groups, key=band_midpoint_years)
    return {band: np.array(groups[band]) for band in order}


def repeats(cohort: Cohort, features: Iterable[str] = REPORT_FEATURES) -> list[Repeat]:
    """Subjects measured more than once, most-measured first."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for index, subject in enumerate(cohort.subjects):
        if subject:
            rows_of[subject].append(index)
    out = []
    for subject, rows in rows_of.items():
        if len(rows) < 2:
            continue
        mean, sd, cv = {}, {}, {}
        for key in features:
            mean[key], sd[key], cv[key] = _spread(cohort.values[key][rows])
        devices = len({cohort.devices[i] for i in rows})
        out.append(Repeat(subject, len(rows), devices, mean, sd, cv))
    return sorted(out, key=lambda rep: (-rep.count, rep.subject_id))


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, SD and CV % of the measured (finite) values; NaN where there are too few."""
    measured = values[np.isfinite(values)]
    if len(measured) < 2:
        return (float(measured.mean()) if len(measured) else math.nan), math.nan, math.nan
    mean, sd = float(measured.mean()), float(measured.std(ddof=1))
    return mean, sd, 100 * sd / abs(mean) if mean else math.nan


def summary(cohort: Cohort) -> dict[str, Any]:
    """Correlation of every report feature with age (midpoints of the bands)."""
    ages = [band_midpoint_years(band) for band in cohort.age_bands]
    table = {}
    for key in REPORT_FEATURES:
        pearson, spearman = correlations(ages, cohort.values[key])
        table[key] = {"pearson": pearson, "spearman": spearman}
    return table
