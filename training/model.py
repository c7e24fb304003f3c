"""ExpNet: a ResNet that regresses the 29 expression coefficients (sigma units) of a crop.

Chang et al. (FG 2018) fine-tune a ResNet-101 on 224x224 crops with an L2 loss on the
coefficients. ``resnet101`` builds that network when torchvision is importable (random
weights: nothing is downloaded); ``small`` is a four-stage residual network of our own, fast
enough for CPU runs and tests.
"""

from __future__ import annotations

import torch
from torch import nn

from schemas import EXPRESSION_DIM

BACKBONES = ("small", "resnet101")
# ImageNet statistics: what ResNet weights (and the paper's fine-tuning) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem (stride 2) and four stages of one basic block each; globally pooled features.

    (B, 3, H, W) -> (B, ``widths[-1]``); any H, W >= 16.
    """

    def __init__(self, *, widths: tuple = (32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, channels = [], widths[0]
        for index, width in enumerate(widths):
            stages.append(BasicBlock(channels, width, stride=1 if index == 0 else 2))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """A feature extractor and its feature width.

    Raises
    ------
    ValueError   for an unknown name, or ``resnet101`` without torchvision
    """
    if name == "small":
        backbone = SmallResNet()
        return backbone, backbone.feature_dim
    if name == "resnet101":
        try:
            import torchvision
        except ImportError as error:
            raise ValueError("backbone 'resnet101' needs torchvision, which does not import "
                             f"here ({error}); use 'small'") from error
        backbone = torchvision.models.resnet101(weights=None)
        feature_dim = backbone.fc.in_features
        backbone.fc = nn.Identity()
        return backbone, feature_dim
    raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")


class ExpNet(nn.Module):
    """Images in [0, 1] -> expression coefficients in sigma units.

    Input (B, 3, H, W) float32 RGB in [0, 1]; output (B, 29) float32.
    """

    def __init__(self, *, backbone: str = "small", expression_dim: int = EXPRESSION_DIM):
        super().__init__()
        self.backbone_name = backbone
        self.backbone, feature_dim = build_backbone(backbone)
        self.head = nn.Linear(feature_dim, expression_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        return self.head(self.backbone((images - self.mean) / self.std))
