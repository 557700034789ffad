"""Encoders clbounds did not train: a wrapper for any feature map, torchvision-layout ResNets,
and the projection heads of the libraries researchers train with.

Every wrapped encoder has the shape the rest of clbounds expects: ``model(x)`` maps [0, 1]
images to backbone features, ``model.projector`` maps features to the projection, and the
input normalisation sits inside ``forward`` (so attack ε stays in pixel units).

- :class:`ExternalEncoder`: (optional) normalisation, a backbone, a projector (identity when
  there is none: the projection is then the features themselves);
- :class:`TorchvisionResNet`: ResNet-18/50 with torchvision's exact module names (so a
  torchvision, timm or solo-learn state dict loads key for key), in the ImageNet stem or the
  CIFAR variant (3×3 stride-1 first conv, no max-pool), without the classifier ``fc``;
- :func:`projector_spec` / :func:`build_projector`: a projection head written as a short spec
  (``"L512-2048,B2048,R,L2048-128"``), read from the parameter names and shapes of a state
  dict, so solo-learn's ``projector.{i}`` and lightly's ``projection_head.layers.{i}`` heads
  are rebuilt index for index.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping

import torch
from torch import nn

from .encoders import Normalize

#: Named normalisations (``--norm``); the library default of each format is in :data:`FORMAT_NORM`.
NORM_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class TvBasicBlock(nn.Module):
    """torchvision's BasicBlock: conv1-bn1-relu-conv2-bn2, plus ``downsample`` (conv1x1, BN)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    def residual_parts(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(branch, shortcut, post), forward(x) = post(branch(x) + shortcut(x)), for
        theory.geometry.lipschitz_upper (the shortcut is the identity without ``downsample``)."""
        return nn.Sequential(self.conv1, self.bn1, nn.ReLU(), self.conv2, self.bn2), self.downsample or nn.Identity(), nn.ReLU()


class TvBottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on the 3×3 ``conv2``)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    def residual_parts(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(branch, shortcut, post), as :meth:`TvBasicBlock.residual_parts`."""
        branch = nn.Sequential(self.conv1, self.bn1, nn.ReLU(), self.conv2, self.bn2, nn.ReLU(), self.conv3, self.bn3)
        return branch, self.downsample or nn.Identity(), nn.ReLU()


RESNET_LAYERS = {"resnet18": (TvBasicBlock, (2, 2, 2, 2)), "resnet50": (TvBottleneck, (3, 4, 6, 3))}


class TorchvisionResNet(nn.Module):
    """ResNet-18/50 with torchvision's module names, returning the pooled features (no ``fc``).

    Args:
        arch: ``resnet18`` or ``resnet50``.
        cifar_stem: a 3×3 stride-1 ``conv1`` and no max-pool, as solo-learn and most CIFAR
            recipes use, instead of the ImageNet 7×7 stride-2 conv and 3×3 max-pool.
        stem_padding: padding of the CIFAR ``conv1`` (solo-learn's is 2; 1 elsewhere).
        stem_relu: the ReLU after ``bn1``; lightly's CIFAR benchmark backbone has none (it is an
            ``nn.Sequential`` of its ResNet's children, whose stem ReLU was a function call).

    Example:
        >>> net = TorchvisionResNet("resnet18", cifar_stem=True)
        >>> net(torch.rand(2, 3, 32, 32)).shape, "layer1.0.conv1.weight" in net.state_dict()
        (torch.Size([2, 512]), True)
    """

    def __init__(self, arch: str = "resnet18", cifar_stem: bool = False, stem_padding: int = 1, stem_relu: bool = True) -> None:
        super().__init__()
        if arch not in RESNET_LAYERS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(RESNET_LAYERS)}")
        block, counts = RESNET_LAYERS[arch]
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, stem_padding, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu: nn.Module = nn.ReLU(inplace=True) if stem_relu else nn.Identity()
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(_conv1x1(cin, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, stride if j == 0 else 1, down))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def sequential_parts(self) -> nn.Sequential:
        """The forward as one composition (stem, max-pool, the four stages, pooling), which
        theory.geometry.lipschitz_upper walks: each block bounds itself by its residual parts."""
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2, self.layer3, self.layer4, self.avgpool, nn.Flatten())


_TOKEN = re.compile(r"^(?:(?P<lin>[Ll])(?P<i>\d+)-(?P<o>\d+)|(?P<bn>[Bb])(?P<n>\d+)|(?P<relu>R))$")


def build_projector(spec: str) -> nn.Module:
    """The projection head a spec describes: comma-separated layers, one per Sequential index.

    ``L<in>-<out>`` Linear with bias, ``l<in>-<out>`` without; ``B<n>`` BatchNorm1d with affine
    parameters, ``b<n>`` without; ``R`` ReLU. An empty spec is the identity.

    Example:
        >>> head = build_projector("L4-8,B8,R,l8-2")
        >>> [type(m).__name__ for m in head], head[3].bias is None
        (['Linear', 'BatchNorm1d', 'ReLU', 'Linear'], True)
    """
    if not spec:
        return nn.Identity()
    layers: list[nn.Module] = []
    for token in spec.split(","):
        m = _TOKEN.match(token.strip())
        if m is None:
            raise ValueError(f"projector spec {spec!r}: cannot read {token!r} (use L<in>-<out>, l<in>-<out>, B<n>, b<n> or R)")
        if m["lin"]:
            layers.append(nn.Linear(int(m["i"]), int(m["o"]), bias=m["lin"] == "L"))
        elif m["bn"]:
            layers.append(nn.BatchNorm1d(int(m["n"]), affine=m["bn"] == "B"))
        else:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


#: The most layers a projection head may have (SimCLR's has 3, BYOL's 4).
MAX_HEAD_LAYERS = 64


def projector_spec(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    """The spec of the Sequential head stored under ``prefix`` (e.g. ``"projector."``).

    Each index holds a Linear (a 2-D weight), a BatchNorm1d (a running mean) or, with no
    parameters at all, a ReLU: the activation both libraries put between their layers. A
    parameter-free layer after the last parameter cannot be seen; no library ends its head
    with one.

    Example:
        >>> sd = {"p.0.weight": torch.zeros(8, 4), "p.0.bias": torch.zeros(8), "p.2.weight": torch.zeros(2, 8)}
        >>> projector_spec(sd, "p.")
        'L4-8,R,l8-2'
    """
    indices: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith(prefix):
            head, _, name = key[len(prefix) :].partition(".")
            if head.isdigit():
                if len(head) > 4 or int(head) >= MAX_HEAD_LAYERS:  # checked before looping over the indices
                    raise ValueError(f"projection head under {prefix!r}: layer index {head[:12]} is above the limit of {MAX_HEAD_LAYERS} layers")
                indices.setdefault(int(head), {})[name] = value
    if not indices:
        return ""
    tokens = []
    for i in range(max(indices) + 1):
        p = indices.get(i, {})
        if "running_mean" in p:
            tokens.append(f"{'B' if 'weight' in p else 'b'}{p['running_mean'].numel()}")
        elif "weight" in p and p["weight"].ndim == 2:
            out, inp = p["weight"].shape
            tokens.append(f"{'L' if 'bias' in p else 'l'}{inp}-{out}")
        elif not p:
            tokens.append("R")
        else:
            raise ValueError(f"projection head under {prefix!r}: index {i} holds {sorted(p)}, neither a Linear nor a BatchNorm1d")
    return ",".join(tokens)


class ExternalEncoder(nn.Module):
    """A backbone trained elsewhere, with input normalisation and a projection head.

    Args:
        backbone: maps (normalised) images to features [N, D].
        projector: maps features to the projection; ``None`` is the identity.
        mean, std: per-channel statistics applied inside ``forward``; ``None`` when the
            backbone takes [0, 1] images itself.

    Example:
        >>> enc = ExternalEncoder(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)))
        >>> enc(torch.rand(2, 3, 2, 2)).shape, isinstance(enc.projector, nn.Identity)
        (torch.Size([2, 4]), True)
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module | None = None, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else nn.Identity()
        self.backbone = backbone
        self.projector = projector if projector is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


#: What a per-channel normalisation of [0,1] images can be: a std of 1e-300 makes every feature
#: non-finite, a NaN mean every input NaN.
CHANNEL_RANGE = {"mean": (-1.0, 2.0), "std": (1e-3, 10.0)}


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    """'0.5,0.5,0.5' → (0.5, 0.5, 0.5), with a clear error.

    Example:
        >>> parse_floats("0.1, 0.2,0.3", "mean")
        (0.1, 0.2, 0.3)
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None
    low, high = CHANNEL_RANGE[name]
    if len(values) != 3 or not all(math.isfinite(v) and low <= v <= high for v in values):
        raise ValueError(f"{name} needs 3 finite values in [{low:g}, {high:g}] (one per RGB channel, for [0,1] images), got {text!r}")
    return values


def is_user_arch(arch: str) -> bool:
    """``package.module:callable``: the user's own network (``clbounds import --arch``)."""
    return ":" in arch


def user_backbone(arch: str) -> nn.Module:
    """The network ``package.module:callable`` builds when called with no arguments: the user's
    own architecture, whose state dict the import then loads and checks key by key.

    The module is imported from the Python path and the current folder, so a run that names
    one runs that code whenever it is opened (as loading any model class does). A module of the
    standard library is refused: no network lives there, and a stored config could otherwise
    name any of its zero-argument callables.
    """
    import importlib
    import os
    import sys

    module_name, _, attr = arch.partition(":")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise ValueError(f"--arch {arch}: {top} is a module of the standard library, not a network; give your own module:callable")
    if os.getcwd() not in sys.path:  # `clbounds import --arch mynets:Net` run beside mynets.py
        sys.path.append(os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise ValueError(f"--arch {arch}: cannot import {module_name} ({err}); run from its folder or put it on PYTHONPATH") from None
    except AttributeError:
        raise ValueError(f"--arch {arch}: {module_name} has no {attr}") from None
    if not callable(factory):
        raise ValueError(f"--arch {arch}: {attr} is not callable")
    network = factory()
    if not isinstance(network, nn.Module):
        raise ValueError(f"--arch {arch}: {attr}() returned a {type(network).__name__}, not a torch nn.Module")
    return network


def build_external(ext) -> ExternalEncoder:
    """The encoder an ``encoder.external`` config section describes (weights not loaded)."""
    if ext.format == "python":
        raise ValueError("this run was measured through the Python API: its model is not stored, so it cannot be rebuilt; measure it again with clbounds.measure")
    if is_user_arch(ext.arch):
        backbone = user_backbone(ext.arch)
    else:
        backbone = TorchvisionResNet(ext.arch, cifar_stem=ext.cifar_stem, stem_padding=ext.stem_padding, stem_relu=ext.stem_relu)
    mean = parse_floats(ext.mean, "mean") if ext.mean else None
    std = parse_floats(ext.std, "std") if ext.std else None
    return ExternalEncoder(backbone, build_projector(ext.projector), mean, std)


def reinitialized(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer's ``reset_parameters()`` run under ``seed``: the
    random-initialisation control of a model whose original initialisation is unknown. The
    global random state is left as it was."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    return fresh
