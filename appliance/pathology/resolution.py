"""The slide resolution rule: which µm per pixel a brightfield slide scan can have.

One rule, read in three places: ``--um-per-px`` on the command line, the pathology server's
check of a job request before it is stored, and slide reading (labels.csv values).
"""

from __future__ import annotations

import argparse
import math

from appliance.numbertext import decimal_number

MIN_UM_PER_PX = 0.1
MAX_UM_PER_PX = 4.0


def resolution_problem(um_per_px: float) -> str | None:
    """Why ``um_per_px`` is no plausible slide resolution (NaN, inf, 0, negative, far out), or
    None when it is one."""
    if math.isfinite(um_per_px) and MIN_UM_PER_PX <= um_per_px <= MAX_UM_PER_PX:
        return None
    return (f"{um_per_px} µm/px is not a plausible slide resolution ({MIN_UM_PER_PX}-"
            f"{MAX_UM_PER_PX} µm/px; 40x scans are about 0.25, 20x about 0.5)")


def um_per_px_option(text: str) -> float:
    """argparse type of ``--um-per-px``: a plausible resolution, else a usage error (exit 2)."""
    try:
        um_per_px = decimal_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of µm per pixel in ASCII digits (as 0.25)") from None
    problem = resolution_problem(um_per_px)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return um_per_px
