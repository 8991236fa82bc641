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
from tests.skin_frames import generated  # noqa: E402


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
    rgb = generated(1, 0).image_rgb
    analysis.analyze(rgb, skin_speed.UM_PER_PX)
    skin_speed.stage_times_ms([rgb])
    assert calls["stages"] == calls["analyze"]
    assert len(calls["analyze"]) == 1


@pytest.mark.parametrize(("choice", "tunables", "again"), [
    ("hugetlb", None, "glibc.malloc.hugetlb=1"),
    ("hugetlb", "glibc.malloc.hugetlb=1", None),  # already so: no second start
    ("hugetlb", "glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=1"),
    ("hugetlb", "glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ("plain", None, None),
    ("plain", "glibc.malloc.hugetlb=1", ""),
    ("plain", "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2"),
])
def test_the_malloc_choice_starts_the_script_again_only_when_the_process_runs_otherwise(
    choice: str, tunables: str | None, again: str | None
) -> None:
    """The kiosk's unit runs the daemon with glibc's malloc on huge pages, and the benchmark
    times it so by default; other tunables are kept, and a process already running as chosen
    is not started again (it would loop)."""
    environ = {"PATH": "/usr/bin"} | ({"GLIBC_TUNABLES": tunables} if tunables is not None
                                      else {})
    started = skin_speed.malloc_environment(choice, environ)
    if again is None:
        assert started is None
    else:
        assert started == {"PATH": "/usr/bin", "GLIBC_TUNABLES": again}
        assert skin_speed.malloc_environment(choice, started) is None


def test_the_kiosk_unit_runs_the_daemon_as_the_benchmark_times_it() -> None:
    """deploy/appliance-edge.service sets the tunable the benchmark's default names."""
    unit = (BENCHMARKS.parent / "deploy" / "appliance-edge.service").read_text()
    assert f"Environment=GLIBC_TUNABLES={skin_speed.HUGETLB_TUNABLE}\n" in unit
