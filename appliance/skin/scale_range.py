"""The scales (µm per pixel) skin frames are measured at, and the range the measurement was
validated on (docs/measurement.md "Validated range").

Plain numbers with no imports: the command line's options and ``appliance config check`` read
them, and neither should load the measurement (OpenCV, NumPy) or the config models to do so.
"""

from __future__ import annotations

MIN_UM_PER_PX = 0.5  # exclusive; preprocess.py measures nothing finer
# The coarsest scale measured: a 1280x960 frame then becomes a 3840x2880 fine image (44 MB as
# float32); a 25x skin microscope reads ~10 µm/px, and 7-13 µm/px is the validated range.
MAX_UM_PER_PX = 30.0
SCALE_UM_PER_PX = (7.0, 13.0)  # validated: outside it no texture or pore number is trusted


def scale_outside_validated(um_per_px: float) -> bool:
    """Whether every frame measured at ``um_per_px`` has its texture and pore features flagged."""
    low, high = SCALE_UM_PER_PX
    return not low <= um_per_px <= high
