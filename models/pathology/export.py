"""ONNX export (dynamic batch, metadata) and INT8 static quantization of the tile classifier.

Run as a library from train.py and benchmarks/pathology_cpu.py, or on its own to export a
randomly initialised model for speed tests:
    python models/pathology/export.py --out vgg19.onnx --width 1 --tile-px 224 --int8
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vgg import VGG19, ExportWrapper

OPSET = 17


def export_onnx(model: VGG19, path: Path, tile_px: int, metadata: dict[str, str]) -> Path:
    """Write the model as ONNX with a dynamic batch axis and the given metadata."""
    wrapper = ExportWrapper(model).eval()
    outputs = ["probabilities"] + (["cam"] if model.head == "gap" else [])
    dummy = torch.zeros(1, 3, tile_px, tile_px)
    axes = {name: {0: "batch"} for name in ["tiles", *outputs]}
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), str(path), input_names=["tiles"], output_names=outputs,
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    set_metadata(path, metadata)
    return path


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the ONNX file's metadata_props with the given key/value strings."""
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file."""
    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


class _TileReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration tiles (N x 3 x H x W float32, 0-255) in small batches."""

    def __init__(self, tiles: np.ndarray, batch: int = 16) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"tiles": batch.astype(np.float32)}


def quantize_int8(float_path: Path, int8_path: Path, calibration_tiles: np.ndarray) -> Path:
    """Static INT8 (QOperator: QLinearConv/QLinearMatMul, u8 activations, s8 weights)."""
    prepared = int8_path.with_suffix(".pre.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(int8_path), _TileReader(calibration_tiles),
        quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()
    metadata = read_metadata(float_path)
    metadata["version"] = metadata.get("version", "0") + "+int8"
    metadata["quantization"] = "int8 static QOperator u8/s8 per-channel, MinMax calibration"
    set_metadata(int8_path, metadata)
    return int8_path


def main() -> int:
    """Export a randomly initialised VGG19 (speed tests); optional INT8 on random tiles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--head", choices=["paper", "gap"], default="paper")
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = VGG19(width=args.width, head=args.head).eval()
    metadata = {
        "name": "vgg19-random", "version": "0", "labels": json.dumps(["MSS", "MSI"]),
        "tile_px": str(args.tile_px), "tile_um": "256",
    }
    export_onnx(model, args.out, args.tile_px, metadata)
    if args.int8:
        tiles = np.random.default_rng(0).uniform(0, 255, (16, 3, args.tile_px, args.tile_px))
        quantize_int8(args.out, args.out.with_suffix(".int8.onnx"), tiles.astype(np.float32))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
