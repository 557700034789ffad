"""SimCLR: InfoNCE (NT-Xent) on two augmented views (Chen et al. 2020; PAPERS.md §2, §5)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from clbounds.theory.losses import info_nce

from ...config import Config, MethodConfig
from . import LossFn, Method
from .common import project


def two_view_losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, None]:
    """(criterion(z(view 1), z(view 2)), –): the loss of every two-view method."""
    encoder = nets["encoder"]
    return loss_fn(project(encoder, views[0]), project(encoder, views[1])), None


def nt_xent(m: MethodConfig) -> LossFn:
    """InfoNCE at the method's temperature: the criterion of SimCLR, SSA-CLR and robust CL."""
    return partial(info_nce, temperature=m.temperature)


METHOD = Method("simclr", criterion=nt_xent, losses=two_view_losses, distributed=True, nt_xent=True)
