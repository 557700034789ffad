"""Encoders: an MLP, a small ConvNet and a CIFAR ResNet-18, each with a projection head.

Every encoder takes [0, 1] images and normalises them inside ``forward``, so attacks and
their ε live in pixel units. ``forward`` returns the backbone features h = f(x) that the
probes and the theory terms use; ``projector(h)`` gives the projection z that the
self-supervised loss sees (Chen et al. 2020).

With ``dual_bn=True`` every BatchNorm is a :class:`DualBatchNorm`: one branch for benign and
one for adversarial inputs (robust contrastive learning, PAPERS.md §1). The benign branch is
the default, so probes, evaluation and ``measure`` see the benign encoder; the training loop
switches to the adversarial branch with ``bn_branch(model, adversarial=True)``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

ARCHITECTURES = ("mlp", "convnet", "resnet18")


class Normalize(nn.Module):
    """Per-channel (x − mean) / std, with the statistics as buffers."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def mlp_backbone(in_shape: tuple[int, int, int], width: float) -> tuple[nn.Module, int]:
    hidden = _channels(512, width)
    c, h, w = in_shape
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
    )
    return net, hidden


def convnet_backbone(in_shape: tuple[int, int, int], width: float) -> tuple[nn.Module, int]:
    c1, c2, c3 = (_channels(b, width) for b in (32, 64, 128))

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    net = nn.Sequential(
        *block(in_shape[0], c1, 1), *block(c1, c2, 2), *block(c2, c3, 2), *block(c3, c3, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return net, c3


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18 (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    def residual_parts(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(branch, shortcut, post) with forward(x) = post(branch(x) + shortcut(x)): what
        theory.geometry.lipschitz_upper bounds block by block (tests/test_geometry.py checks it)."""
        return nn.Sequential(self.conv1, self.bn1, nn.ReLU(), self.conv2, self.bn2), self.shortcut, nn.ReLU()


def resnet18_backbone(in_shape: tuple[int, int, int], width: float) -> tuple[nn.Module, int]:
    """CIFAR ResNet-18: 3×3 stride-1 stem and no max-pool, so 32×32 inputs keep resolution."""
    widths = [_channels(b, width) for b in (64, 128, 256, 512)]
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    cin = widths[0]
    for i, cout in enumerate(widths):
        stride = 1 if i == 0 else 2
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), cin


class DualBatchNorm(nn.Module):
    """A BatchNorm with two independent branches (statistics and affine parameters), one for
    benign and one for adversarial inputs (Xie et al. 2020; the dual-BN encoder of PAPERS.md §1).

    ``use_adversarial`` picks the branch; it is a plain attribute, not state, so a loaded
    encoder always starts on the benign branch.

    Example:
        >>> bn = DualBatchNorm(nn.BatchNorm1d(3))
        >>> _ = bn(torch.randn(8, 3))                      # benign branch: its statistics move
        >>> bool(bn.benign.running_mean.abs().sum() > 0), bool(bn.adversarial.running_mean.abs().sum() > 0)
        (True, False)
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.benign = bn
        self.adversarial = copy.deepcopy(bn)
        self.use_adversarial = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.adversarial if self.use_adversarial else self.benign)(x)


def _dualize(module: nn.Module) -> None:
    """Replaces every BatchNorm below ``module`` by a DualBatchNorm, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, DualBatchNorm(child))
        else:
            _dualize(child)


@contextlib.contextmanager
def bn_branch(model: nn.Module, adversarial: bool) -> Iterator[nn.Module]:
    """Runs ``model`` on the adversarial (or benign) BatchNorm branch; restores the previous
    choice afterwards. A no-op for a model without DualBatchNorm.

    Example:
        >>> enc = Encoder("mlp", (3, 2, 2), width=0.01, proj_dim=2, dual_bn=True)
        >>> with bn_branch(enc, adversarial=True):
        ...     _ = enc(torch.rand(4, 3, 2, 2))
        >>> int(enc.backbone[2].adversarial.num_batches_tracked), int(enc.backbone[2].benign.num_batches_tracked)
        (1, 0)
    """
    duals = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    previous = [m.use_adversarial for m in duals]
    try:
        for m in duals:
            m.use_adversarial = adversarial
        yield model
    finally:
        for m, flag in zip(duals, previous):
            m.use_adversarial = flag


_BACKBONES = {"mlp": mlp_backbone, "convnet": convnet_backbone, "resnet18": resnet18_backbone}


class Encoder(nn.Module):
    """Backbone f with input normalisation, plus a projection head g.

    Args:
        arch: one of ``ARCHITECTURES``.
        in_shape: (C, H, W) of the inputs.
        width: width multiplier of every hidden layer.
        proj_hidden, proj_dim: sizes of the two-layer projection head (Linear-BN-ReLU-Linear).
        mean, std: per-channel input statistics.
        dual_bn: every BatchNorm (backbone and head) becomes a benign/adversarial
            :class:`DualBatchNorm`.

    Example:
        >>> enc = Encoder("convnet", (3, 16, 16), width=0.25, proj_dim=8)
        >>> h = enc(torch.rand(4, 3, 16, 16)); z = enc.projector(h)
        >>> h.shape[0], z.shape
        (4, torch.Size([4, 8]))
    """

    def __init__(
        self,
        arch: str,
        in_shape: tuple[int, int, int],
        width: float = 1.0,
        proj_hidden: int = 512,
        proj_dim: int = 128,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.25, 0.25, 0.25),
        dual_bn: bool = False,
    ) -> None:
        super().__init__()
        if arch not in _BACKBONES:
            raise ValueError(f"unknown encoder {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.arch = arch
        self.normalize = Normalize(mean, std)
        self.backbone, self.feature_dim = _BACKBONES[arch](in_shape, width)
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, proj_hidden), nn.BatchNorm1d(proj_hidden), nn.ReLU(inplace=True),
            nn.Linear(proj_hidden, proj_dim),
        )
        if dual_bn:
            _dualize(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))
