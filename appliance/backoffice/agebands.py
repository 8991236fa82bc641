"""Age bands and the correlations cohort figures are given in: what the offline report
(backoffice/cohort.py, NumPy and SciPy) and the console's cohort page (console/cohortview.py,
from the store's per-band sums) share. Plain Python, so that the console, which reads only
these, loads no array library for them. Age bands are placed at their midpoints ("40-49" ->
44.5, "80+" -> 85).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.transport.payloads import TEXTURE_PORE_KEYS

REPORT_FEATURES = (*TEXTURE_PORE_KEYS, "kime_score")
Z_95 = 1.959963984540054
_BAND = re.compile(r"^([0-9]{2})(?:-([0-9]{2})|\+)$")
OPEN_END_YEARS = 200  # where an open band ("80+") ends, for ordering the axis


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its 95 % confidence interval and p-value."""

    r: float
    low: float
    high: float
    p_value: float
    n: int

    def text(self) -> str:
        """``+0.52 [+0.31, +0.68]`` as the report and the console show it; ``n/a`` without a
        correlation, and the coefficient without an interval where too few values give none
        (n = 3: a demo's first cohort), rather than ``[+nan, +nan]``."""
        if not math.isfinite(self.r):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.r:+.2f} (n={self.n}, too few for a 95% CI)"
        return f"{self.r:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def band_midpoint_years(band: str) -> float:
    """The middle of an age band in years ("40-49" -> 44.5, "80+" -> 85)."""
    match = _BAND.match(band)
    if match is None:
        raise ValueError(f"age band {band!r}: expected NN-NN or NN+")
    low = int(match.group(1))
    return (low + int(match.group(2))) / 2 if match.group(2) else low + 5.0


def age_axis(bands: Sequence[str]) -> list[str]:
    """Every age band from the youngest to the oldest of ``bands``, in age order: the years
    between two bands that no band covers become decade bands ("30-39", "50-59" ->
    "30-39", "40-49", "50-59"), so a figure shows an age without results as a gap in its axis
    rather than hiding it."""
    axis: list[str] = []
    covered_to = -1  # the last year of the bands so far
    for band in sorted(set(bands), key=_band_years):
        low, high = _band_years(band)
        if axis and low > covered_to + 1:
            axis += _decades(covered_to + 1, low - 1)
        axis.append(band)
        covered_to = max(covered_to, high)
    return axis


def _band_years(band: str) -> tuple[int, int]:
    """An age band's first and last year ("80+": to 200, an open end)."""
    match = _BAND.match(band)
    if match is None:
        raise ValueError(f"age band {band!r}: expected NN-NN or NN+")
    return int(match.group(1)), int(match.group(2)) if match.group(2) else OPEN_END_YEARS


def _decades(first: int, last: int) -> list[str]:
    """The years ``first``..``last`` as bands cut at each decade ("40-49"; "45-49" at a
    ragged start)."""
    bands = []
    while first <= last:
        end = min(first // 10 * 10 + 9, last)
        bands.append(f"{first:02d}-{end:02d}")
        first = end + 1
    return bands


def is_age_band(text: str | None) -> bool:
    """Whether ``text`` is an age band ("40-49", "80+"; ASCII digits, the first year not after
    the last). A store may hold others from before the payload took ASCII digits only
    ("٤٠-٤٩") or bands in order only ("49-40"): figures leave them out."""
    match = None if text is None else _BAND.match(text)
    return match is not None and (match.group(2) is None or
                                  int(match.group(1)) <= int(match.group(2)))
