"""Student's t distribution: its upper tail and its quantiles, in plain Python.

The console's cohort page needs two numbers of it (the 95 % CI of a band's mean, the p-value
of a Pearson r), and SciPy's ``stats`` for them held ~75 MiB of a long-running console's
memory. The tail is the regularized incomplete beta function (Abramowitz & Stegun 26.5.27,
26.7.1), ``P(T > t) = I_x(dof/2, 1/2) / 2`` with ``x = dof / (dof + t²)``, evaluated by its
continued fraction (A&S 26.5.8) with the modified Lentz method; a quantile is found by Newton's
method on that tail from the normal quantile, which lies below every t quantile, so each step
(the tail being convex above 0) stays below the root and approaches it. Both agree with
SciPy's to 1e-9 (relative) up to 10^5 degrees of freedom and to 1e-7 at 10^6, where the
differences of lgamma lose digits (tests/console/test_console_modules.py).
"""

from __future__ import annotations

import math

_TINY = 1e-300  # keeps the continued fraction's denominators off zero (Lentz)
_TOLERANCE = 1e-15
_MAX_TERMS = 100_000  # the fraction needs ~sqrt(dof) terms: enough for any cohort stored
_STEP_TOLERANCE = 1e-12  # Newton's last step: the one before it was ~1e-6 of t, so t is exact
_MAX_STEPS = 100


def upper_tail(t: float, dof: float) -> float:
    """P(T > t) for Student's t with ``dof`` degrees of freedom (> 0)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    half = 0.5 * _beta_regularized(dof / (dof + t * t), dof / 2, 0.5)
    return half if t >= 0 else 1.0 - half


def quantile(probability: float, dof: float) -> float:
    """The t below which ``probability`` (0 < p < 1) of Student's t with ``dof`` lies."""
    if probability < 0.5:
        return -quantile(1.0 - probability, dof)
    tail = 1.0 - probability
    t = _normal_quantile(probability)
    for _ in range(_MAX_STEPS):
        step = (upper_tail(t, dof) - tail) / density(t, dof)
        t += step
        if abs(step) <= _STEP_TOLERANCE * max(abs(t), 1.0):
            break
    return t


def density(t: float, dof: float) -> float:
    """The probability density of Student's t with ``dof`` degrees of freedom at ``t``."""
    log_norm = (math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)
                - 0.5 * math.log(dof * math.pi))
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(t * t / dof))


def _normal_quantile(probability: float) -> float:
    """The standard normal quantile (bisection on erfc: a start for ``quantile``)."""
    low, high = 0.0, 40.0
    for _ in range(64):  # 40 / 2**64: below a double's resolution
        middle = (low + high) / 2
        if 0.5 * math.erfc(middle / math.sqrt(2)) > 1.0 - probability:
            low = middle
        else:
            high = middle
    return low


def _beta_regularized(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction on whichever side of the mean it converges."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (A&S 26.5.8), by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    fraction = d
    for m in range(1, _MAX_TERMS):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            fraction *= c * d
        if abs(c * d - 1.0) <= _TOLERANCE:
            break
    return fraction
