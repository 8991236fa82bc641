"""benchmarks/skin_common.py's truth_of: a sidecar written before dead ends that meet a furrow
split hills (no ``truth_definition``) is read with the truth recomputed from the frame's
geometry; a current one, or one of another renderer, as it stands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from skin_common import truth_of  # noqa: E402

from appliance.synthetic.skin import TRUTH_DEFINITION, synthetic_geometry  # noqa: E402
from appliance.synthetic.skin_truth import ground_truth  # noqa: E402

FRAME = (1, 0, "wide")  # draws 367 dead ends, about half of them a few µm short of a furrow


def _sidecar(folder: Path, truth: dict[str, float], **extra: object) -> Path:
    image = folder / "skin-1-00000.jpg"
    seed, index, preset = FRAME
    sidecar = {"image": image.name, "um_per_px": 9.35, "seed": seed, "index": index,
               "preset": preset, "truth": truth, **extra}
    image.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return image


@pytest.fixture(scope="module")
def current_truth() -> dict[str, float]:
    params, geometry = synthetic_geometry(*FRAME)
    return ground_truth(geometry, params.um_per_px)


def test_an_old_sidecar_is_read_with_the_truth_of_the_current_definition(
        tmp_path: Path, current_truth: dict[str, float]) -> None:
    old = {**current_truth, "hill_density_per_mm2": 1.0}
    assert truth_of(_sidecar(tmp_path, old)) == current_truth


def test_a_current_sidecar_is_read_as_it_stands(tmp_path: Path,
                                                current_truth: dict[str, float]) -> None:
    written = {**current_truth, "hill_density_per_mm2": 1.0}
    image = _sidecar(tmp_path, written, truth_definition=dict(TRUTH_DEFINITION))
    assert truth_of(image) == written


def test_a_sidecar_of_another_renderer_is_read_as_it_stands(tmp_path: Path) -> None:
    image = tmp_path / "blind-00000.jpg"
    image.with_suffix(".json").write_text(json.dumps({"truth": {"hill_density_per_mm2": 3}}),
                                          encoding="utf-8")
    assert truth_of(image) == {"hill_density_per_mm2": 3.0}
