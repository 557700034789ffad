"""CACR / CCT: K positives per image, attraction and repulsion weighted by distance (PAPERS.md §4)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from clbounds.theory.losses import cacr

from ...config import Config, MethodConfig
from . import LossFn, Method
from .common import project
from .simclr import nt_xent


def _criterion(m: MethodConfig) -> LossFn:
    return partial(cacr, tau_pos=m.tau_pos, tau_neg=m.tau_neg, uniform_pos=m.uniform_pos, uniform_neg=m.uniform_neg)


def _losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    return loss_fn(torch.stack([project(nets["encoder"], v) for v in views])), None  # [K+1, B, D]


METHOD = Method(
    "cacr", criterion=_criterion, losses=_losses, views=lambda m: m.positives + 1, distributed=True, gather_dim=1,
    pair_criterion=nt_xent,  # measure differentiates InfoNCE on view pairs, at method.temperature
    compared_with="simclr",  # the CACR claims compare a CACR run with a SimCLR run on the same data
)
