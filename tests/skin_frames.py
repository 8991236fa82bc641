"""Generated skin frames shared by the tests of one process.

Many tests read the same frame of the generator (``synthetic_frame(21, 0, "normal")`` in nine
files, the calibration's eight mixed frames in two tests) and each drew it again (~0.15 CPU-s a
frame). ``generated`` draws it once a process and hands out that frame: the same object
``synthetic_frame`` returned, its arrays read-only, so a test that changed one in place would
fail rather than hand the next test other pixels."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from appliance.synthetic.skin import SyntheticSkin, synthetic_frame


@lru_cache(maxsize=16)  # ~4.4 MB a frame (image, JPEG, geometry)
def generated(seed: int, index: int, preset: str = "mixed") -> SyntheticSkin:
    """``synthetic_frame(seed, index, preset)``, drawn once a process, its arrays read-only."""
    frame = synthetic_frame(seed, index, preset)
    frame.image_rgb.flags.writeable = False
    for field in dataclasses.fields(frame.geometry):
        value = getattr(frame.geometry, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return frame
