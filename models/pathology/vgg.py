"""VGG19 (Simonyan & Zisserman 2015) in torch, with torchvision's layer names and indices.

``features.N`` and ``classifier.N`` match torchvision's ``vgg19`` (and ``vgg19_bn`` with
batch_norm=True), so ``load_imagenet_weights`` takes a torchvision state-dict file as is. A width
multiplier shrinks every layer for the demo model. Two heads:
- ``paper``: torchvision's classifier (3 FC) with the last layer replaced for 2 classes, as in
  the paper;
- ``gap``: global average pooling over the last conv block (before its pool) and one linear
  layer, which makes class activation maps possible (Zhou et al., CVPR 2016).
Build-time only: needs torch (the ``train`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

VGG19_CONFIG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Head = Literal["paper", "gap"]


def make_features(width: float, batch_norm: bool) -> nn.Sequential:
    """The 16 conv + 5 max-pool layers, indexed exactly as torchvision builds them."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(4, round(int(item) * width))
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers)


class VGG19(nn.Module):
    """VGG19 with a 2-class head; input is N x 3 x H x W, ImageNet-normalised."""

    def __init__(
        self, width: float = 1.0, head: Head = "paper", classes: int = 2, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.head = head
        self.features = make_features(width, batch_norm)
        last = max(4, round(512 * width))
        if head == "paper":
            hidden = max(8, round(4096 * width))
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(last * 49, hidden), nn.ReLU(True), nn.Dropout(0.5),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
                nn.Linear(hidden, classes),
            )
        else:
            self.cam_head = nn.Linear(last, classes)
        _init_weights(self)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last conv block output; the GAP head skips the final pool for finer CAMs."""
        layers = self.features if self.head == "paper" else self.features[:-1]
        result: torch.Tensor = layers(x)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N x classes)."""
        maps = self.feature_maps(x)
        if self.head == "paper":
            logits: torch.Tensor = self.classifier(torch.flatten(self.avgpool(maps), 1))
            return logits
        result: torch.Tensor = self.cam_head(maps.mean(dim=(2, 3)))
        return result

    def class_activation_map(self, maps: torch.Tensor, cls: int = 1) -> torch.Tensor:
        """CAM of class cls minus the other class (N x h x w), from GAP-head feature maps."""
        weight = self.cam_head.weight[cls] - self.cam_head.weight[1 - cls]
        bias = self.cam_head.bias[cls] - self.cam_head.bias[1 - cls]
        return torch.einsum("nchw,c->nhw", maps, weight) + bias

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """Parameters of 'features' (the backbone) or 'head' (the classifier)."""
        if stage == "features":
            return list(self.features.parameters())
        head = self.classifier if self.head == "paper" else self.cam_head
        return list(head.parameters())


def _init_weights(model: nn.Module) -> None:
    """torchvision's VGG initialisation."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def load_imagenet_weights(model: VGG19, path: Path) -> list[str]:
    """Load a torchvision vgg19(_bn) state dict; returns the keys left at their init values."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(
            f"{path}: no tensor matches this VGG19 (width multiplier must be 1.0 and the "
            "file a torchvision vgg19 or vgg19_bn state dict)"
        )
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


class ExportWrapper(nn.Module):
    """What goes into ONNX: RGB 0-255 in, ImageNet scaling, softmax, and the CAM if any."""

    def __init__(self, model: VGG19) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Probabilities (N x 2) and, for the GAP head, the positive-class CAM (N x h x w)."""
        x = (tiles - self.mean) / self.std
        if self.model.head == "paper":
            return (torch.softmax(self.model(x), dim=1),)
        maps = self.model.feature_maps(x)
        logits = self.model.cam_head(maps.mean(dim=(2, 3)))
        return torch.softmax(logits, dim=1), self.model.class_activation_map(maps)
