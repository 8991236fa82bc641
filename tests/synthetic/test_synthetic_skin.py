"""Synthetic microscope frames: size, sidecar, determinism, presets and age trends."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.synthetic.skin import (
    SyntheticSkin,
    synthetic_frame,
    synthetic_geometry,
    write_frame,
)
from appliance.synthetic.skin_params import PRESETS, sample_params
from appliance.synthetic.skin_truth import ground_truth
from appliance.transport.payloads import TEXTURE_PORE_KEYS


@pytest.fixture(scope="module")
def frame() -> SyntheticSkin:
    return synthetic_frame(7, 0, "normal")


def test_frame_is_a_scalar_sized_rgb_jpeg(frame: SyntheticSkin) -> None:
    assert frame.image_rgb.shape == (960, 1280, 3)
    assert frame.image_rgb.dtype == np.uint8
    assert frame.jpeg[:2] == b"\xff\xd8"
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, frame.image_rgb)
    assert frame.um_per_px == 10.0
    assert frame.preset == "normal"


def test_sidecar_holds_truth_and_params(frame: SyntheticSkin, tmp_path: Path) -> None:
    image_path, sidecar_path = write_frame(frame, tmp_path)
    assert image_path.read_bytes() == frame.jpeg
    assert sidecar_path.name == image_path.stem + ".json"
    sidecar = json.loads(sidecar_path.read_text())
    assert set(sidecar) == {"image", "um_per_px", "seed", "index", "preset", "truth",
                            "truth_definition", "params"}
    # the hill definition's rule for dead ends the camera cannot show apart from a furrow
    assert sidecar["truth_definition"] == {"dead_end_meets_furrow_within_um": 13.0,
                                           "meeting_bridge_is_furrow": True}
    assert sidecar["image"] == image_path.name
    assert list(sidecar["truth"]) == list(TEXTURE_PORE_KEYS)
    assert isinstance(sidecar["truth"]["pore_count"], int)
    assert sidecar["truth"]["pore_count"] > 0
    assert sidecar["params"]["age_years"] == frame.params.age_years
    assert (sidecar["seed"], sidecar["index"], sidecar["preset"]) == (7, 0, "normal")


def test_same_seed_gives_byte_identical_output(frame: SyntheticSkin, tmp_path: Path) -> None:
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        again = synthetic_frame(7, 0, "normal")
    finally:
        cv2.setNumThreads(previous_threads)
    assert again.jpeg == frame.jpeg
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_frame(frame, first)
    write_frame(again, second)
    for name in ("skin-7-00000.jpg", "skin-7-00000.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_different_seeds_and_indices_differ(frame: SyntheticSkin) -> None:
    other_seed = synthetic_geometry(8, 0, "normal")
    other_index = synthetic_geometry(7, 1, "normal")
    assert other_seed[0] != frame.params
    assert other_index[0] != frame.params
    assert ground_truth(other_seed[1], 10.0) != frame.truth


def test_truth_matches_the_geometry_only_path(frame: SyntheticSkin) -> None:
    params, geometry = synthetic_geometry(7, 0, "normal")
    assert params == frame.params
    assert ground_truth(geometry, params.um_per_px) == frame.truth


def _luminance_at(image_rgb: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Mean grey level in a 3x3 window around each (x, y) frame coordinate."""
    grey = cv2.blur(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (3, 3))
    cols = np.clip(points_xy[:, 0].astype(int), 0, grey.shape[1] - 1)
    rows = np.clip(points_xy[:, 1].astype(int), 0, grey.shape[0] - 1)
    return grey[rows, cols]


def test_furrows_and_pores_are_drawn_where_the_truth_has_them(frame: SyntheticSkin) -> None:
    geometry = frame.geometry
    vertices = geometry.vertices_px
    midpoints = vertices[geometry.edges].mean(axis=1)
    centroids = np.array([vertices[list(face)].mean(axis=0) for face in geometry.faces])
    inside = lambda p: (p[:, 0] > 5) & (p[:, 0] < 1275) & (p[:, 1] > 5) & (p[:, 1] < 955)  # noqa: E731
    furrow_grey = _luminance_at(frame.image_rgb, midpoints[inside(midpoints)])
    hill_grey = _luminance_at(frame.image_rgb, centroids[inside(centroids)])
    pore_grey = _luminance_at(frame.image_rgb, geometry.pore_centres_px)
    assert np.median(furrow_grey) < np.median(hill_grey) - 15
    assert np.median(pore_grey) < np.median(furrow_grey)


def test_many_pores_sit_on_furrow_junctions() -> None:
    shares = []
    for index in range(3):
        _, geometry = synthetic_geometry(13, index, "mixed")
        on_vertex = [
            np.min(np.hypot(*(geometry.vertices_px - centre).T)) < 1e-9
            for centre in geometry.pore_centres_px
        ]
        assert np.array_equal(on_vertex, geometry.pore_at_junction)
        shares.append(np.mean(on_vertex))
    assert min(shares) > 0.4


def _mean_truth(preset: str, count: int = 5) -> dict[str, float]:
    truths = [ground_truth(synthetic_geometry(1, i, preset)[1], 10.0) for i in range(count)]
    return {key: float(np.mean([t[key] for t in truths])) for key in TEXTURE_PORE_KEYS}


def test_fine_preset_is_finer_than_coarse() -> None:
    fine, coarse = _mean_truth("fine"), _mean_truth("coarse")
    assert fine["hill_density_per_mm2"] > 1.5 * coarse["hill_density_per_mm2"]
    assert fine["furrow_density_mm_per_mm2"] > 1.2 * coarse["furrow_density_mm_per_mm2"]
    assert fine["hill_mean_area_mm2"] < coarse["hill_mean_area_mm2"]
    assert fine["furrow_mean_width_um"] < coarse["furrow_mean_width_um"]
    assert fine["furrow_anisotropy"] < coarse["furrow_anisotropy"]


def test_age_trends_of_the_parameters() -> None:
    rng = np.random.default_rng(0)
    by_preset = {p: [sample_params(rng, p) for _ in range(200)] for p in PRESETS}
    mean = lambda p, name: np.mean([getattr(s, name) for s in by_preset[p]])  # noqa: E731
    assert mean("fine", "lattice_cell_area_mm2") < mean("normal", "lattice_cell_area_mm2")
    assert mean("normal", "lattice_cell_area_mm2") < mean("coarse", "lattice_cell_area_mm2")
    assert mean("fine", "lattice_aspect_ratio") < mean("coarse", "lattice_aspect_ratio")
    # The secondary direction fades after ~50; pores grow into the 40s.
    assert (
        mean("normal", "secondary_furrow_keep_prob")
        > mean("coarse", "secondary_furrow_keep_prob") + 0.2
    )
    assert mean("fine", "pore_diameter_um") < mean("normal", "pore_diameter_um")
    ages = [s.age_years for s in by_preset["mixed"]]
    assert min(ages) >= 20
    assert max(ages) <= 80
    assert np.ptp(ages) > 50


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of fine, normal, coarse, mixed"):
        synthetic_frame(1, 0, "teen")


def test_a_frame_with_hills_far_from_every_furrow_renders_without_overflow() -> None:
    """Frame 22 of series 12 ("wide") has skin more than 88 edge-softness widths from every
    furrow, where the furrow's logistic edge overflowed float32's exp (a RuntimeWarning on
    every such frame); the edge now stays finite and the pixels are as before."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        frame = synthetic_frame(12, 22, "wide")
    assert frame.image_rgb.shape == (960, 1280, 3)
