"""The tile classifier: an ONNX model run in batches by ONNX Runtime, CUDA when present.

The model takes ``tiles`` (N x 3 x H x W float32, RGB 0-255; ImageNet scaling is inside the
graph) and returns ``probabilities`` (N x 2, softmax over the labels in its metadata) and,
for models with a global-average-pooling head, ``cam`` (N x h x w, the class activation map of
the positive label) and ``features`` (N x d, the pooled block features that the
out-of-distribution guard reads; appliance/pathology/ood.py). Metadata (ONNX metadata_props)
carries labels, tile size in px and µm, the stain normalisation reference, the decision
threshold, the version and the out-of-distribution guard (``ood``).

A model file comes from a folder an operator fills, and a node of a few bytes may ask for any
amount of memory (appliance/inference/loader.py). So a tile model's runs allocate from a CPU
arena of MAX_RUN_BYTES, fold no constants while loading, and take at most MAX_TILES_PER_RUN
tiles each (a batch of any size is run in parts); a model is run once on a full run of blank
tiles as it loads, so one that asks for more is refused before any job reaches it. The bound
is sized for the architecture the server is for: a full-width VGG19 on 224 px tiles holds
about 31 MiB a tile (244 MiB for 8 tiles, measured with the arena's own accounting), so a run
of 16 fits with room to spare; the shipped 64 px demo model needs 25 MiB for 64 tiles, its
INT8 variant 9 MiB. On CUDA the activations lie in the GPU's memory, which this does not bound
(a request beyond it fails there, without touching the host's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from appliance import safejson
from appliance.inference.loader import ModelError, open_session
from appliance.pathology.ood import (
    METADATA_KEY,
    DistributionGuard,
    GuardError,
    guard_from_metadata,
    guard_inputs,
)
from appliance.pathology.stain import REFERENCE, StainModel

__all__ = ["ModelError", "ModelInfo", "TileModel", "TileScores", "choose_providers"]

Provider = Literal["auto", "cpu", "cuda"]
REQUIRED_METADATA = ("labels", "tile_px", "tile_um", "version")
MAX_MODEL_BYTES = 2_000_000_000
MAX_TILES_PER_RUN = 16
MAX_RUN_BYTES = 1024 * 1024 * 1024
# tiles are made at the metadata's size before any run (4,096 waiting tiles of 512 px: 3.2 GB)
MIN_TILE_PX, MAX_TILE_PX = 16, 512


@dataclass(frozen=True)
class TileScores:
    """Model output for a batch: positive-class probability, CAMs and in-distribution scores."""

    probability: np.ndarray
    cam: np.ndarray | None
    in_distribution: np.ndarray | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the model's metadata promises about its input and output."""

    name: str
    version: str
    labels: tuple[str, str]
    tile_px: int
    tile_um: float
    threshold: float
    stain_reference: StainModel
    guard: DistributionGuard | None = None

    @property
    def um_per_px(self) -> float:
        """Resolution of the tiles the model expects."""
        return self.tile_um / self.tile_px


def choose_providers(provider: Provider) -> list[str]:
    """ONNX Runtime providers: CUDA first when asked for or available (auto), CPU always."""
    available = ort.get_available_providers()
    if provider == "cuda" and "CUDAExecutionProvider" not in available:
        raise ModelError(
            "--provider cuda: this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use cpu"
        )
    if provider != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TileModel:
    """A loaded tile classifier; ``predict`` takes uint8 RGB tiles in batches of any size."""

    def __init__(
        self, path: Path, provider: Provider = "auto", threads: int = 0, require_guard: bool = True,
        fix_hint: str = "pass --model FILE, or rebuild it with models/pathology/export.py",
    ) -> None:
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = open_session(
            path,
            max_bytes=MAX_MODEL_BYTES,
            providers=choose_providers(provider),
            options=options,
            fix_hint=fix_hint,
            run_bytes=MAX_RUN_BYTES,
        )
        self.info = _read_info(path, self.session.get_modelmeta().custom_metadata_map)
        self._check_input()
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.has_cam = "cam" in self.outputs
        if require_guard:
            self._check_guard()
        self._warm_up()

    def _warm_up(self) -> None:
        """Run once on a full run of blank tiles: a model asking for more than a run may hold,
        or answering what scoring cannot read, is refused here, and the first job does not pay
        for lazy initialisation."""
        size = self.info.tile_px
        blank = np.zeros((MAX_TILES_PER_RUN, size, size, 3), np.uint8)
        try:
            named = self._answers(blank)
        except Exception as exc:
            raise ModelError(f"{self.path}: the model fails on a test run of "
                             f"{MAX_TILES_PER_RUN} blank {size} px tiles: {_said(exc)}") from exc
        problem = (_answer_problem(named, MAX_TILES_PER_RUN, size)
                   or self._guard_problem(blank, named))
        if problem is not None:
            raise ModelError(f"{self.path}: on a test run of {MAX_TILES_PER_RUN} blank tiles "
                             f"{problem}; scoring reads N x 2 probabilities (and N CAMs, N "
                             "guard features) for N tiles; export it with "
                             "models/pathology/export.py")

    def _guard_problem(self, tiles_rgb: np.ndarray, named: dict[str, np.ndarray]) -> str | None:
        guard, features = self.info.guard, named.get("features")
        if guard is None or features is None:
            return None
        try:
            guard.scores(guard_inputs(tiles_rgb, features))
        except GuardError as exc:
            return f"its features do not fit its guard ({exc})"
        return None

    def _check_guard(self) -> None:
        """A clinical run needs the guard and the features it reads."""
        if self.info.guard is None or "features" not in self.outputs:
            raise ModelError(
                f"{self.path}: the model carries no out-of-distribution guard (metadata "
                f"'{METADATA_KEY}' and output 'features'); fit one with "
                "models/pathology/fit_ood.py"
            )

    def _check_input(self) -> None:
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4 or shape[1] != 3:
            raise ModelError(
                f"{self.path}: input must be one N x 3 x H x W tensor, found "
                f"{[(i.name, i.shape) for i in inputs]}; export the model with build_model"
            )
        size = self.info.tile_px
        if any(isinstance(dim, int) and dim != size for dim in shape[2:]):
            raise ModelError(
                f"{self.path}: the model's input is {shape[2]}x{shape[3]} px but its metadata "
                f"says tiles are {size} px; re-export it so both agree"
            )
        if isinstance(shape[0], int):
            raise ModelError(
                f"{self.path}: the model's input takes exactly {shape[0]} tiles a run; tiles "
                f"come in runs of 1 to {MAX_TILES_PER_RUN}: export it with a dynamic batch axis "
                "(models/pathology/export.py does)"
            )
        self.input_name = inputs[0].name

    def run(self, tiles_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs by name for N x tile_px x tile_px x 3 uint8 tiles, run
        MAX_TILES_PER_RUN tiles at a time."""
        try:
            return self._answers(tiles_rgb)
        except Exception as exc:  # shape or type mismatch, or memory, reported by the runtime
            raise ModelError(f"{self.path}: inference failed on {len(tiles_rgb)} tiles: "
                             f"{_said(exc)}") from exc

    def _answers(self, tiles_rgb: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(tiles_rgb.transpose(0, 3, 1, 2), dtype=np.float32)
        per_run = MAX_TILES_PER_RUN
        parts = [self.session.run(None, {self.input_name: batch[start:start + per_run]})
                 for start in range(0, max(len(batch), 1), per_run)]
        results = parts[0] if len(parts) == 1 else [
            np.concatenate(outputs) for outputs in zip(*parts, strict=True)]
        return dict(zip(self.outputs, results, strict=True))

    def predict(self, tiles_rgb: np.ndarray) -> TileScores:
        """Scores for N x tile_px x tile_px x 3 uint8 tiles."""
        named = self.run(tiles_rgb)
        probability = np.asarray(named["probabilities"], np.float32)[:, 1]
        cam = named.get("cam")
        features = named.get("features")
        guard = self.info.guard
        in_distribution = None
        if guard is not None and features is not None:
            in_distribution = guard.scores(guard_inputs(tiles_rgb, features))
        return TileScores(
            probability, None if cam is None else np.asarray(cam, np.float32), in_distribution
        )


def _answer_problem(named: dict[str, np.ndarray], count: int, tile_px: int) -> str | None:
    """What is wrong with a model's outputs for ``count`` tiles of ``tile_px``, or None."""
    if "probabilities" not in named:
        return f"the model has no output 'probabilities' (its outputs: {', '.join(named)})"
    shapes = {name: np.shape(value) for name, value in named.items()}
    if shapes["probabilities"] != (count, 2):
        return f"its probabilities are of shape {list(shapes['probabilities'])}, not [{count}, 2]"
    for name, dimensions in (("cam", 3), ("features", 2)):
        shape = shapes.get(name)
        if shape is not None and (len(shape) != dimensions or shape[0] != count):
            return f"its {name} are of shape {list(shape)}, not {count} x {dimensions - 1} axes"
    cam = shapes.get("cam")
    if cam is not None and max(cam[1:]) > tile_px:  # each kept with its slide's decisive tiles
        return f"its CAMs are {cam[1]} x {cam[2]} maps, finer than the {tile_px} px tiles they map"
    for name in ("probabilities", "cam", "features"):  # else drawn, or read as out of range,
        values = named.get(name)                       # unsaid, on every slide
        if values is not None and not np.isfinite(np.asarray(values, np.float64)).all():
            return f"its {name} hold values that are not finite (NaN or infinite)"
    return None


def _said(exc: Exception) -> str:
    """ONNX Runtime's reason on one line; for an allocation the arena refused, what the node
    asked and the bound."""
    text = " ".join(str(exc).split()) or repr(exc)
    asked = re.search(r"running (\S+) node.*smaller than requested bytes of (\d+)", text)
    if asked is None:
        return text[:400]
    return (f"its {asked[1]} node asks for {int(asked[2]) / 2**20:,.0f} MiB in one run, more "
            f"than the {MAX_RUN_BYTES // 2**20:,} MiB a run of a tile model may allocate")


def _read_info(path: Path, metadata: dict[str, str]) -> ModelInfo:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing and "feature_names" in metadata:  # the shipped skin-texture-grade, say
        raise ModelError(
            f"{path}: a skin texture model (for the kiosk's model.path or `appliance models "
            "show`), not a pathology tile model: it grades skin measurements, not H&E tiles"
        )
    if missing:
        raise ModelError(
            f"{path}: metadata lacks {', '.join(missing)}; export it with "
            "models/pathology/export.py, which records them"
        )
    try:
        labels = safejson.loads(metadata["labels"])
        reference = safejson.loads(metadata.get("stain_reference", "null"))
        info = ModelInfo(
            name=metadata.get("name", path.stem),
            version=metadata["version"],
            labels=(str(labels[0]), str(labels[1])),
            tile_px=int(metadata["tile_px"]),
            tile_um=float(metadata["tile_um"]),
            threshold=float(metadata.get("threshold", "0.5")),
            stain_reference=REFERENCE if reference is None else StainModel(
                np.array(reference["stain_od"]).reshape(3, 2),
                np.array(reference["max_concentration"]),
            ),
            guard=guard_from_metadata(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None,
        )
    except GuardError as exc:
        raise ModelError(f"{path}: {exc}; refit it with models/pathology/fit_ood.py") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"{path}: unreadable metadata ({exc}); re-export the model") from exc
    if not MIN_TILE_PX <= info.tile_px <= MAX_TILE_PX or info.tile_um <= 0:
        raise ModelError(f"{path}: metadata tile size {info.tile_px} px / {info.tile_um} µm; "
                         f"a tile model here takes tiles of {MIN_TILE_PX} to {MAX_TILE_PX} px")
    return info
