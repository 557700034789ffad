"""RoCL-style baseline: the adversarial InfoNCE alone (PAPERS.md §1)."""

from __future__ import annotations

import torch
from torch import nn

from ...config import Config
from . import LossFn, Method
from .common import project
from .simclr import nt_xent


def _losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    encoder = nets["encoder"]
    x1, _, x2_adv = views
    return loss_fn(project(encoder, x1), project(encoder, x2_adv, adversarial=True)), None


METHOD = Method("rocl", criterion=nt_xent, losses=_losses, adversarial=True)
