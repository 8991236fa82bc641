"""The out-of-distribution guard: fitted description, stored in the model, slide verdicts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from appliance.cli import main
from appliance.pathology.model import ModelError, TileModel
from appliance.pathology.ood import (
    choose_slide_min_share,
    fit_guard,
    guard_from_metadata,
)
from appliance.pathology.ood_stats import optical_density_statistics
from appliance.pathology.verdict import UNSUPPORTED
from appliance.synthetic.he import SlideSpec, render_slide
from tests.pathology_helpers import results_rows
from tests.shared_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "appliance" / "shipped" / "msi-vgg19-w16.onnx"
DEMO_INT8 = REPO / "appliance" / "shipped" / "msi-vgg19-w16.int8.onnx"


def test_guard_scores_typical_rows_high_and_far_rows_zero() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 500)
    rows = rng.normal(size=(1000, 6)) + labels[:, None] * 3.0
    guard = fit_guard(rows, labels)
    fresh = rng.normal(size=(400, 6)) + np.repeat([0, 1], 200)[:, None] * 3.0
    assert (guard.scores(fresh) >= guard.tile_min_score).mean() > 0.95
    assert guard.scores(np.full((3, 6), 40.0)).tolist() == [0.0, 0.0, 0.0]
    again = guard_from_metadata(guard.to_metadata())
    assert np.allclose(again.scores(fresh), guard.scores(fresh), atol=1e-4)


def test_guard_distance_is_the_mahalanobis_distance_to_the_nearest_class_mean() -> None:
    rng = np.random.default_rng(1)
    guard = fit_guard(rng.normal(size=(300, 40)), np.repeat([0, 1], 150))
    rows = rng.normal(size=(25, 40)) * 2.0
    expected = np.sqrt(np.min([[(row - mean) @ guard.precision @ (row - mean)
                                for mean in guard.class_means] for row in rows], axis=1))
    assert np.allclose(guard.distances(rows), expected, rtol=1e-12)
    assert guard.distances(np.zeros((0, 40))).shape == (0,)


@pytest.mark.parametrize("shape", [(9, 224, 224, 3), (4, 5, 7, 3), (1, 1, 1, 3)])
def test_density_statistics_are_the_float64_mean_sd_and_numpy_percentiles(
    shape: tuple[int, ...],
) -> None:
    rng = np.random.default_rng(2)
    tiles = rng.integers(0, 256, shape, dtype=np.uint8)
    tiles[0, : shape[1] // 2 + 1] = (200, 17, 255)  # many ties, and the end levels
    density = (-np.log((tiles.astype(np.float32) + 1.0) / 256.0)).astype(np.float64)
    flat = density.reshape(len(tiles), -1, 3)
    percentiles = np.quantile(flat, [0.1, 0.5, 0.9], axis=1).transpose(1, 0, 2)
    expected = np.concatenate([flat.mean(axis=1), flat.std(axis=1),
                               percentiles.reshape(len(tiles), 9)], axis=1)
    assert np.allclose(optical_density_statistics(tiles), expected, rtol=1e-12, atol=1e-12)


def test_slide_threshold_lets_95_percent_of_held_out_slides_pass() -> None:
    guard = fit_guard(np.random.default_rng(1).normal(size=(200, 3)), np.zeros(200, int))
    shares = np.linspace(0.05, 1.0, 40)  # one in 20 slides is poor, the rest spread out
    chosen = choose_slide_min_share(guard, shares)
    assert np.mean([chosen.supported(s) for s in shares]) >= 0.95
    assert chosen.slide_min_share <= 0.5
    mostly_good = choose_slide_min_share(guard, np.full(20, 0.99))
    assert mostly_good.slide_min_share == 0.5  # "mostly unlike" never needs more than half


def test_shipped_models_carry_the_guard() -> None:
    for path in (DEMO, DEMO_INT8):
        model = TileModel(path)
        assert model.info.guard is not None
        assert "features" in model.outputs
        assert model.info.guard.slide_min_share == pytest.approx(0.5)


def test_model_without_guard_is_refused_with_the_fix(tmp_path: Path) -> None:
    proto = onnx.load(str(DEMO))
    kept = [entry for entry in proto.metadata_props if entry.key != "ood"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelError, match=r"no out-of-distribution guard.*fit_ood\.py"):
        TileModel(bare)
    proto.metadata_props.add(key="ood", value='{"kind": "mahalanobis-stats-blocks/1"}')
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(ModelError, match="unreadable OOD guard"):
        TileModel(broken)


def test_held_out_synthetic_slides_are_scored_not_flagged(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    for seed, label in ((901, "MSI"), (902, "MSS")):  # seeds no training slide used
        spec = SlideSpec(f"held{seed}", f"H{seed}", label, "biopsy", 1, 0.5, seed=seed)
        Image.fromarray(render_slide(spec)).save(folder / f"held{seed}.jpg", quality=88)
    out = tmp_path / "out"
    assert main(["pathology", "run", str(folder), "--out", str(out), "--um-per-px", "1.0",
                 "--no-pictures"]) == 0
    for row in results_rows(out).values():
        assert row["label"] in ("MSI", "MSS")
        assert float(row["in_distribution_share"]) >= 0.9
    tiles = list(csv.DictReader((out / "tiles" / "held901.csv").open()))
    assert len(tiles) == int(results_rows(out)["held901"]["tile_count"])
    assert all(0.0 <= float(tile["in_distribution"]) <= 1.0 for tile in tiles)


def test_skin_photo_submitted_as_a_slide_is_unsupported(tmp_path: Path) -> None:
    assert main(["synth", "skin", "--out", str(tmp_path / "skin"), "--count", "1",
                 "--workers", "1"]) == 0
    photo = next((tmp_path / "skin").glob("*.jpg"))
    out = tmp_path / "out"
    main(["pathology", "submit", str(photo), "--um-per-px", "0.5", "--out", str(out),
          "--no-pictures"])
    row = results_rows(out)[photo.stem]
    assert row["error"] == ""
    assert row["label"] == UNSUPPORTED


def test_int8_model_flags_the_real_tiles_too(tmp_path: Path) -> None:
    out = tmp_path / "real"
    main(["pathology", "run", str(SHARED_DATA / "he-tiles-crc-val-7k"), "--out", str(out),
          "--um-per-px", "0.5", "--tile-um", "112", "--no-pictures", "--model", str(DEMO_INT8)])
    scored = [row for row in results_rows(out).values() if not row["error"]]
    assert len(scored) >= 28
    assert {row["label"] for row in scored} == {UNSUPPORTED}
