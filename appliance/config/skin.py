"""The ``skin:`` section: settings of skin measurement."""

from __future__ import annotations

import contextlib
import math

from pydantic import Field, field_validator

from appliance.config.section import Section
from appliance.numbertext import decimal_number
from appliance.skin.scale_range import MAX_UM_PER_PX, MIN_UM_PER_PX  # MIN exclusive here


class SkinConfig(Section):
    um_per_px: float = Field(
        10.0,
        gt=MIN_UM_PER_PX,
        le=MAX_UM_PER_PX,
        description="Micrometres per pixel of the microscope (measure with `appliance calibrate`).",
    )

    @field_validator("um_per_px", mode="before")
    @classmethod
    def _finite_number(cls, value: object) -> object:
        """A real number only: YAML's ``true`` or ``.nan`` is no scale, whatever pydantic makes
        of it (``true`` would pass as 1.0, NaN as "not <= 30"). A number in exponent form
        without a dot (``1e1``) is a string to YAML 1.1: read as the number it spells, in
        ASCII decimal notation as ``--um-per-px`` reads it (``float`` also took ``１０`` and
        ``٣``, digits of other scripts that YAML leaves as text)."""
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # not a number: refused below, as it is
                value = decimal_number(value.strip())
        real = isinstance(value, int | float) and not isinstance(value, bool)
        if not real or not math.isfinite(value):  # type: ignore[arg-type]
            shown = repr(value)[:40]
            raise ValueError(f"must be a finite number of micrometres per pixel (over "
                             f"{MIN_UM_PER_PX:g}, at most {MAX_UM_PER_PX:g}), got {shown}")
        return value
