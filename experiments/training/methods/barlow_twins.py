"""Barlow Twins: the cross-correlation of two views' projections driven to the identity (PAPERS.md §5)."""

from __future__ import annotations

from functools import partial

from clbounds.theory.losses import barlow_twins

from ...config import MethodConfig
from . import LossFn, Method
from .simclr import two_view_losses


def _criterion(m: MethodConfig) -> LossFn:
    return partial(barlow_twins, lambd=m.lambd)


METHOD = Method("barlow_twins", criterion=_criterion, losses=two_view_losses, distributed=True)
