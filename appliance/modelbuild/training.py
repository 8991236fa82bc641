"""Train a small MLP on measured feature vectors (torch, CPU; the `train` extra).

The result is plain numpy arrays (normalisation mean/std, layer weights) so that the ONNX
export in ``export.py`` writes the graph itself and the runtime never needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from appliance.modelbuild.table import LabelledTable

Array = npt.NDArray[np.float32]
MIN_STD = 1e-6


@dataclass(frozen=True)
class TrainedMlp:
    """A trained classifier as arrays: z = (x - mean) / std, then Linear+ReLU layers, softmax."""

    feature_names: tuple[str, ...]
    labels: tuple[str, ...]
    mean: Array
    std: Array
    layers: tuple[tuple[Array, Array], ...]  # (weight [out, in], bias [out]) per layer

    def logits(self, features: Array) -> Array:
        """Reference forward pass in numpy (float32), used to check the exported graph."""
        hidden = (features - self.mean) / self.std
        for i, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight.T + bias
            if i < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        return hidden.astype(np.float32)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Widths of the hidden layers (empty for a linear softmax model)."""
        return tuple(int(w.shape[0]) for w, _ in self.layers[:-1])


def label_indices(labels: Sequence[str], order: Sequence[str]) -> npt.NDArray[np.int64]:
    """Labels as class indices in ``order``; ValueError names a label outside it."""
    position = {label: i for i, label in enumerate(order)}
    unknown = sorted(set(labels) - set(position))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's labels {list(order)}")
    return np.asarray([position[label] for label in labels], dtype=np.int64)


def _network(n_in: int, hidden: Sequence[int], n_out: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


def train_mlp(
    table: LabelledTable,
    labels: Sequence[str],
    hidden: Sequence[int] = (64, 64),
    epochs: int = 150,
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> TrainedMlp:
    """Train on every row of ``table`` (pass the train split); deterministic for a seed."""
    torch.set_num_threads(1)  # tiny model: more threads only contend with the other work
    torch.manual_seed(seed)
    mean = table.features.mean(axis=0).astype(np.float32)
    std = np.maximum(table.features.std(axis=0), MIN_STD).astype(np.float32)
    inputs = torch.from_numpy((table.features - mean) / std)
    targets = torch.from_numpy(label_indices(table.labels, labels))
    net = _network(len(table.feature_names), hidden, len(labels))
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(inputs), generator=generator), batch_size):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(inputs[batch]), targets[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        schedule.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return TrainedMlp(
        feature_names=table.feature_names,
        labels=tuple(labels),
        mean=mean,
        std=std,
        layers=tuple(
            (m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears
        ),
    )
