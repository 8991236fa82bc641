"""The features of one skin frame, as the measurement returns them (docs/measurement.md).

A small frozen record with units in the names. It is the skin package's own vocabulary: the
result payload (``transport.payloads.Features``) carries the same keys, and whoever sends a
result converts this record into it; measurement never imports transport code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class SkinFeatures:
    """Every feature of one frame (definitions in docs/measurement.md)."""

    pore_count: int
    pore_density_per_cm2: float
    pore_mean_diameter_um: float
    pore_area_ratio: float
    furrow_density_mm_per_mm2: float
    hill_density_per_mm2: float
    hill_mean_area_mm2: float
    furrow_mean_width_um: float
    furrow_anisotropy: float
    kime_score: float
    lab_l: float
    lab_a: float
    lab_b: float
    melanin_index: float
    erythema_index: float
    shine_ratio: float

    @classmethod
    def from_values(cls, values: dict[str, float]) -> SkinFeatures:
        """The record from a mapping holding at least every feature key (extra keys ignored)."""
        picked: dict[str, float | int] = {key: float(values[key]) for key in FEATURE_KEYS}
        picked["pore_count"] = round(values["pore_count"])
        return cls(**picked)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | int]:
        """The features as a plain mapping, in key order."""
        return asdict(self)


FEATURE_KEYS = tuple(field.name for field in fields(SkinFeatures))
