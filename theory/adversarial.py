"""Adversarial attacks and robust accuracy (robust contrastive learning, PAPERS.md §1).

Every attack is projected gradient ascent (PGD, Madry et al. 2018) on a differentiable
objective of the perturbed input, under an L∞ or L2 ball of radius ε intersected with the
pixel box [0, 1]. Models take [0, 1] inputs (normalisation sits inside ``forward``), so ε is
in pixel units.

During an attack the model (and a discriminator, if any) is put in eval mode, so BatchNorm
uses and does not update its running statistics, and its parameters stop requiring
gradients, so no ``.grad`` is written; both are restored afterwards, even on error.

Defaults follow PAPERS.md §1: training attacks ε = 8/255, step 2/255, 7 steps; evaluation
PGD-20 with ε = 8/255, step 0.8/255.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory.losses import info_nce
from clbounds.theory.validation import validated

__all__ = [
    "TRAIN_EPS",
    "TRAIN_ALPHA",
    "TRAIN_STEPS",
    "EVAL_EPS",
    "EVAL_ALPHA",
    "EVAL_STEPS",
    "pgd",
    "robust_accuracy",
    "NearestCenterClassifier",
    "nearest_center_logits",
    "representation_attack",
    "contrastive_attack",
]

TRAIN_EPS, TRAIN_ALPHA, TRAIN_STEPS = 8 / 255, 2 / 255, 7
EVAL_EPS, EVAL_ALPHA, EVAL_STEPS = 8 / 255, 0.8 / 255, 20

_NORMS = ("linf", "l2")


@contextlib.contextmanager
def _frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode and requires_grad=False for the duration; the previous state is restored."""
    modules = tuple(m for m in modules if m is not None)
    modes = [[(sub, sub.training) for sub in m.modules()] for m in modules]
    params = {id(p): (p, p.requires_grad) for m in modules for p in m.parameters()}
    try:
        for m in modules:
            m.eval()
        for p, _ in params.values():
            p.requires_grad_(False)
        yield
    finally:
        for per_module in modes:
            for sub, training in per_module:
                sub.train(training)
        for p, flag in params.values():
            p.requires_grad_(flag)


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖₂ over all but the batch dimension, shaped to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """δ₀ uniform in the L∞ cube, or uniform in the L2 ball (Gaussian direction, radius ε·U^{1/n})."""
    device = generator.device if generator is not None else x.device
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        return (2 * u - 1) * eps
    g = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    r = torch.rand(x.shape[0], generator=generator, device=device, dtype=x.dtype).to(x.device)
    n = x[0].numel()
    radius = (eps * r.pow(1.0 / n)).view(-1, *([1] * (x.ndim - 1)))
    return g / _per_sample_norm(g).clamp_min(torch.finfo(x.dtype).tiny) * radius


def _project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project x_adv onto {‖x' − x‖ ≤ ε} ∩ [0, 1]ᴺ.

    Clamping after the ε-projection keeps the ε constraint: x ∈ [0, 1], so the clamp only
    moves a coordinate of x + δ toward x's and never increases |δ_i|.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        scale = (eps / _per_sample_norm(delta).clamp_min(torch.finfo(x.dtype).tiny)).clamp(max=1.0)
        delta = delta * scale
    return (x + delta).clamp(0.0, 1.0)


def _check_attack(x: torch.Tensor, eps: float, alpha: float, steps: int, norm: str) -> None:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    lo, hi = torch.stack(torch.aminmax(x)).tolist()  # one device-to-host sync, not two
    if lo < 0 or hi > 1:
        raise ValueError("inputs must lie in [0, 1] (models take [0, 1] pixels)")


def _pgd_maximise(
    objective: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    random_start: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    r"""Projected ascent on objective(x_adv) (a scalar) from x (+ δ₀).

    L∞ step: x ← Π(x + α·sign ∇); L2 step: x ← Π(x + α·∇/‖∇‖) per sample. A zero gradient
    (also an objective that does not depend on x_adv at all) gives a zero step. Returns the
    last iterate, detached.
    """
    x = x.detach()
    x_adv = _project(x, x + _random_start(x, eps, norm, generator), eps, norm) if random_start else x.clone()
    if norm == "linf" and steps > 0:
        # The L∞ ball ∩ [0, 1] is the box [max(x − ε, 0), min(x + ε, 1)]: computing its
        # corners once makes each projection one clamp instead of four elementwise passes.
        with torch.no_grad():
            lower, upper = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            value = objective(x_adv)
            # A model whose output does not depend on its input (a constant) leaves the
            # objective outside x_adv's graph: its gradient is 0, not an autograd error.
            grad = torch.autograd.grad(value, x_adv, allow_unused=True)[0] if value.requires_grad else None
        if grad is None:
            grad = torch.zeros_like(x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = torch.clamp(x_adv.add(grad.sign_(), alpha=alpha), lower, upper)
            else:
                step = grad / _per_sample_norm(grad).clamp_min(torch.finfo(x.dtype).tiny)
                x_adv = _project(x, x_adv + alpha * step, eps, norm)
    return x_adv.detach()


@validated(labels=("y",), eps=">= 0", alpha=">= 0", steps=">= 0")
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = TRAIN_EPS,
    alpha: float = TRAIN_ALPHA,
    steps: int = TRAIN_STEPS,
    norm: str = "linf",
    random_start: bool = True,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Projected gradient descent attack (Madry et al. 2018; PAPERS.md §1, PGD-L∞ and PGD-L2).

    Maximises the cross-entropy Σ_i CE(model(x_adv)_i, y_i) (logits), or
    ``loss_fn(model, x_adv, y)`` if given, over x_adv ∈ B_ε(x) ∩ [0, 1]ᴺ with

        L∞: x ← Π(x + α·sign ∇),      L2: x ← Π(x + α·∇/‖∇‖₂),

    from a uniform random start in the ball (``random_start``). The summed loss makes each
    sample's step independent of the rest of the batch (the model runs in eval mode).

    Args:
        model: maps [B, ...] inputs in [0, 1] to [B, K] logits.
        x: [B, ...] inputs in [0, 1].
        y: [B] int64 labels.
        eps: radius ε ≥ 0 of the ball.
        alpha: step size ≥ 0.
        steps: number of steps ≥ 0.
        norm: "linf" or "l2".
        random_start: start from a uniform point of the ball instead of x.
        loss_fn: optional ``loss_fn(model, x_adv, y) -> scalar`` to maximise.
        generator: drives the random start.

    Returns:
        x_adv with x's shape and dtype, in [0, 1], within ε of x, detached.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=7)
        >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
        True
    """
    _check_attack(x, eps, alpha, steps, norm)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")

    def objective(x_adv: torch.Tensor) -> torch.Tensor:
        if loss_fn is not None:
            return loss_fn(model, x_adv, y)
        return F.cross_entropy(model(x_adv), y, reduction="sum")

    with _frozen(model):
        if loss_fn is None:  # cross-entropy indexes the logits by y: check the range, not IndexError deep in the loss
            with torch.no_grad():
                k = model(x[:1]).shape[-1]
            if int(y.max()) >= k:
                raise ValueError(f"pgd: y holds the label {int(y.max())}, but the model gives {k} logits (labels 0..{k - 1})")
        return _pgd_maximise(objective, x, eps, alpha, steps, norm, random_start, generator)


@validated(labels=("y",), eps=">= 0", alpha=">= 0", steps=">= 0", batch_size=">= 1")
def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = EVAL_EPS,
    alpha: float = EVAL_ALPHA,
    steps: int = EVAL_STEPS,
    norm: str = "linf",
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    return_adversarial: bool = False,
) -> dict[str, Any]:
    r"""Clean and PGD-robust accuracy and robust cross-entropy (PAPERS.md §1, evaluation).

    Default is the §1 protocol, PGD-20 L∞ with ε = 8/255 and step 0.8/255. x itself lies in
    the ε-ball, so per sample the attack keeps the worse of x and the PGD output: a sample is
    robustly correct only if both are classified correctly, and its robust CE is the larger
    of the two CEs. Hence robust accuracy ≤ clean accuracy and robust CE ≥ clean CE always.

    Returns:
        dict with ``clean_accuracy``, ``robust_accuracy`` (fractions in [0, 1]),
        ``clean_cross_entropy``, ``robust_cross_entropy`` (means, nats) and ``n``; with
        ``return_adversarial`` also ``adversarial``, the PGD points (a tensor like x), so a
        caller can measure something else at the very points that decided the accuracy.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> x, y = torch.rand(10, 3, 2, 2), torch.randint(0, 3, (10,))
        >>> r = robust_accuracy(model, x, y, steps=2)
        >>> r["robust_accuracy"] <= r["clean_accuracy"]
        True
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must be non-empty with one batch size, got {x.shape[0]} and {y.shape[0]}")
    # Per-batch sums stay on the device (counts as int64, CEs in the logits' dtype) and are
    # read once at the end, instead of four host syncs per batch.
    counts, ces, points = [], [], []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        x_adv = pgd(model, xb, yb, eps, alpha, steps, norm=norm, generator=generator)
        if return_adversarial:
            points.append(x_adv)
        with _frozen(model), torch.no_grad():
            logits, logits_adv = model(xb), model(x_adv)
        ce = F.cross_entropy(logits, yb, reduction="none")
        ce_adv = torch.maximum(ce, F.cross_entropy(logits_adv, yb, reduction="none"))
        ok = logits.argmax(1) == yb
        robust_ok = ok & (logits_adv.argmax(1) == yb)
        counts.append(torch.stack([ok.sum(), robust_ok.sum()]))
        ces.append(torch.stack([ce.sum(), ce_adv.sum()]))
    clean_correct = robust_correct = 0
    clean_ce = robust_ce = 0.0
    for (c, r), (ce_sum, ce_adv_sum) in zip(torch.stack(counts).tolist(), torch.stack(ces).tolist()):
        clean_correct += c
        robust_correct += r
        clean_ce += ce_sum
        robust_ce += ce_adv_sum
    n = x.shape[0]
    out: dict[str, Any] = {
        "clean_accuracy": clean_correct / n,
        "robust_accuracy": robust_correct / n,
        "clean_cross_entropy": clean_ce / n,
        "robust_cross_entropy": robust_ce / n,
        "n": n,
    }
    if return_adversarial:
        out["adversarial"] = torch.cat(points)
    return out


class NearestCenterClassifier(nn.Module):
    r"""Logits −‖f(x) − μ_k‖² of the nearest-centre classifier G_f (Huang et al., PAPERS.md §5).

    argmax of the logits is argmin_k ‖f(x) − μ_k‖, so PGD on their cross-entropy attacks
    G_f. With ``normalize`` the features are L2-normalised first (z = f/‖f‖, as the centres
    of normalised embeddings are computed); the centres themselves are used as given (their
    norm is ≤ 1, not = 1). The centres are a buffer: they move with ``.to`` and get no grad.
    """

    def __init__(self, encoder: nn.Module, centers: torch.Tensor, normalize: bool = True) -> None:
        super().__init__()
        if centers.ndim != 2 or centers.shape[0] == 0:
            raise ValueError(f"centers must be a non-empty [K, D] tensor, got shape {tuple(centers.shape)}")
        self.encoder = encoder
        self.normalize = normalize
        self.register_buffer("centers", centers.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        if self.normalize:
            z = F.normalize(z, dim=1)
        mu = self.centers.to(z.dtype)
        # −‖z − μ‖² = 2zᵀμ − ‖z‖² − ‖μ‖²: one matmul, smooth everywhere (no sqrt).
        return 2 * z @ mu.T - z.pow(2).sum(1, keepdim=True) - mu.pow(2).sum(1)


@validated
def nearest_center_logits(encoder: nn.Module, centers: torch.Tensor, normalize: bool = True) -> NearestCenterClassifier:
    r"""Wrap an encoder and class centres μ_k as a classifier with logits −‖f(x) − μ_k‖².

    The nearest-centre classifier G_f(x) = argmin_k ‖f(x) − μ_k‖ of Huang et al. (PAPERS.md
    §5, Theorem 1), in a form :func:`pgd` and :func:`robust_accuracy` can attack (§1).

    Examples:
        >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> clf = nearest_center_logits(enc, torch.eye(4)[:3])
        >>> clf(torch.rand(5, 3, 2, 2)).shape
        torch.Size([5, 3])
    """
    return NearestCenterClassifier(encoder, centers, normalize=normalize)


@validated(eps=">= 0", alpha=">= 0", steps=">= 0", batch_size=">= 1")
def representation_attack(
    encoder: nn.Module,
    x: torch.Tensor,
    eps: float = TRAIN_EPS,
    alpha: float = TRAIN_ALPHA,
    steps: int = TRAIN_STEPS,
    norm: str = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Largest representation shift in the ε-ball, sup_δ ‖f(x + δ) − f(x)‖ (PAPERS.md §1).

    This is the gap term of the rigorous route of §1: a √2-Lipschitz CE on a linear head W
    gives robust loss ≤ benign loss + ‖W‖·E sup_δ ‖f(x+δ) − f(x)‖. PGD maximises
    Σ_i ‖f(x_adv,i) − f(x_i)‖² (squared: smooth at δ = 0, same maximiser per sample); the
    result is a lower estimate of the sup. For an L-Lipschitz f the gap is ≤ L·ε (L2 ball)
    and ≤ L·√n·ε (L∞ ball in n dimensions).

    The encoder runs in eval mode, so every input's perturbation depends on that input alone,
    and the inputs are attacked ``batch_size`` at a time: the memory of the backward pass is
    bounded whatever N is (the measure-scaling benchmark found 2.2 GB at N = 5,000 for a
    ResNet-18 of width 1/16 when the whole sample was one batch). The random start is drawn
    batch by batch from ``generator``.

    Returns:
        (x_adv, gap) with gap[i] = ‖f(x_adv,i) − f(x_i)‖₂, both detached.

    Examples:
        >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> x_adv, gap = representation_attack(enc, torch.rand(5, 3, 2, 2))
        >>> gap.shape
        torch.Size([5])
    """
    _check_attack(x, eps, alpha, steps, norm)
    points, gaps = [], []
    with _frozen(encoder):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            with torch.no_grad():
                f_clean = encoder(xb)

            def objective(x_adv: torch.Tensor, f_clean: torch.Tensor = f_clean) -> torch.Tensor:
                return (encoder(x_adv) - f_clean).pow(2).sum()

            x_adv = _pgd_maximise(objective, xb, eps, alpha, steps, norm, random_start, generator)
            with torch.no_grad():
                gaps.append((encoder(x_adv) - f_clean).flatten(1).norm(dim=1))
            points.append(x_adv)
    return torch.cat(points), torch.cat(gaps)


@validated(eps=">= 0", alpha=">= 0", steps=">= 0", temperature="> 0", d_w=">= 0")
def contrastive_attack(
    encoder: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    eps: float = TRAIN_EPS,
    alpha: float = TRAIN_ALPHA,
    steps: int = TRAIN_STEPS,
    temperature: float = 0.5,
    norm: str = "linf",
    discriminator: nn.Module | None = None,
    d_w: float = 0.1,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""RoCL-style instance attack on the second view (Kim et al. 2020; PAPERS.md §1).

    Perturbs x2 within ε to maximise the adversarial InfoNCE

        info_nce(f(x1), f(x2_adv); τ) − d_w · BCE(D(z(x2_adv)), 0)

    where the second term is present only with a ``discriminator``, as in the official code
    of §1. D maps the L2-normalised embedding z = f/‖f‖ to one logit (the benign-vs-
    adversarial discriminator, label 0 = adversarial). x1 stays fixed.

    Returns:
        x2_adv, x2's shape, in [0, 1], within ε of x2, detached.

    Examples:
        >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> x1, x2 = torch.rand(6, 3, 2, 2), torch.rand(6, 3, 2, 2)
        >>> contrastive_attack(enc, x1, x2, steps=3).shape
        torch.Size([6, 3, 2, 2])
    """
    _check_attack(x2, eps, alpha, steps, norm)
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have one shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    with _frozen(encoder, discriminator):
        with torch.no_grad():
            z1 = encoder(x1)

        def objective(x_adv: torch.Tensor) -> torch.Tensor:
            z2 = encoder(x_adv)
            loss = info_nce(z1, z2, temperature=temperature)
            if discriminator is not None:
                logit = discriminator(F.normalize(z2, dim=1)).reshape(-1)
                loss = loss - d_w * F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit))
            return loss

        return _pgd_maximise(objective, x2, eps, alpha, steps, norm, random_start, generator)
