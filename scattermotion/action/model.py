"""The TSN classifier: a 2D CNN backbone applied to every segment, segment scores averaged (consensus).

Backbones (``ClassifierConfig.backbone``):

- ``compact`` (default): four 3×3 conv layers with batch norm, widths ``w, 2w, 4w, 8w``, each stride 2,
  average pooling to a 2×2 grid (so it knows where in the frame a motion is). Input batch norm puts every
  source (flow in [-1, 1], RGB in [0, 1]) on the same footing. Trains on a CPU in minutes on the generated
  benchmark.
- ``resnet18`` / ``resnet34`` / ``resnet50``: the standard ResNets (``width`` scales them; 64 = the
  original), any number of input channels, for GPUs and public datasets.
- ``package.module:factory``: any importable ``factory(in_channels) -> nn.Module`` that maps ``N×C×H×W``
  to ``N×F`` (or to ``N×F×h×w``, which is average-pooled).

:class:`EndToEndClassifier` puts the motion network in front: RGB snippets of L+1 frames go in, its L motion
maps (scaled by the bound like every motion source) go through the TSN, and both train together.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scattermotion.errors import InputError

BUILTIN_BACKBONES = ("compact", "resnet18", "resnet34", "resnet50")
# The compact CNN's receptive field is small, so it pools to a 2×2 grid rather than to one vector: where a
# motion is in the frame matters (zoom-in: the left half moves left and the right half right).
POOL_GRID = 2


@dataclass
class ClassifierConfig:
    in_channels: int
    num_classes: int
    backbone: str = "compact"
    width: int = 32  # compact: first layer width; resnets: 64 is the original
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 2:
            raise InputError(None, f"need >= 1 input channel and >= 2 classes, got {self}")
        if self.backbone not in BUILTIN_BACKBONES and ":" not in self.backbone:
            raise InputError(
                None,
                f"unknown backbone {self.backbone!r}; choose {', '.join(BUILTIN_BACKBONES)} "
                "or package.module:factory",
            )
        if self.width < 1 or not 0.0 <= self.dropout < 1.0:
            raise InputError(
                None, f"width must be >= 1 and dropout in [0, 1), got {self.width}, {self.dropout}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClassifierConfig:
        return cls(**json.loads(text))


# ---- backbones -------------------------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CompactCNN(nn.Module):
    """A small CNN for CPU training: input BN, four stride-2 conv-BN-ReLU layers, 2×2 average pooling."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)]  # puts every source on the same scale
        cin = in_channels
        for cout in (width, 2 * width, 4 * width, 8 * width):
            layers.append(_conv_bn(cin, cout, 2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out_features = cin * POOL_GRID * POOL_GRID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), POOL_GRID).flatten(1)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x), inplace=True)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


_RESNETS = {"resnet18": (_BasicBlock, (2, 2, 2, 2)), "resnet34": (_BasicBlock, (3, 4, 6, 3)),
            "resnet50": (_Bottleneck, (3, 4, 6, 3))}  # fmt: skip


class ResNet(nn.Module):
    """ResNet-18/34/50 (He et al., 2016) with any number of input channels, features before the classifier."""

    def __init__(self, depth: str, in_channels: int, width: int = 64):
        super().__init__()
        block, counts = _RESNETS[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(counts):
            planes = width * 2**stage
            for i in range(count):
                layers.append(block(cin, planes, 2 if (i == 0 and stage > 0) else 1))
                cin = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)


class _PooledBackbone(nn.Module):
    """A user factory's module, its output pooled to ``N×F``; ``F`` found with one dummy forward pass."""

    def __init__(self, module: nn.Module, in_channels: int):
        super().__init__()
        self.module = module
        with torch.no_grad():
            was_training = module.training
            module.eval()
            self.out_features = int(self._pool(module(torch.zeros(1, in_channels, 64, 64))).shape[1])
            module.train(was_training)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1).flatten(1) if x.dim() == 4 else x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self.module(x))


def build_backbone(config: ClassifierConfig) -> nn.Module:
    """The backbone named by ``config``; it has an ``out_features`` attribute."""
    if config.backbone == "compact":
        return CompactCNN(config.in_channels, config.width)
    if config.backbone in _RESNETS:
        return ResNet(config.backbone, config.in_channels, config.width)
    module_name, _, attr = config.backbone.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(None, f"backbone {config.backbone!r}: cannot import it ({err})") from err
    return _PooledBackbone(factory(config.in_channels), config.in_channels)


# ---- TSN -------------------------------------------------------------------------------------------------


class TSN(nn.Module):
    """``forward(B×S×C×H×W) -> B×classes`` logits: the backbone on every segment, logits averaged."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(self.backbone.out_features, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.config.in_channels:
            raise ValueError(f"TSN expects B×S×{self.config.in_channels}×H×W input, got {tuple(x.shape)}")
        batch, segments = x.shape[:2]
        logits = self.fc(self.dropout(self.backbone(x.flatten(0, 1))))
        return logits.view(batch, segments, -1).mean(dim=1)


class EndToEndClassifier(nn.Module):
    """Motion network + TSN trained together. ``forward(B×S×(L+1)×3×H×W frames in [0, 1])``."""

    def __init__(self, motion_net: nn.Module, tsn: TSN, bound: float):
        super().__init__()
        self.motion_net = motion_net
        self.tsn = tsn
        self.bound = float(bound)

    def motion(self, frames: torch.Tensor) -> torch.Tensor:
        """``N×T×3×H×W`` frames -> ``N×(T-1)×2×H×W`` motion divided by the bound, clipped to [-1, 1]."""
        from scattermotion.padding import InputPadder

        padder = InputPadder(frames.shape[-2], frames.shape[-1], int(self.motion_net.stride))
        (padded,) = padder.pad(frames)
        flows = padder.unpad(self.motion_net(padded).flows)
        return torch.clamp(flows / self.bound, -1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] % 3:
            raise ValueError(f"expected B×S×((L+1)·3)×H×W frames, got {tuple(x.shape)}")
        batch, segments, channels, height, width = x.shape
        frames = x.reshape(batch * segments, channels // 3, 3, height, width)
        motion = self.motion(frames)  # (B·S)×L×2×H×W
        return self.tsn(motion.reshape(batch, segments, -1, height, width))
