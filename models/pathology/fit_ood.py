"""Fit the out-of-distribution guard of a tile model and store it inside the ONNX file.

    .venv/bin/python models/pathology/fit_ood.py --train /tmp/he/train --val /tmp/he/val \
        appliance/shipped/msi-vgg19-w16.onnx appliance/shipped/msi-vgg19-w16.int8.onnx

train.py calls ``fit_and_store`` right after export (the guard is fitted at training time);
run on its own, this script refits the guard of an exported model without retraining it, from
synthetic slide folders of ``appliance synth he`` (training patients for the fit, validation
patients for the slide threshold). Steps (appliance/pathology/ood.py):
1. expose the pooled block features as the output ``features`` (same weights);
2. per-class means + shared covariance of the training tiles' input statistics and features;
3. slide_min_share so that >= 95 % of the validation slides pass.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from export import read_metadata, set_metadata

from appliance.pathology.model import TileModel
from appliance.pathology.ood import (
    METADATA_KEY,
    choose_slide_min_share,
    fit_guard,
    guard_inputs,
)
from appliance.pathology.prepare import TileSettings, prepare_slide, tile_batches

FEATURES = "features"


def add_features_output(path: Path) -> None:
    """Expose ``features``: the global average of each conv block's last activation, concatenated.

    The blocks end where a MaxPool starts, and the last block where the GAP head pools. In an
    INT8 graph those activations are quantized, so they are dequantized first with the scale and
    zero point of the QLinearConv that wrote them. The weights are untouched.
    """
    proto = onnx.load(str(path))
    if any(output.name == FEATURES for output in proto.graph.output):
        return
    nodes = list(proto.graph.node)
    pooled = [node for node in nodes if node.op_type == "ReduceMean"]
    if len(pooled) != 1:
        raise SystemExit(f"{path}: expected one ReduceMean (GAP head), found {len(pooled)}")
    blocks = [node.input[0] for node in nodes
              if node.op_type == "MaxPool" and node.input[0] != pooled[0].input[0]]
    means = [_block_mean(proto, name, index) for index, name in enumerate(blocks)]
    means.append(pooled[0].output[0])
    proto.graph.node.append(helper.make_node("Concat", means, [FEATURES], axis=1))
    proto.graph.output.append(
        helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", None])
    )
    onnx.save(proto, str(path))


def _block_mean(proto: onnx.ModelProto, tensor: str, index: int) -> str:
    """Nodes that average one activation over space (dequantizing it first if needed)."""
    writer = next(node for node in proto.graph.node if tensor in node.output)
    source = tensor
    if writer.op_type == "QLinearConv":
        source = f"ood_block{index}_float"
        proto.graph.node.append(helper.make_node(
            "DequantizeLinear", [tensor, writer.input[6], writer.input[7]], [source]))
    pooled, mean = f"ood_block{index}_pooled", f"ood_block{index}_mean"
    proto.graph.node.append(helper.make_node("GlobalAveragePool", [source], [pooled]))
    proto.graph.node.append(helper.make_node("Flatten", [pooled], [mean], axis=1))
    return mean


def model_features(model: TileModel, tiles: np.ndarray) -> np.ndarray:
    """Penultimate features of uint8 tiles (N x px x px x 3), in batches of 256."""
    parts = []
    for start in range(0, len(tiles), 256):
        batch = tiles[start : start + 256].transpose(0, 3, 1, 2).astype(np.float32)
        parts.append(model.session.run([FEATURES], {model.input_name: batch})[0])
    return np.concatenate(parts)


def fit_and_store(
    path: Path, train_tiles: np.ndarray, train_labels: np.ndarray,
    val_tiles: np.ndarray, val_owner: np.ndarray,
) -> dict[str, float]:
    """Fit the guard on training tiles, pick the slide cut on validation slides, store it."""
    add_features_output(path)
    model = TileModel(path, provider="cpu", require_guard=False)
    train_described = guard_inputs(train_tiles, model_features(model, train_tiles))
    guard = fit_guard(train_described, train_labels)
    scores = guard.scores(guard_inputs(val_tiles, model_features(model, val_tiles)))
    shares = np.array([guard.in_distribution_share(scores[val_owner == owner])
                       for owner in np.unique(val_owner)])
    guard = choose_slide_min_share(guard, shares)
    set_metadata(path, {**read_metadata(path), METADATA_KEY: guard.to_metadata()})
    return {"slide_min_share": guard.slide_min_share,
            "validation_pass_rate": float(np.mean([guard.supported(s) for s in shares])),
            "validation_slides": float(len(shares))}


def folder_tiles(
    folder: Path, settings: TileSettings, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to limit tiles per slide of a cohort folder: tiles, MSI flag, slide index."""
    with (folder / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    tiles, labels, owners = [], [], []
    for index, row in enumerate(rows):
        prepared = prepare_slide(folder / f"{row['slide']}.jpg", float(row["um_per_px"]), settings)
        try:
            rng = np.random.default_rng(index)
            chosen = rng.choice(len(prepared.tiles), min(limit, len(prepared.tiles)), replace=False)
            prepared.tiles = [prepared.tiles[i] for i in sorted(chosen)]
            pixels = np.concatenate([p for _, p in tile_batches(prepared, settings, 256)])
        finally:
            prepared.close()
        tiles.append(pixels)
        labels.append(np.full(len(pixels), row["label"] == "MSI"))
        owners.append(np.full(len(pixels), index))
    return np.concatenate(tiles), np.concatenate(labels), np.concatenate(owners)


def main() -> int:
    """Refit the guard of each given model from synthetic training and validation folders."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="ONNX tile models to update")
    parser.add_argument("--train", type=Path, required=True, help="training-patient slides")
    parser.add_argument("--val", type=Path, required=True, help="validation-patient slides")
    parser.add_argument("--tiles-per-slide", type=int, default=24)
    args = parser.parse_args()
    info = TileModel(args.models[0], provider="cpu", require_guard=False).info
    settings = TileSettings(info.tile_px, info.tile_um, reference=info.stain_reference)
    train_tiles, train_labels, _ = folder_tiles(args.train, settings, args.tiles_per_slide)
    val_tiles, _, val_owner = folder_tiles(args.val, settings, 10_000)
    print(f"{len(train_tiles)} training tiles, {len(val_tiles)} validation tiles", flush=True)
    for path in args.models:
        print(path, fit_and_store(path, train_tiles, train_labels, val_tiles, val_owner))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
