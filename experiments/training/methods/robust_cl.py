"""Robust contrastive learning: a benign InfoNCE (SAM on it) plus an adversarial InfoNCE minus
a discriminator term, with dual BatchNorm (PAPERS.md §1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...config import Config
from . import LossFn, Method
from .common import build_discriminator, discriminator_term, project
from .simclr import nt_xent


def _networks(cfg: Config, build_encoder: Callable[[], nn.Module]) -> dict[str, nn.Module]:
    return {"discriminator": build_discriminator(cfg.encoder.proj_dim)}


def _losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    m, encoder = cfg.method, nets["encoder"]
    x1, x2, x2_adv = views
    z1 = project(encoder, x1)
    z2 = project(encoder, x2)
    benign = m.benign_w * loss_fn(z1, z2)
    if sharp_only:
        return benign, None
    z_adv = project(encoder, x2_adv, adversarial=True)
    rest = loss_fn(z1, z_adv) - m.d_w * discriminator_term(nets["discriminator"], z2, z_adv, frozen=True)
    return benign, rest


METHOD = Method("robust_cl", criterion=nt_xent, losses=_losses, adversarial=True, sam=True, networks=_networks)
