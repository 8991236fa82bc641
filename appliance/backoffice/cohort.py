"""Cohort statistics of stored results: features by age band, correlations, repeat measurements.

The analysis of the source paper's Fig. 4: each texture/pore feature against age band, with
Pearson and Spearman correlation and a 95 % confidence interval from Fisher's z transform
(Spearman's standard error uses the Fieller, Hartley & Pearson 1957 factor 1.06), which shows how
noisy such data are. Age bands are placed at their midpoints ("40-49" -> 44.5, "80+" -> 85).
A value the result names in ``not_validated`` (outside the validated range, docs/measurement.md)
was not measured: it is NaN here, left out of every figure, and counted (``not_measured``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.backoffice.agebands import (
    REPORT_FEATURES,
    Z_95,
    Correlation,
    band_midpoint_years,
    is_age_band,
)
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import NOT_VALIDATED_COLUMN, not_validated_keys
from appliance.backoffice.store import Store

_FEATURE_AT = {key: i for i, key in enumerate(REPORT_FEATURES)}
CHUNK_ROWS = 1000  # rows of the store held at once while the cohort is read


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
    """The report features of every stored result that has an age band, as columns: one
    number a result per feature and its band's index, no Python object a result."""

    bands: list[str]  # the age bands found, in age order
    band_index: np.ndarray  # per result: its band's index in ``bands``
    values: dict[str, np.ndarray]  # NaN where the value was outside the validated range

    @property
    def count(self) -> int:
        """How many results with an age band there are."""
        return len(self.band_index)

    def ages(self) -> np.ndarray:
        """Each result's age: the midpoint of its band."""
        midpoints = np.array([band_midpoint_years(band) for band in self.bands], dtype=float)
        ages: np.ndarray = midpoints[self.band_index]
        return ages

    def not_measured(self, key: str) -> int:
        """How many results with an age band have no measured value of ``key``."""
        return int(np.isnan(self.values[key]).sum())


def load_cohort(store: Store, where: ResultFilter | None = None) -> Cohort:
    """Every stored result with an age band (of those ``where`` selects: a site, a kiosk),
    read from the store a chunk at a time into columns made as long as the selection is
    (grown should results arrive meanwhile)."""
    rows = store.select_results(("age_band", NOT_VALIDATED_COLUMN, *REPORT_FEATURES), where)
    codes: dict[str, int] = {}
    band_index = np.empty(store.count_matching(where), np.int16)
    matrix = np.empty((len(REPORT_FEATURES), len(band_index)))  # a feature's values a row
    count = 0
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        banded = [row for row in chunk if is_age_band(row[0])]
        if count + len(banded) > len(band_index):
            grown = 2 * (count + len(banded))
            band_index, matrix = np.resize(band_index, grown), _wider(matrix, grown)
        band_index[count:count + len(banded)], matrix[:, count:count + len(banded)] = (
            _columns(banded, codes))
        count += len(banded)
    bands = sorted(codes, key=band_midpoint_years)
    in_age_order = np.zeros(len(codes), dtype=np.int16)
    in_age_order[[codes[band] for band in bands]] = np.arange(len(bands))
    values = {key: matrix[i, :count] for i, key in enumerate(REPORT_FEATURES)}
    return Cohort(bands, in_age_order[band_index[:count]], values)


def _wider(matrix: np.ndarray, columns: int) -> np.ndarray:
    """``matrix`` with room for ``columns`` columns (its own first)."""
    wider = np.empty((matrix.shape[0], columns))
    wider[:, :matrix.shape[1]] = matrix
    return wider


def _columns(rows: list[tuple[Any, ...]], codes: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(age band, not validated, *features) rows as band codes (numbered in the order first
    seen, into ``codes``) and the features a row each, NaN where not measured."""
    band_codes = np.array([codes.setdefault(row[0], len(codes)) for row in rows], np.int16)
    matrix = np.array([row[2:] for row in rows], dtype=float).reshape(-1, len(REPORT_FEATURES))
    for i, row in enumerate(rows):
        for key in not_validated_keys(row[1]) if row[1] else ():
            if key in _FEATURE_AT:
                matrix[i, _FEATURE_AT[key]] = math.nan
    return band_codes, matrix.T


def _interval(r: float, n: int, se_factor: float) -> tuple[float, float]:
    if n <= 3 or not math.isfinite(r):
        return math.nan, math.nan
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    half = Z_95 * math.sqrt(se_factor / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def correlations(
    ages: Sequence[float] | np.ndarray, feature: Sequence[float] | np.ndarray
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
    """A feature's measured values grouped by age band, bands in age order (a band with none
    is left out)."""
    values = cohort.values[key]
    measured = np.isfinite(values)  # not measured values are left out
    groups = {band: values[measured & (cohort.band_index == i)]
              for i, band in enumerate(cohort.bands)}
    return {band: group for band, group in groups.items() if len(group)}


def repeats(store: Store, features: Sequence[str] = REPORT_FEATURES,
            where: ResultFilter | None = None) -> list[Repeat]:
    """Subjects with more than one result with an age band (among those ``where`` selects),
    most-measured first; the store gives one subject's results at a time."""
    columns = ("subject_id", "device_id", "age_band", NOT_VALIDATED_COLUMN, *features)
    out = []
    for subject, group in itertools.groupby(store.select_repeated_subjects(columns, where),
                                            key=lambda row: row[0]):
        banded = [row for row in group if is_age_band(row[2])]
        if subject and len(banded) > 1:
            out.append(_repeat(subject, banded, features))
    return sorted(out, key=lambda rep: (-rep.count, rep.subject_id))


def _repeat(subject: str, rows: list[tuple[Any, ...]], features: Sequence[str]) -> Repeat:
    """One subject's (subject, device, band, not validated, *features) rows as a Repeat, values
    outside the validated range left out."""
    outside = [not_validated_keys(row[3]) for row in rows]
    mean, sd, cv = {}, {}, {}
    for i, key in enumerate(features):
        values = np.array([math.nan if key in out else row[4 + i]
                           for row, out in zip(rows, outside, strict=True)], dtype=float)
        mean[key], sd[key], cv[key] = _spread(values)
    return Repeat(subject, len(rows), len({row[1] for row in rows}), mean, sd, cv)


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, SD and CV % of the measured (finite) values; NaN where there are too few."""
    measured = values[np.isfinite(values)]
    if len(measured) < 2:
        return (float(measured.mean()) if len(measured) else math.nan), math.nan, math.nan
    mean, sd = float(measured.mean()), float(measured.std(ddof=1))
    return mean, sd, 100 * sd / abs(mean) if mean else math.nan


def summary(cohort: Cohort) -> dict[str, Any]:
    """Correlation of every report feature with age (midpoints of the bands)."""
    ages = cohort.ages()
    table = {}
    for key in REPORT_FEATURES:
        pearson, spearman = correlations(ages, cohort.values[key])
        table[key] = {"pearson": pearson, "spearman": spearman}
    return table
