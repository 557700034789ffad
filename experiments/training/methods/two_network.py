"""Two networks without shared weights, trained end to end (Wen 2020, PAPERS.md §3): the query
network sees view 1, the key network view 2; Gaussian initialisation; the loop logs the
gradient norm and the weight movement of every step."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from clbounds.theory.losses import query_key_info_nce

from ...config import Config, MethodConfig
from . import LossFn, Method
from .common import project
from .simclr import nt_xent


def gaussian_init_(model: nn.Module) -> nn.Module:
    """Gaussian initialisation of Wen (2020) (PAPERS.md §3): every Linear and Conv2d weight
    ~ N(0, 2/fan_in) (He et al. 2015), biases 0; BatchNorm keeps γ = 1, β = 0.

    Example:
        >>> m = gaussian_init_(nn.Linear(400, 3))
        >>> 0.05 < float(m.weight.detach().std()) < 0.09, float(m.bias.detach().abs().sum())
        (True, 0.0)
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _criterion(m: MethodConfig) -> LossFn:
    return partial(query_key_info_nce, temperature=m.temperature)


def _networks(cfg: Config, build_encoder: Callable[[], nn.Module]) -> dict[str, nn.Module]:
    return {"key": build_encoder()}  # no shared weights: a second draw


def _losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    return loss_fn(project(nets["encoder"], views[0]), project(nets["key"], views[1])), None


METHOD = Method(
    "two_network", criterion=_criterion, losses=_losses, networks=_networks, encoder_init=gaussian_init_,
    logs_dynamics=True, full_batch=lambda m: m.full_batch,
    pair_criterion=nt_xent,  # measure differentiates InfoNCE of one network on view pairs
)
