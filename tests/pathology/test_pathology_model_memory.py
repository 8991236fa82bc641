"""A tile model's file comes from a folder an operator fills and is small, but a node of a few
bytes can ask ONNX Runtime for any amount of memory, at each run or while the model loads:
such a model is refused as it loads, within the tile models' bound, instead of filling the
pathology server's memory at its first job; a legitimate model's large batch still runs
(appliance/pathology/model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tile_model_helpers import TILE_PX, asking_at_each_run, asking_while_loading

from appliance.config import PathologyConfig
from appliance.pathology.backends import open_backend
from appliance.pathology.model import MAX_RUN_BYTES, MAX_TILES_PER_RUN, ModelError, TileModel

OVER_A_RUN = MAX_RUN_BYTES // 4 + 25_000_000  # floats: 1,119 MiB


def test_a_model_asking_for_more_than_a_run_may_hold_at_each_run_is_refused_as_it_loads(
    tmp_path: Path,
) -> None:
    model = asking_at_each_run(tmp_path / "asks.onnx", OVER_A_RUN // MAX_TILES_PER_RUN + 1,
                               guard=True)
    with pytest.raises(ModelError) as refused:
        open_backend(PathologyConfig(model=str(model), backends=["onnx-cpu"]))
    # on main: loaded, and its first job's batch of 64 tiles asked for 4.7 GB
    assert (f"{model}: the model fails on a test run of {MAX_TILES_PER_RUN} blank {TILE_PX} px "
            "tiles: its ConstantOfShape node asks for 1,119 MiB in one run, more than the 1,024 "
            "MiB a run of a tile model may allocate") in str(refused.value)


def test_a_model_folding_into_a_huge_constant_is_not_folded_while_loading(
    tmp_path: Path,
) -> None:
    floats = 150_000_000  # 572 MiB a constant, under ONNX Runtime's limit for folding one (1 GiB)
    model = asking_while_loading(tmp_path / "folds.onnx", floats)
    assert model.stat().st_size < 2000
    with pytest.raises(ModelError) as refused:
        TileModel(model, require_guard=False)  # on main: loaded, holding its three 572 MiB
    assert "its ConstantOfShape node asks for 572 MiB in one run, more than the 1,024" in str(
        refused.value)


def test_a_batch_larger_than_a_run_may_hold_is_answered_in_runs(tmp_path: Path) -> None:
    per_tile = 4_000_000  # floats: 16 MB a tile, 256 MB a run
    tiles = 80
    assert tiles * per_tile * 4 > MAX_RUN_BYTES
    model = TileModel(asking_at_each_run(tmp_path / "wide.onnx", per_tile),
                      require_guard=False)
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (tiles, TILE_PX, TILE_PX, 3), dtype=np.uint8)
    scores = model.predict(batch)
    assert scores.probability.shape == (tiles,)
    np.testing.assert_array_equal(scores.probability[-5:], model.predict(batch[-5:]).probability)
    assert len(np.unique(scores.probability)) > 1  # each tile its own answer
