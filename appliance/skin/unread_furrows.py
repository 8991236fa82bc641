"""How much of a frame's own furrow network the centre lines left out (docs/measurement.md
"Validated range", the unread furrows).

The furrow contrast of the validated range (``pores.measure_candidates``: the median depth of
the furrow mask) reads the furrows the method found, so a frame whose faint fine network was
lost but for a few deep furrows reads as clear as any. This reading looks at the frame itself:
the ridges of its valley response (``texture.tophat_response``), the pixels that are a maximum
across a row or a column, at least ``RIDGE_SHARE`` of the centre lines' median response deep,
farther than ``CLEARANCE_UM`` from every centre line and not under a hair. Their count per
centre-line pixel is about the share of the frame's furrow length the centre lines do not hold
(a furrow at any angle but the two diagonals is a maximum across one of the two once a pixel,
along its length): 0.00-0.02 on development frames whose network was read, 0.08-1.7 on frames
that lost part of it (docs/experiments/README.md "faint"). No shape test: a pore's ridge is a
few pixels, 0.01 of the centre lines on the frames with the most pores.
"""

from __future__ import annotations

import cv2
import numpy as np

RIDGE_SHARE = 0.4  # a ridge this share of the centre lines' median response deep is a furrow's
CLEARANCE_UM = 60.0  # a ridge farther than this from every centre line is not theirs

# the two neighbours across a ridge: along a row, along a column
_ACROSS = (np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]], np.uint8),
           np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]], np.uint8))


def unread_furrows(response: np.ndarray, lines: np.ndarray, hair: np.ndarray,
                   um_per_px: float) -> float:
    """Ridge pixels of the frame's furrows that no centre line holds, per centre-line pixel
    (module docstring). ``response``: the valley response (float32); ``lines``: bool, the
    centre lines; ``hair``: bool, hair pixels; all at ``um_per_px``. 0 without centre lines
    (the hill size then says the texture was not read)."""
    line_px = cv2.countNonZero(lines.view(np.uint8))
    if line_px == 0:
        return 0.0
    # the centre lines' median response, read on every 2nd row and column (speed)
    on_lines = response[::2, ::2][lines[::2, ::2]]
    if on_lines.size == 0:
        on_lines = response[lines]
    level = float(np.partition(on_lines, on_lines.size // 2)[on_lines.size // 2])
    ridge = np.zeros(response.shape, dtype=np.uint8)
    across = np.empty_like(response)
    for kernel in _ACROSS:
        cv2.dilate(response, kernel, dst=across, borderType=cv2.BORDER_REPLICATE)
        cv2.bitwise_or(ridge, cv2.compare(response, across, cv2.CMP_GT), dst=ridge)
    # OpenCV takes the scalar (its type stubs list arrays only)
    deep = cv2.compare(response, RIDGE_SHARE * level, cv2.CMP_GT)  # type: ignore[call-overload]
    cv2.bitwise_and(ridge, deep, dst=ridge)
    reach = 2 * round(CLEARANCE_UM / um_per_px) + 1
    held = cv2.dilate(cv2.bitwise_or(lines.view(np.uint8), hair.view(np.uint8)),
                      cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    clear = cv2.compare(held, 0, cv2.CMP_EQ)  # type: ignore[call-overload]
    cv2.bitwise_and(ridge, clear, dst=ridge)
    return cv2.countNonZero(ridge) / line_px
