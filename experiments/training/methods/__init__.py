"""The training methods: what each adds to the one training loop, declared in one module each.

    method        views per image   networks                          loss (L_sharp, L_rest)
    simclr        2                 encoder                           (InfoNCE, –)
    barlow_twins  2                 encoder                           (Barlow Twins, –)
    ssa_clr       2 (+ Fourier)     encoder                           (InfoNCE, –), SAM on it
    cacr          K + 1             encoder                           (CACR, –)
    robust_cl     2 + PGD view      encoder (dual BN), discriminator  (w_b·InfoNCE_ben, InfoNCE_adv − d_w·L_D), SAM on the first
    rocl          2 + PGD view      encoder                           (InfoNCE_adv, –)
    two_network   2                 query and key networks            (InfoNCE query→key, –)

The loop draws the views, adds the adversarial view (and takes the discriminator's step) for
robust_cl and rocl, then minimises L_sharp + L_rest, with SAM/ASAM on L_sharp where the
method has it. Every loss is a function of ``theory/`` (PAPERS.md §1–§4).

A method is a :class:`Method` named ``METHOD`` in its own module, registered by one line in
``experiments/catalog.py``. Nothing outside this package compares a method's name: the loop,
the measurement and the pipeline read the declaration (``tests/test_layers.py`` checks).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...catalog import EXTERNAL, METHODS
from ...config import Config, ConfigError, MethodConfig
from .common import adversarial_view, discriminator_step_loss, project


__all__ = [
    "Method", "adversarial_view", "discriminator_step_loss", "get_method", "method_losses", "project",
    "ssl_loss", "uses_fourier", "uses_sam", "views_per_image",
]

LossFn = Callable[..., torch.Tensor]
Losses = Callable[[Config, nn.ModuleDict, list[torch.Tensor], LossFn, bool], tuple[torch.Tensor, torch.Tensor | None]]


def _two_views(m: MethodConfig) -> int:
    return 2


def _never(m: MethodConfig) -> bool:
    return False


def _no_networks(cfg: Config, build_encoder: Callable[[], nn.Module]) -> dict[str, nn.Module]:
    return {}


@dataclass(frozen=True)
class Method:
    """One training method: its criterion, its losses and what the loop must do for it.

    Example (a method that trains SimCLR's loss on a single view pair, as a test would add one):
        >>> from functools import partial
        >>> from clbounds.theory.losses import info_nce
        >>> toy = Method("toy", criterion=lambda m: partial(info_nce, temperature=m.temperature),
        ...              losses=lambda cfg, nets, views, loss_fn, sharp_only: (loss_fn(project(nets["encoder"], views[0]), project(nets["encoder"], views[1])), None))
        >>> toy.views(None), toy.adversarial, toy.sam
        (2, False, False)
    """

    name: str
    criterion: Callable[[MethodConfig], LossFn]  # the contrastive criterion, a function of projections
    losses: Losses  # (L_sharp, L_rest) on one batch of views, from the criterion
    views: Callable[[MethodConfig], int] = _two_views  # augmented views per image
    adversarial: bool = False  # a PGD view is appended (and a discriminator, if any, takes its step first)
    sam: bool = False  # SAM/ASAM on L_sharp, when method.use_sam
    fourier: bool = False  # Fourier amplitude mixing of the views, when method.use_fourier
    networks: Callable[[Config, Callable[[], nn.Module]], dict[str, nn.Module]] = _no_networks  # networks beside the encoder
    encoder_init: Callable[[nn.Module], nn.Module] | None = None  # re-initialises a freshly built encoder
    distributed: bool = False  # its step is one loss of the gathered projections (torchrun)
    gather_dim: int = 0  # the batch dimension of the criterion's input
    logs_dynamics: bool = False  # the loop logs the gradient norm and weight movement of every step (Wen, PAPERS §3)
    full_batch: Callable[[MethodConfig], bool] = _never  # one step per epoch on the whole training set
    pair_criterion: Callable[[MethodConfig], LossFn] | None = None  # the loss measure differentiates on view pairs (default: criterion)
    nt_xent: bool = False  # trained on the plain NT-Xent risk (what the contrastive certificate bounds)
    compared_with: str | None = None  # the method whose runs on the same data the pair claims compare it with


def get_method(name: str) -> Method:
    """The registered method ``name`` (``experiments/catalog.py``), its module imported on first use."""
    if name == EXTERNAL:
        raise ConfigError("method 'external' marks an encoder trained elsewhere (`clbounds import`); it cannot be trained here")
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is not registered: choose one of {', '.join(METHODS)}")
    method = importlib.import_module(METHODS[name]).METHOD
    if method.name != name:
        raise ConfigError(f"{METHODS[name]} declares method {method.name!r}, registered as {name!r}")
    return method


def ssl_loss(cfg: Config) -> LossFn:
    """The contrastive criterion of the method, as a function of projections: (z1, z2) for
    every method but CACR, which takes the stacked views [K+1, B, D]."""
    return get_method(cfg.method.name).criterion(cfg.method)


def method_losses(cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: LossFn, sharp_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(L_sharp, L_rest) of the method on one batch, from its criterion ``loss_fn`` (see
    :func:`ssl_loss`). The step minimises L_sharp + L_rest, and SAM (where :func:`uses_sam`)
    acts on L_sharp only. ``views`` are the augmented views, plus the adversarial view last
    for robust_cl and rocl. ``sharp_only`` skips L_rest (SAM's second pass).
    """
    return get_method(cfg.method.name).losses(cfg, nets, views, loss_fn, sharp_only)


def uses_sam(cfg: Config) -> bool:
    """SAM/ASAM is part of SSA-CLR (on its loss) and of robust CL (on the benign loss)."""
    return cfg.method.use_sam and get_method(cfg.method.name).sam


def uses_fourier(cfg: Config) -> bool:
    """The Fourier amplitude-mixing augmentation is part of SSA-CLR."""
    return cfg.method.use_fourier and get_method(cfg.method.name).fourier


def views_per_image(cfg: Config) -> int:
    """K + 1 augmented views for CACR, two for every other method."""
    return get_method(cfg.method.name).views(cfg.method)
