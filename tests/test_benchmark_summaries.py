"""benchmarks/skin_accuracy.py: the pore count's error apart for frames with few and many pores,
and on the frames where it is validated."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from skin_accuracy import (  # noqa: E402
    SWEEP_UM_PER_PX,
    around,
    count_steps,
    pore_count_by_truth,
    sweep_grids,
    where_validated,
)


def _rows(pairs: list[tuple[float, float]]) -> tuple[list[dict[str, float]],
                                                       list[dict[str, float]]]:
    return ([{"pore_count": m} for m, _ in pairs], [{"pore_count": t} for _, t in pairs])


def test_frames_with_few_pores_are_read_in_pores_and_the_others_relatively() -> None:
    measured, truths = _rows([(3, 2), (0, 1), (4, 4), (2, 0), (1, 0), (9, 10), (24, 20),
                              (40, 40)])
    summary = pore_count_by_truth(measured, truths)
    assert summary["frames_with_few"] == 5
    assert summary["few_median_abs_error_pores"] == 1.0  # |errors| 1, 1, 0, 2, 1
    assert summary["frames_without_pores"] == 2
    assert summary["median_pores_counted_where_none"] == 1.5
    assert summary["frames_with_many"] == 3
    assert summary["many_median_abs_rel_error"] == 0.1  # 0.1, 0.2, 0.0


def test_a_set_without_few_pore_frames_reports_only_the_relative_errors() -> None:
    summary = pore_count_by_truth(*_rows([(11, 10), (30, 30)]))
    assert summary["frames_with_few"] == 0
    assert "few_median_abs_error_pores" not in summary
    assert summary["many_p90_abs_rel_error"] == 0.09


def test_the_pore_count_is_also_read_on_the_frames_where_it_is_validated() -> None:
    measured, truths = _rows([(30, 20), (11, 10), (8, 10), (3, 0), (20, 20)])
    summary = where_validated(measured, truths, [False, True, True, True, False])
    assert summary["frames_not_validated"] == 2
    assert summary["share_not_validated"] == 0.4
    assert summary["frames_validated"] == 3
    assert summary["median_abs_rel_error"] == 0.15  # 0.1 and 0.2; the frame without pores left out
    assert summary["median_signed_rel_error"] == -0.05


def test_the_mean_pore_diameter_is_read_on_the_frames_where_it_is_validated() -> None:
    measured = [{"pore_mean_diameter_um": d} for d in (200.0, 110.0, 0.0)]
    truths = [{"pore_mean_diameter_um": d} for d in (100.0, 100.0, 100.0)]
    summary = where_validated(measured, truths, [False, True, True], "pore_mean_diameter_um")
    assert summary["frames_not_validated"] == 1
    assert summary["frames_validated"] == 2
    assert summary["median_abs_rel_error"] == 0.55  # 0.1 and 1.0 (nothing counted there)
    assert summary["median_signed_rel_error"] == -0.45


def test_calibration_steps_are_relative_between_many_pores_and_in_pores_below() -> None:
    relative, in_pores = count_steps([20, 25, 25, 9, 3, 7])
    assert relative == [0.25, 0.0]  # 20 -> 25, 25 -> 25
    assert in_pores == [16.0, 6.0, 4.0]  # 25 -> 9, 9 -> 3, 3 -> 7


def test_sweep_grids_interleave_calibrations_5_percent_apart() -> None:
    grids = sweep_grids(5)
    assert grids[0] == SWEEP_UM_PER_PX
    every = sorted(um for grid in grids for um in grid)
    assert every[0] == 7.0
    assert every[-1] <= SWEEP_UM_PER_PX[-1] * 1.0001
    assert all(abs(b / a - 1.05 ** 0.2) < 1e-9 for a, b in itertools.pairwise(every))  # 1 %
    for grid in grids:
        assert all(abs(b / a - 1.05) < 1e-9 for a, b in itertools.pairwise(grid))


def test_a_frame_is_swept_around_its_own_scale_as_a_mixed_frame_is_around_10() -> None:
    grid = around(SWEEP_UM_PER_PX, 12.6)
    assert abs(grid[0] - 0.7 * 12.6) < 1e-9
    assert abs(grid[-1] / 12.6 - SWEEP_UM_PER_PX[-1] / 10.0) < 1e-9
    assert all(abs(b / a - 1.05) < 1e-9 for a, b in itertools.pairwise(grid))
    assert all(abs(a - b) < 1e-12 for a, b in zip(around(SWEEP_UM_PER_PX, 10.0),
                                                   SWEEP_UM_PER_PX, strict=True))
