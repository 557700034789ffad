"""Sharpness-aware minimisation (SAM, Foret et al. 2021) and its adaptive form (ASAM, Kwon et
al. 2021) as a wrapper around the training loop's optimizer (SSA-CLR and robust CL, PAPERS.md
§1–§2).

One SAM update of the loss L_sharp (+ an optional L_rest that SAM leaves alone):

    g   = ∇L_sharp(θ)
    e   = ρ·T²g / ‖Tg‖         T = I (SAM) or T = diag(|θ| + η) (ASAM)     first_step
    g'  = ∇L_sharp(θ + e) + ∇L_rest(θ)                                      (BatchNorm statistics frozen)
    θ   ← base_step(θ, g')                                                  second_step

so the update minimises max_{‖T⁻¹e‖≤ρ} L_sharp(θ + e) + L_rest(θ), to first order in ρ. The
second forward pass would otherwise update the BatchNorm running statistics a second time,
at perturbed weights; :func:`frozen_batchnorm_stats` keeps them as the first pass left them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn


class SAM:
    """SAM / ASAM around a base optimizer, with explicit ``first_step`` and ``second_step``.

    Args:
        params: the parameters SAM perturbs (those of the encoder).
        base_optimizer: takes the actual step in ``second_step``; it may hold more
            parameters (e.g. a discriminator), which move only if they have gradients.
        rho: radius ρ > 0 of the weight ball.
        adaptive: ASAM's scale-invariant ball ‖e/(|θ| + η)‖ ≤ ρ.
        eta: η of ASAM; 0 as in PAPERS.md §1 (parameters equal to 0 are then not perturbed).

    Example:
        >>> w = nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> sam = SAM([w], opt, rho=0.5)
        >>> w.grad = torch.tensor([0.0, 2.0]); sam.first_step(); w.tolist()
        [3.0, 4.5]
        >>> w.grad = torch.tensor([1.0, 1.0]); sam.second_step(); w.tolist()   # back to θ, then the step
        [2.9000000953674316, 3.9000000953674316]
    """

    def __init__(self, params: Iterable[nn.Parameter], base_optimizer: torch.optim.Optimizer, rho: float, adaptive: bool = False, eta: float = 0.0) -> None:
        if not rho > 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}")
        if eta < 0:
            raise ValueError(f"ASAM needs eta >= 0, got {eta}")
        self.params = [p for p in params if p.requires_grad]
        self.base_optimizer = base_optimizer
        self.rho, self.adaptive, self.eta = rho, adaptive, eta
        self._saved: list[tuple[nn.Parameter, torch.Tensor]] = []

    @torch.no_grad()
    def first_step(self) -> None:
        """θ ← θ + e(θ) from the gradients in ``.grad``; saves θ and clears ``.grad``."""
        if self._saved:
            raise RuntimeError("SAM.first_step called twice without second_step")
        with_grad = [p for p in self.params if p.grad is not None]
        scales = [p.abs() + self.eta if self.adaptive else None for p in with_grad]
        scaled = [p.grad if s is None else s * p.grad for p, s in zip(with_grad, scales)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in scaled])) if scaled else None
        for p, s, tg in zip(with_grad, scales, scaled):
            # A zero gradient gives e = 0 rather than 0/0.
            e = (tg if s is None else s * tg) * (self.rho / norm.clamp_min(torch.finfo(norm.dtype).tiny))
            self._saved.append((p, p.detach().clone()))
            p.add_(e)
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def second_step(self, extra_grads: list[torch.Tensor | None] | None = None) -> None:
        """Restores θ exactly (from the saved copy), adds ``extra_grads`` (one per parameter of
        ``params``, e.g. ∇L_rest(θ)) to ``.grad``, and takes the base optimizer's step."""
        for p, theta in self._saved:
            p.copy_(theta)
        self._saved = []
        if extra_grads is not None:
            for p, g in zip(self.params, extra_grads):
                if g is not None:
                    p.grad = g.clone() if p.grad is None else p.grad.add_(g)
        self.base_optimizer.step()


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with batch statistics (train mode) but leave their running
    statistics and ``num_batches_tracked`` untouched, for SAM's second forward pass.

    Example:
        >>> bn = nn.BatchNorm1d(2)
        >>> with frozen_batchnorm_stats(bn):
        ...     _ = bn(torch.randn(8, 2))
        >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
        ([0.0, 0.0], 0)
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    flags = [m.track_running_stats for m in layers]
    try:
        for m in layers:
            m.track_running_stats = False  # in train mode: batch statistics, no running update
        yield
    finally:
        for m, flag in zip(layers, flags):
            m.track_running_stats = flag


def sam_update(sam: SAM, model: nn.Module, loss_sharp: torch.Tensor, loss_rest: torch.Tensor | None, recompute_sharp: Callable[[], torch.Tensor]) -> None:
    """One SAM/ASAM update of L_sharp + L_rest, with SAM on L_sharp only (see the module docstring).

    ``loss_sharp`` and ``loss_rest`` were computed at θ (they may share a graph);
    ``recompute_sharp()`` evaluates L_sharp again at the current (perturbed) weights. The
    gradients of L_rest are taken at θ, as the official robust-CL code does (PAPERS.md §1).
    """
    rest_grads = None
    if loss_rest is not None:
        rest_grads = list(torch.autograd.grad(loss_rest, sam.params, retain_graph=True, allow_unused=True))
    loss_sharp.backward()
    sam.first_step()
    with frozen_batchnorm_stats(model):
        recompute_sharp().backward()
    sam.second_step(rest_grads)
