"""Multi-step ``sharpness`` against a plain loop of the same steps.

There is no library peer for SSA-CLR's sharpness, so the peer is the loop a user would write
by hand: backward for the gradient, normalise, step, project onto the ρ-ball, evaluate the
last point under ``no_grad``, and put the weights back. It follows the docstring of
:func:`theory.sharpness.sharpness` step for step (SAM ball, step α = ρ), so both return the
same value; ours adds input checks and restores every buffer, ``.grad`` and mode bitwise.
The model is the small ConvNet classifier of the Hessian benchmark, in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory.sharpness import sharpness

from .bench_hessian import fitted_convnet
from .harness import Agreement, Case

SIZES = {"full": (512, 16, 0.25), "tiny": (32, 8, 0.125)}  # batch, image side, width
RHO, STEPS = 0.05, 5


def plain_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float, steps: int) -> float:
    """max over the visited points of L(θ+ε) − L(θ), by normalised-gradient ascent in the ρ-ball."""
    params = [p for p in model.parameters() if p.requires_grad]
    theta = [p.detach().clone() for p in params]

    def loss_and_grad() -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [p.grad for p in params]

    def norm(ts: list[torch.Tensor]) -> torch.Tensor:
        return torch.sqrt(sum(t.pow(2).sum() for t in ts))

    loss0, g = loss_and_grad()
    w = [rho * gi / norm(g) for gi in g]
    best = 0.0
    for k in range(steps):
        with torch.no_grad():
            for p, t, wi in zip(params, theta, w):
                p.copy_(t + wi)
        if k == steps - 1:
            with torch.no_grad():
                best = max(best, F.cross_entropy(model(x), y).item() - loss0)
            break
        loss, g = loss_and_grad()
        best = max(best, loss - loss0)
        gn = norm(g)
        w = [wi + rho * gi / gn for wi, gi in zip(w, g)]
        shrink = torch.clamp(rho / norm(w), max=1.0)
        w = [wi * shrink for wi in w]
    with torch.no_grad():
        for p, t in zip(params, theta):
            p.copy_(t)
    model.zero_grad(set_to_none=True)
    return best


def case(size: str = "full") -> Case:
    batch, side, width = SIZES[size]
    model, x, y = fitted_convnet(batch, side, width, fit_steps=100 if size == "full" else 10)

    def ours() -> float:
        return sharpness(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), [(x, y)], rho=RHO, steps=STEPS)

    def peer() -> float:
        return plain_sharpness(model, x, y, RHO, STEPS)

    def agree(a: float, p: float) -> Agreement:
        rel = abs(a - p) / max(abs(p), 1e-12)
        return rel <= 1e-4, f"S_ρ {a:.6g} vs {p:.6g}"

    return Case(
        name=f"`sharpness` (SAM ball, {STEPS} steps)", peer="a plain PyTorch loop of the same steps",
        ours=ours, run_peer=peer, agree=agree, target=1.0,
        size=f"ConvNet, batch {batch} of {side}×{side}, ρ = {RHO}", number=2, peer_number=2,
        note=(
            "the same forward and backward passes on both sides, so the ratio is about 1 by construction; ours adds "
            "under a millisecond to snapshot and restore the model bitwise."
        ),
    )
