"""``info_nce`` forward + backward against pytorch-metric-learning's ``NTXentLoss``.

NTXentLoss takes the 2B embeddings with labels [0..B−1, 0..B−1]: each of the 2B anchors has
one positive (its other view) and 2B − 2 negatives, and the loss is the mean over the 2B
positive pairs, which is exactly NT-Xent. Both sides return the loss and the gradients.

NTXentLoss materialises a [2B, 2B·(2B − 2)] matrix (every positive pair against every
negative pair) and several temporaries of that size, so its memory grows as B³: about 2.5 GB
at B = 256 and about 20 GB at B = 512. The issue's B = 512 is used when the machine has
room for it; otherwise the row runs at B = 256 and says so.
"""

from __future__ import annotations

import torch

from clbounds.theory.losses import info_nce

from .harness import Agreement, Case

D, TEMPERATURE = 128, 0.5
SIZES = {"full": 512, "fallback": 256, "tiny": 16}
PEER_COPIES = 5  # NTXentLoss's peak, in [2B, 2B(2B−2)] float32 matrices (measured at B = 256)


def peer_peak_bytes(b: int) -> int:
    """Estimated peak memory of NTXentLoss forward + backward at batch size b."""
    return PEER_COPIES * 4 * (2 * b) ** 2 * (2 * b - 2)


def available_bytes() -> int:
    """Free host memory (experiments.resources; 0 where it cannot be read)."""
    from clbounds.experiments.training.resources import available_bytes as free

    return free(torch.device("cpu")) or 0


def loss_and_grads(loss: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(loss, ∂loss/∂z1, ∂loss/∂z2): what each side of an ``info_nce`` row returns."""
    return (loss.detach(), *torch.autograd.grad(loss, (z1, z2)))


def agree(a: tuple[torch.Tensor, ...], p: tuple[torch.Tensor, ...]) -> Agreement:
    """Loss and gradients equal to 1e-5 (float32)."""
    dv = float((a[0] - p[0]).abs())
    dg = max(float((ga - gp).abs().max()) for ga, gp in zip(a[1:], p[1:]))
    return dv <= 1e-5 and dg <= 1e-5, f"|Δloss| = {dv:.1e}, max |Δgrad| = {dg:.1e}"


def case(size: str = "full") -> Case:
    from pytorch_metric_learning.losses import NTXentLoss

    b, note = SIZES[size], ""
    if size == "full" and available_bytes() < 1.25 * peer_peak_bytes(b):
        b = SIZES["fallback"]
        note = (
            f"run at B = {b}, not 512: NTXentLoss would need about {peer_peak_bytes(512) / 2**30:.0f} GiB at B = 512 "
            f"(its memory grows as B³) and this machine had {available_bytes() / 2**30:.0f} GiB available."
        )
    d = D if size != "tiny" else 8
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(b, d, generator=g).requires_grad_(True)
    z2 = torch.randn(b, d, generator=g).requires_grad_(True)
    labels = torch.arange(b).repeat(2)
    peer_loss = NTXentLoss(temperature=TEMPERATURE)

    def ours() -> tuple[torch.Tensor, ...]:
        return loss_and_grads(info_nce(z1, z2, temperature=TEMPERATURE), z1, z2)

    def peer() -> tuple[torch.Tensor, ...]:
        return loss_and_grads(peer_loss(torch.cat([z1, z2]), labels), z1, z2)

    return Case(
        name="`info_nce` forward+backward", peer="pytorch-metric-learning `NTXentLoss`",
        ours=ours, run_peer=peer, agree=agree, target=1.0, size=f"B={b}, D={d}, float32", number=20, note=note,
    )
