"""benchmarks/skin_speed.py times the steps of ``analyze`` as ``analyze`` calls them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import skin_speed  # noqa: E402

from appliance.skin import analysis  # noqa: E402
from appliance.synthetic.skin import synthetic_frame  # noqa: E402


def test_the_stage_split_prepares_the_frame_as_analyze_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The preparation step is called with the same arguments in both (``analyze`` smooths the
    fine depth in ``prepare``; timed without it, that smoothing would count to the pores)."""
    calls: dict[str, list[tuple[Any, ...]]] = {"analyze": [], "stages": []}

    def recording(name: str, prepare: Any) -> Any:
        def call(rgb: Any, *args: Any, **kwargs: Any) -> Any:
            calls[name].append((args, tuple(sorted(kwargs.items()))))
            return prepare(rgb, *args, **kwargs)
        return call

    monkeypatch.setattr(analysis, "prepare", recording("analyze", analysis.prepare))
    monkeypatch.setattr(skin_speed, "prepare", recording("stages", skin_speed.prepare))
    rgb = synthetic_frame(1, 0).image_rgb
    analysis.analyze(rgb, skin_speed.UM_PER_PX)
    skin_speed.stage_times_ms([rgb])
    assert calls["stages"] == calls["analyze"]
    assert len(calls["analyze"]) == 1
