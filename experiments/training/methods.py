"""What differs between the methods: small functions that the training loop calls by name.

    method        views per image   networks                          loss (L_sharp, L_rest)
    simclr        2                 encoder                           (InfoNCE, –)
    barlow_twins  2                 encoder                           (Barlow Twins, –)
    ssa_clr       2 (+ Fourier)     encoder                           (InfoNCE, –), SAM on it
    cacr          K + 1             encoder                           (CACR, –)
    robust_cl     2 + PGD view      encoder (dual BN), discriminator  (w_b·InfoNCE_ben, InfoNCE_adv − d_w·L_D), SAM on the first
    rocl          2 + PGD view      encoder                           (InfoNCE_adv, –)
    two_network   2                 query and key networks            (InfoNCE query→key, –)

The loop draws the views, adds the adversarial view (and takes the discriminator's step) for
robust_cl and rocl, then minimises L_sharp + L_rest, with SAM/ASAM on L_sharp where
:func:`uses_sam` says so. Every loss is a function of ``theory/`` (PAPERS.md §1–§4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory.adversarial import contrastive_attack
from clbounds.theory.losses import barlow_twins, cacr, info_nce

from ..config import Config
from ..models.encoders import bn_branch

ADVERSARIAL_METHODS = ("robust_cl", "rocl")


def uses_sam(cfg: Config) -> bool:
    """SAM/ASAM is part of SSA-CLR (on its loss) and of robust CL (on the benign loss)."""
    return cfg.method.use_sam and cfg.method.name in ("ssa_clr", "robust_cl")


def uses_fourier(cfg: Config) -> bool:
    """The Fourier amplitude-mixing augmentation is part of SSA-CLR."""
    return cfg.method.use_fourier and cfg.method.name == "ssa_clr"


def views_per_image(cfg: Config) -> int:
    """K + 1 augmented views for CACR, two for every other method."""
    return cfg.method.positives + 1 if cfg.method.name == "cacr" else 2


def project(model: nn.Module, x: torch.Tensor, adversarial: bool = False) -> torch.Tensor:
    """The projection z = g(f(x)) in float32, on the benign or adversarial BatchNorm branch.

    On CUDA the forward pass runs under bfloat16 autocast; the losses are computed in float32.
    """
    with bn_branch(model, adversarial), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        z = model.projector(model(x))
    return z.float()


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


def imbalanced_indices(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the imbalanced variant of a training set (CACR, PAPERS.md §4): class i keeps
    round((i+1)/K · n_i) of its n_i samples (at least one), chosen at random; order is kept.

    Example:
        >>> y = torch.arange(4).repeat_interleave(8)
        >>> idx = imbalanced_indices(y, 4, torch.Generator().manual_seed(0))
        >>> torch.bincount(y[idx]).tolist()
        [2, 4, 6, 8]
    """
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        if members.numel() == 0:
            continue
        n_keep = max(1, round((c + 1) / num_classes * members.numel()))
        chosen = members[torch.randperm(members.numel(), generator=generator)[:n_keep].to(members.device)]
        keep[chosen] = True
    return torch.nonzero(keep).flatten()


# ---- robust contrastive learning (PAPERS.md §1) ----------------------------------------


def build_discriminator(proj_dim: int) -> nn.Linear:
    """D = Linear(proj_dim → 1); sigmoid(D(ẑ)) is the probability that ẑ = z/‖z‖ is benign."""
    return nn.Linear(proj_dim, 1)


def discriminator_loss(discriminator: nn.Linear, z_benign: torch.Tensor, z_adv: torch.Tensor, frozen: bool = False) -> torch.Tensor:
    """L_D = ½[BCE(D(ẑ_benign), 1) + BCE(D(ẑ_adv), 0)] on L2-normalised projections (PAPERS.md §1).

    With ``frozen`` the discriminator's weights are detached: the encoder's objective
    (… − d_w·L_D) sends gradients into z but never into D, which has its own step.

    Example:
        >>> d = nn.Linear(4, 1); _ = nn.init.zeros_(d.weight), nn.init.zeros_(d.bias)
        >>> round(discriminator_loss(d, torch.randn(3, 4), torch.randn(3, 4)).item(), 4)  # log 2 at D = 0
        0.6931
    """
    w, b = discriminator.weight, discriminator.bias
    if frozen:
        w, b = w.detach(), b.detach()
    logit_b = F.linear(F.normalize(z_benign, dim=1), w, b).flatten()
    logit_a = F.linear(F.normalize(z_adv, dim=1), w, b).flatten()
    return 0.5 * (F.binary_cross_entropy_with_logits(logit_b, torch.ones_like(logit_b)) + F.binary_cross_entropy_with_logits(logit_a, torch.zeros_like(logit_a)))


class _AttackView(nn.Module):
    """The projection as the attack sees it: the target view x1 (matched by identity) through
    the benign BatchNorm branch, every other input (the adversarial view) through the
    adversarial branch, as in the official code of PAPERS.md §1."""

    def __init__(self, model: nn.Module, x1: torch.Tensor) -> None:
        super().__init__()
        self.model, self.x1 = model, x1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return project(self.model, x, adversarial=x is not self.x1)


def adversarial_view(cfg: Config, model: nn.Module, discriminator: nn.Linear | None, v1: torch.Tensor, v2: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x2_adv: PGD-L∞ on view 2 within ε, maximising InfoNCE(z(x1), z(x2_adv)) − d_w·BCE(D(ẑ(x2_adv)), 0)
    (the discriminator term only for robust_cl), random start, clamped to [0, 1].

    The encoder runs in eval mode during the attack (theory.adversarial freezes it), so its
    BatchNorm statistics do not see the attack's intermediate points.
    """
    m = cfg.method
    return contrastive_attack(
        _AttackView(model, v1), v1, v2, eps=m.eps, alpha=m.alpha, steps=m.steps, temperature=m.temperature,
        discriminator=discriminator, d_w=m.d_w, generator=generator,
    )


@torch.no_grad()
def _eval_projections(model: nn.Module, x: torch.Tensor, adversarial: bool) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return project(model, x, adversarial)
    finally:
        model.train(was_training)


def discriminator_step_loss(model: nn.Module, discriminator: nn.Linear, x_benign: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """L_D on detached features of the current encoder (eval mode, as the official code),
    the loss of the discriminator's own step."""
    return discriminator_loss(discriminator, _eval_projections(model, x_benign, False), _eval_projections(model, x_adv, True))


# ---- two networks (PAPERS.md §3) --------------------------------------------------------


def query_key_info_nce(z_query: torch.Tensor, z_key: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""The contrastive loss of Wen (2020) between a query and a key network (PAPERS.md §3):

        L = mean_i −log( exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ) ),   q = ẑ_query, k = ẑ_key normalised

    the positive is the key of the same image, the negatives the keys of the other images.

    Example:
        >>> q = torch.eye(3); round(float(query_key_info_nce(q, q, 1.0)), 4)   # log(1 + 2/e)
        0.5514
    """
    q, k = F.normalize(z_query, dim=1), F.normalize(z_key, dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


# ---- the loss of each method ------------------------------------------------------------


def ssl_loss(cfg: Config) -> Callable[..., torch.Tensor]:
    """The contrastive criterion of the method, as a function of projections: (z1, z2) for
    every method but CACR, which takes the stacked views [K+1, B, D]."""
    m = cfg.method
    if m.name in ("simclr", "ssa_clr", "robust_cl", "rocl"):
        return partial(info_nce, temperature=m.temperature)
    if m.name == "barlow_twins":
        return partial(barlow_twins, lambd=m.lambd)
    if m.name == "cacr":
        return partial(cacr, tau_pos=m.tau_pos, tau_neg=m.tau_neg, uniform_pos=m.uniform_pos, uniform_neg=m.uniform_neg)
    if m.name == "two_network":
        return partial(query_key_info_nce, temperature=m.temperature)
    raise ValueError(f"unknown method {m.name!r}")


def method_losses(
    cfg: Config, nets: nn.ModuleDict, views: list[torch.Tensor], loss_fn: Callable[..., torch.Tensor], sharp_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(L_sharp, L_rest) of the method on one batch, from its criterion ``loss_fn`` (see
    :func:`ssl_loss`). The step minimises L_sharp + L_rest, and SAM (where :func:`uses_sam`)
    acts on L_sharp only. ``views`` are the augmented views, plus the adversarial view last
    for robust_cl and rocl. ``sharp_only`` skips L_rest (SAM's second pass).
    """
    m, encoder = cfg.method, nets["encoder"]
    if m.name in ("simclr", "ssa_clr", "barlow_twins"):
        return loss_fn(project(encoder, views[0]), project(encoder, views[1])), None
    if m.name == "cacr":
        return loss_fn(torch.stack([project(encoder, v) for v in views])), None  # [K+1, B, D]
    if m.name == "two_network":  # the query network sees view 1, the key network view 2
        return loss_fn(project(encoder, views[0]), project(nets["key"], views[1])), None
    if m.name not in ADVERSARIAL_METHODS:
        raise ValueError(f"unknown method {m.name!r}")
    x1, x2, x2_adv = views
    z1 = project(encoder, x1)
    if m.name == "rocl":  # RoCL-style baseline: the adversarial InfoNCE alone
        return loss_fn(z1, project(encoder, x2_adv, adversarial=True)), None
    z2 = project(encoder, x2)
    benign = m.benign_w * loss_fn(z1, z2)
    if sharp_only:
        return benign, None
    z_adv = project(encoder, x2_adv, adversarial=True)
    rest = loss_fn(z1, z_adv) - m.d_w * discriminator_loss(nets["discriminator"], z2, z_adv, frozen=True)
    return benign, rest
