"""The cohort figures of the console: features by age band from the store's per-band sums.

The same analysis as ``appliance report cohort`` (``backoffice/cohort.py``): age bands at
their midpoints, Pearson r with a Fisher-z 95 % CI. Here everything comes from per-band
count, sum and sum of squares computed by the database, so the page costs one grouped query
however many results are stored: Pearson r needs only those sums because age is constant
within a band. Each band's mean gets a Student-t 95 % CI. Spearman's rho needs every value and
stays in the offline report. The t distribution's numbers come from backoffice/student_t.py,
not SciPy, whose ``stats`` a long-running console would hold (~75 MiB) for two of them.
"""

from __future__ import annotations

import functools
import html
import math
from dataclasses import dataclass
from typing import Any

from appliance.backoffice import student_t
from appliance.backoffice.agebands import (
    REPORT_FEATURES,
    Z_95,
    Correlation,
    age_axis,
    band_midpoint_years,
    is_age_band,
)
from appliance.backoffice.store import Store

MAX_REPEATS = 50


@dataclass(frozen=True)
class BandStats:
    """One feature in one age band: count, mean, SD and the 95 % CI of the mean."""

    band: str
    n: int
    mean: float
    sd: float
    low: float
    high: float


@dataclass(frozen=True)
class FeatureView:
    """One feature over the age bands, with its Pearson correlation with age."""

    key: str
    bands: list[BandStats]
    pearson: Correlation
    not_measured: int = 0  # results with an age band whose value was outside the validated range
    axis: tuple[str, ...] = ()  # every band from the youngest to the oldest stored (age_axis)


@functools.lru_cache(maxsize=1024)  # a band's or a subject's count: the same few recur
def _t_95(dof: int) -> float:
    return student_t.quantile(0.975, dof) if dof > 0 else math.nan


def band_stats(band: str, n: int, total: float, squares: float) -> BandStats:
    """Mean, SD and the Student-t 95 % CI of the mean from a band's sums."""
    mean = total / n
    var = max(squares - total * total / n, 0.0) / (n - 1) if n > 1 else math.nan
    sd = math.sqrt(var) if n > 1 else math.nan
    half = _t_95(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return BandStats(band, n, mean, sd, mean - half, mean + half)


def pearson_from_bands(bands: list[BandStats], sums: list[tuple[float, float]]) -> Correlation:
    """Pearson r of a feature with band midpoint age, from per-band (sum, sum of squares)."""
    n = sum(b.n for b in bands)
    ages = [band_midpoint_years(b.band) for b in bands]
    sx = sum(b.n * x for b, x in zip(bands, ages, strict=True))
    sxx = sum(b.n * x * x for b, x in zip(bands, ages, strict=True))
    sy = sum(s for s, _ in sums)
    syy = sum(q for _, q in sums)
    sxy = sum(x * s for x, (s, _) in zip(ages, sums, strict=True))
    denominator = (n * sxx - sx * sx) * (n * syy - sy * sy)
    if n < 3 or denominator <= 0:
        return Correlation(math.nan, math.nan, math.nan, math.nan, n)
    r = max(min((n * sxy - sx * sy) / math.sqrt(denominator), 1.0), -1.0)
    return Correlation(r, *fisher_ci(r, n), _p_value(r, n), n)


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    """The Fisher-z 95 % CI of a Pearson r (as in backoffice/cohort.py)."""
    if n <= 3:
        return math.nan, math.nan
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    half = Z_95 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def _p_value(r: float, n: int) -> float:
    if abs(r) >= 1.0:
        return 0.0
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return 2 * student_t.upper_tail(abs(t), n - 2)


def feature_views(rows: list[tuple[Any, ...]]) -> list[FeatureView]:
    """Every report feature over the age bands, from ``Store.band_sums`` rows; values outside
    the validated range are left out, and counted."""
    valid = [row for row in rows if is_age_band(row[0])]
    valid.sort(key=lambda row: band_midpoint_years(row[0]))
    axis = tuple(age_axis([row[0] for row in valid]))
    views = []
    for index, key in enumerate(REPORT_FEATURES):
        measured = [(row[0], *_sums(row, 2 + 3 * index)) for row in valid]
        kept = [(band, n, s, q) for band, n, s, q in measured if n > 0]
        bands = [band_stats(band, n, s, q) for band, n, s, q in kept]
        pearson = pearson_from_bands(bands, [(s, q) for _, _, s, q in kept])
        left_out = sum(int(row[1]) for row in valid) - sum(b.n for b in bands)
        views.append(FeatureView(key, bands, pearson, left_out, axis))
    return views


def _sums(row: tuple[Any, ...], start: int) -> tuple[int, float, float]:
    """One feature's (count, sum, sum of squares) at ``start`` of a grouped row (NULL: none)."""
    return int(row[start]), float(row[start + 1] or 0.0), float(row[start + 2] or 0.0)


def repeat_rows(store: Store) -> list[dict[str, Any]]:
    """Subjects measured more than once: count, devices and CV % of each report feature."""
    out = []
    for row in store.repeat_sums(REPORT_FEATURES, MAX_REPEATS):
        count = int(row[1])
        cv = {}
        for index, key in enumerate(REPORT_FEATURES):
            n, total, squares = _sums(row, 3 + 3 * index)  # measured values only
            stats = band_stats("-", n, total, squares) if n else None
            cv[key] = 100 * stats.sd / abs(stats.mean) if stats and stats.mean else math.nan
        out.append({"subject_id": row[0], "count": count, "devices": int(row[2]),
                    "cv_percent": cv})
    return out


def plotted_bands(view: FeatureView) -> list[tuple[str, int, str, str]]:
    """What a feature's plot shows, as text, band by band along its axis: the band, n, the
    mean and its 95 % CI ("-" where a band has none): the plot's text alternative, for a
    screen reader and for anyone who wants the figures themselves."""
    bands = {b.band: b for b in view.bands}
    rows = []
    for name in view.axis or tuple(age_axis(list(bands))):
        band = bands.get(name)
        if band is None or not math.isfinite(band.mean):
            rows.append((name, band.n if band else 0, "-", "-"))
            continue
        ci = f"{band.low:.4g} to {band.high:.4g}" if math.isfinite(band.low) else "-"
        rows.append((name, band.n, f"{band.mean:.4g}", ci))
    return rows


def svg_plot(view: FeatureView, width: int = 360, height: int = 200,
             described_by: str = "") -> str:
    """An inline SVG: the band means with their 95 % CIs as error bars over every band of the
    age range, a band without a measured value marked n=0 (text escaped); ``described_by``:
    the id of the element that says its figures in text (plotted_bands)."""
    bands = {b.band: b for b in view.bands if math.isfinite(b.mean)}
    if not bands:
        return ""
    values = [v for b in bands.values() for v in (b.low, b.high, b.mean) if math.isfinite(v)]
    low, high = min(values), max(values)
    if all(b.mean >= 0 for b in bands.values()):  # every feature is a count, size or share:
        low = max(low, 0.0)  # no axis below 0, where a wide CI of a small band would reach it
    span = (high - low) or 1.0
    left, top, plot_w, plot_h = 50, 10, width - 60, height - 50

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / span)

    axis = view.axis or tuple(age_axis(list(bands)))
    step = plot_w / len(axis)
    description = f' aria-describedby="{html.escape(described_by)}"' if described_by else ""
    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(view.key)} by age band"{description}>',
             f'<text x="4" y="{top + 8}" font-size="10">{high:.3g}</text>',
             f'<text x="4" y="{top + plot_h}" font-size="10">{low:.3g}</text>']
    for i, name in enumerate(axis):
        x, band = left + step * (i + 0.5), bands.get(name)
        if band is not None and math.isfinite(band.low):
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_of(max(band.low, low)):.1f}" '
                         f'y2="{y_of(band.high):.1f}" stroke="#555"/>')
        if band is not None:
            parts.append(f'<circle cx="{x:.1f}" cy="{y_of(band.mean):.1f}" r="4" '
                         'fill="#2a6fb0"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 22}" font-size="10" text-anchor="middle">'
                     f'{html.escape(name)}</text><text x="{x:.1f}" y="{height - 8}" '
                     f'font-size="9" text-anchor="middle">n={band.n if band else 0}</text>')
    parts.append("</svg>")
    return "".join(parts)


def reference_table(views: list[FeatureView]) -> dict[str, dict[str, dict[str, float]]]:
    """Per age band (and ``all`` pooled): each feature's n, mean and SD, for kiosk screens."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for view in views:
        for band in view.bands:
            if band.n > 1:
                table.setdefault(band.band, {})[view.key] = {
                    "n": band.n, "mean": band.mean, "sd": band.sd}
        pooled = _pooled([b for b in view.bands if b.n > 1])
        if pooled is not None:
            table.setdefault("all", {})[view.key] = pooled
    return table


def _pooled(bands: list[BandStats]) -> dict[str, float] | None:
    """n, mean and SD of the union of bands (from each band's n, mean and SD)."""
    n = sum(b.n for b in bands)
    if n < 2:
        return None
    mean = sum(b.n * b.mean for b in bands) / n
    squares = sum((b.n - 1) * b.sd**2 + b.n * (b.mean - mean) ** 2 for b in bands)
    return {"n": n, "mean": mean, "sd": math.sqrt(squares / (n - 1))}
