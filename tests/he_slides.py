"""Synthetic H&E slides for the tests, each painted once per test process.

Many pathology tests paint the same small biopsy (``render_slide``: about a CPU-second each)
only to save it as a JPEG; some painted it again for each test. ``painted`` returns
``render_slide(spec)`` itself, read-only (no test may draw on a slide another test reads),
from a cache keyed by what the painting reads: the spec's seed, material, MSI propensity,
stain batch and resolution. Its slide, patient and label name it and do not change a pixel
(tests/test_he_slides.py shows that), so slides of other names share one painting.
``placeholder_slide`` stands in for the painting where a test looks only at what ``synth he``
says.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from appliance.synthetic.he import SlideSpec, render_slide


def painted(spec: SlideSpec) -> np.ndarray:
    """``render_slide(spec)``, read-only, painted at most once per process."""
    return _painted(replace(spec, slide="", patient="", label=""))


@lru_cache(maxsize=6)  # the tests' biopsies are 14 MB each
def _painted(spec: SlideSpec) -> np.ndarray:
    rgb = render_slide(spec)
    rgb.flags.writeable = False
    return rgb


def placeholder_slide(job: tuple[SlideSpec, Path, int]) -> None:
    """A stand-in for ``appliance.synthetic.he._write_slide`` in tests of what ``synth he``
    says, not of its slides: the slide's file, a few bytes, not a painting."""
    spec, out_dir, _quality = job
    (out_dir / f"{spec.slide}.jpg").write_bytes(b"painted")
