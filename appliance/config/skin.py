"""The ``skin:`` section: settings of skin measurement."""

from __future__ import annotations

from pydantic import Field

from appliance.config.section import Section


class SkinConfig(Section):
    um_per_px: float = Field(
        10.0,
        gt=0.5,
        le=30.0,  # appliance/skin/preprocess.py MAX_UM_PER_PX: memory stays bounded
        description="Micrometres per pixel of the microscope (measure with `appliance calibrate`).",
    )
