"""The micrometer photo's line mask is worked out a band of rows at a time
(appliance/synthetic/micrometer.py); the bands paint the pixels the whole grid at once did."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.synthetic import micrometer
from appliance.synthetic.micrometer import MicrometerSpec, _line_mask, micrometer_frame


@pytest.mark.parametrize("spec", [
    MicrometerSpec(um_per_px=9.6, size_px=(160, 120)),
    MicrometerSpec(um_per_px=3.3, angle_deg=-37.3, lines=40, seed=7, size_px=(161, 119)),
    MicrometerSpec(pitch_mm=0.01, um_per_px=2.0, angle_deg=90, size_px=(97, 131)),
])
def test_bands_of_any_height_paint_the_photo_the_whole_grid_paints(
    monkeypatch: pytest.MonkeyPatch, spec: MicrometerSpec
) -> None:
    width, height = spec.size_px
    monkeypatch.setattr(micrometer, "MASK_ROWS", 10**9)  # one band: the whole grid at once
    whole_mask = _line_mask(spec, width * 3, height * 3)
    whole = micrometer_frame(spec)
    assert 0 < whole_mask.mean() < 0.5  # lines on a bright field
    for rows in (1, 7, 240):
        monkeypatch.setattr(micrometer, "MASK_ROWS", rows)
        banded_mask = _line_mask(spec, width * 3, height * 3)
        assert banded_mask.dtype == whole_mask.dtype == np.float32
        assert np.array_equal(banded_mask, whole_mask), rows
        assert np.array_equal(micrometer_frame(spec), whole), rows
