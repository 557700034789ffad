"""What several methods share: the projection on a BatchNorm branch, the adversarial view of
robust CL and RoCL (PAPERS.md §1), and the discriminator of robust CL."""

from __future__ import annotations

import torch
from torch import nn

from clbounds.theory.adversarial import contrastive_attack
from clbounds.theory.losses import discriminator_loss

from ...config import Config
from ...models.encoders import bn_branch


def project(model: nn.Module, x: torch.Tensor, adversarial: bool = False) -> torch.Tensor:
    """The projection z = g(f(x)) in float32, on the benign or adversarial BatchNorm branch.

    On CUDA the forward pass runs under bfloat16 autocast; the losses are computed in float32.
    """
    with bn_branch(model, adversarial), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        z = model.projector(model(x))
    return z.float()


# ---- robust contrastive learning (PAPERS.md §1) ----------------------------------------


def build_discriminator(proj_dim: int) -> nn.Linear:
    """D = Linear(proj_dim → 1); sigmoid(D(ẑ)) is the probability that ẑ = z/‖z‖ is benign."""
    return nn.Linear(proj_dim, 1)


def discriminator_term(discriminator: nn.Linear, z_benign: torch.Tensor, z_adv: torch.Tensor, frozen: bool = False) -> torch.Tensor:
    """L_D of ``theory.losses.discriminator_loss`` for this discriminator. With ``frozen`` its
    weights are detached: the encoder's objective (… − d_w·L_D) sends gradients into z but
    never into D, which has its own step."""
    w, b = discriminator.weight, discriminator.bias
    if frozen:
        w, b = w.detach(), b.detach()
    return discriminator_loss(z_benign, z_adv, w, b)


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
    return discriminator_term(discriminator, _eval_projections(model, x_benign, False), _eval_projections(model, x_adv, True))
