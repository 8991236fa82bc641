"""Inference backends for the pathology server, chosen by config with automatic fallback.

Every backend loads the same trained weights, the float32 ONNX file (or its INT8 variant for
``onnx-cpu`` when one is configured), and returns per tile the MSI probability, the CAM and the
pooled features the out-of-distribution guard reads:
- ``torch-cuda``: PyTorch on the GPU, fp16 or bf16, channels-last, optional ``torch.compile``;
- ``onnx-cuda``: ONNX Runtime's CUDA provider;
- ``onnx-cpu``: ONNX Runtime on the CPU (INT8 when ``int8_model`` is set, else float32);
- ``torch-cpu``: PyTorch on the CPU (float32, or bf16 when asked).
The first backend of ``pathology.backends`` that loads is used; each refusal is logged, and the
chosen backend's settings travel with every result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from appliance.config import PathologyConfig
from appliance.pathology.model import MAX_TILES_PER_RUN, ModelError, ModelInfo, TileModel

log = logging.getLogger(__name__)
CONFIG_HINT = ("check pathology.model and pathology.int8_model (a relative path is the config "
               "file's folder's)")


@dataclass(frozen=True)
class ModelOutputs:
    """One batch's outputs: probability per tile, CAMs and guard features."""

    probability: np.ndarray
    cam: np.ndarray | None
    features: np.ndarray | None


class TileBackend(Protocol):
    """What the server needs of a backend."""

    info: ModelInfo
    settings: dict[str, Any]

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        """Outputs for N x px x px x 3 uint8 tiles."""
        ...


@dataclass
class OnnxBackend:
    """ONNX Runtime on CPU or CUDA."""

    path: Path
    provider: str
    threads: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model = TileModel(self.path, provider=self.provider,  # type: ignore[arg-type]
                               threads=self.threads, fix_hint=CONFIG_HINT)
        providers = self.model.session.get_providers()
        if self.provider == "cuda" and "CUDAExecutionProvider" not in providers:
            raise ModelError(f"{self.path}: onnx-cuda asked for but providers are {providers}")
        self.info = self.model.info
        self.settings = {"backend": f"onnx-{self.provider}", "model": str(self.path),
                         "providers": providers, "threads": self.threads,
                         "quantization": "int8" if "int8" in self.info.version else "float32"}

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        """Run the ONNX session on a batch."""
        named = self.model.run(tiles_rgb)
        return ModelOutputs(named["probabilities"][:, 1], named.get("cam"), named.get("features"))


class TorchBackend:
    """PyTorch running the ONNX graph's weights: CUDA with fp16/bf16, or CPU in float32."""

    def __init__(self, path: Path, device: str, config: PathologyConfig) -> None:
        import torch  # noqa: PLC0415 - optional: the server runs without torch

        from appliance.pathology.torch_graph import OnnxGraphModule  # noqa: PLC0415 - needs torch

        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("torch-cuda: no CUDA device visible to PyTorch")
        self.info = TileModel(path, provider="cpu", fix_hint=CONFIG_HINT).info
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = _torch_dtype(torch, config.precision, device)
        self.channels_last = config.channels_last
        module = OnnxGraphModule(path).to(self.device, self.dtype).eval()
        if self.channels_last:
            # the 4-D conv weights too; torch accepts memory_format here, its stubs do not say so
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module: Any = torch.compile(module) if config.compile else module
        self.settings = {"backend": f"torch-{device}", "model": str(path),
                         "dtype": str(self.dtype).removeprefix("torch."),
                         "channels_last": self.channels_last, "compile": config.compile,
                         "device_name": torch.cuda.get_device_name(self.device)
                         if device == "cuda" else "cpu"}
        # warm up (and compile) before the first job: one tile of the model's size
        self.infer(np.zeros((1, self.info.tile_px, self.info.tile_px, 3), np.uint8))

    def infer(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        """Outputs for a batch (NHWC uint8): on the GPU in one run, on the CPU in runs of
        MAX_TILES_PER_RUN tiles, the size whose memory the model's warm-up bounded."""
        if self.device.type != "cpu" or len(tiles_rgb) <= MAX_TILES_PER_RUN:
            return self._run(tiles_rgb)
        return _joined([self._run(tiles_rgb[start:start + MAX_TILES_PER_RUN])
                        for start in range(0, len(tiles_rgb), MAX_TILES_PER_RUN)])

    def _run(self, tiles_rgb: np.ndarray) -> ModelOutputs:
        """Upload tiles (NHWC uint8), run them, bring back float32 outputs."""
        torch = self.torch
        with torch.inference_mode():
            batch = torch.from_numpy(tiles_rgb).to(self.device, non_blocking=True)
            batch = batch.permute(0, 3, 1, 2).to(self.dtype)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            named = self.module(batch)
            out = {name: value.float().cpu().numpy() for name, value in named.items()}
        return ModelOutputs(out["probabilities"][:, 1], out.get("cam"), out.get("features"))


def _joined(parts: list[ModelOutputs]) -> ModelOutputs:
    """One batch's outputs from those of its runs, in order."""
    def joined(values: list[np.ndarray | None]) -> np.ndarray | None:
        present = [value for value in values if value is not None]
        return np.concatenate(present) if present else None

    return ModelOutputs(np.concatenate([part.probability for part in parts]),
                        joined([part.cam for part in parts]),
                        joined([part.features for part in parts]))


def _torch_dtype(torch: Any, precision: str, device: str) -> Any:
    """fp16/bf16/fp32 on CUDA; on the CPU bf16 or fp32 (CPU half-precision convs are slow)."""
    if device == "cpu" and precision == "fp16":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def open_backend(config: PathologyConfig) -> TileBackend:
    """The first configured backend that loads; ModelError naming every refusal otherwise."""
    refusals = []
    for name in config.backends:
        try:
            backend = _open(name, config)
        except (ModelError, ImportError, RuntimeError, ValueError) as exc:
            log.warning("backend %s unavailable: %s", name, exc)
            refusals.append(f"{name}: {exc}")
            continue
        log.info("pathology backend %s", backend.settings)
        return backend
    raise ModelError("no configured backend could load the model: " + "; ".join(refusals))


def _open(name: str, config: PathologyConfig) -> TileBackend:
    model = Path(config.model)
    if name == "onnx-cpu":
        path = Path(config.int8_model) if config.int8_model else model
        return OnnxBackend(path, "cpu", config.cpu_threads)
    if name == "onnx-cuda":
        return OnnxBackend(model, "cuda")
    return TorchBackend(model, name.removeprefix("torch-"), config)
