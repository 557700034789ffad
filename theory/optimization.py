"""Optimisation quantities of end-to-end contrastive training (Wen 2020, PAPERS.md §3).

Wen proves that gradient descent on two over-parameterised networks reaches an
ε-approximate stationary point once the width is polynomially large. The measurable
consequences are a vanishing full-batch gradient norm, a relative weight movement that
shrinks with width (the lazy regime), and power laws in the width, read off log-log slopes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

# The flatten / gradient / restore machinery is shared with the sharpness terms.
from clbounds.theory.sharpness import LossFn, _as_list, _loss_and_grad, _preserved
from clbounds.theory.validation import validated

__all__ = ["full_batch_gradient_norm", "relative_weight_movement", "loglog_slope"]


def full_batch_gradient_norm(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    params: Iterable[nn.Parameter] | None = None,
    squared: bool = False,
) -> float:
    r"""Full-batch gradient norm ‖∇_{W,V} L̂(W, V)‖_F of Wen (2020) (PAPERS.md §3).

    L̂ = (1/n_b) Σ_b loss_fn(model, b) is the mean of the batch losses, so its gradient is
    the mean of the batch gradients (one batch graph alive at a time). With equal-sized
    batches of a per-sample mean this is the gradient of the full-data mean; for unequal
    batches weight the losses inside ``loss_fn``. The norm is taken jointly over ``params``
    (default: every parameter with ``requires_grad``, i.e. both networks W and V when the
    model holds both). ``squared=True`` gives ‖∇L̂‖_F², the quantity of Wen's theorem.
    The model (weights, buffers, ``.grad``, mode) is left exactly as found.

    Examples:
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> loss_fn = lambda m, b: 0.5 * m.weight.pow(2).sum()  # gradient = weight
        >>> full_batch_gradient_norm(model, loss_fn, [None])
        5.0
    """
    batches = _as_list(batches)
    params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    if not params:
        raise ValueError("no parameters to differentiate: pass params or unfreeze the model")
    if not all(p.requires_grad for p in params):
        raise ValueError("every parameter in params must have requires_grad=True")
    with _preserved(model):
        _, grad = _loss_and_grad(model, loss_fn, batches, params)
    sq = float(grad.double().pow(2).sum())
    return sq if squared else math.sqrt(sq)


def _named_tensors(obj: Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return {name: p.detach() for name, p in obj.named_parameters()}
    return {name: t.detach() for name, t in obj.items()}


def relative_weight_movement(
    current: Mapping[str, torch.Tensor] | nn.Module,
    initial: Mapping[str, torch.Tensor] | nn.Module,
    per_layer: bool = False,
) -> float | dict[str, float]:
    r"""Relative weight movement ‖W_t − W_0‖_F / ‖W_0‖_F of Wen (2020) (PAPERS.md §3).

    Taken jointly over all tensors (the Frobenius norm of the concatenated parameters), or,
    with ``per_layer=True``, per tensor as a dict name → ratio. A module contributes its
    ``named_parameters()``; a mapping (e.g. a state dict) contributes every entry, so drop
    buffers such as BatchNorm statistics first if they should not count. Sums are in float64.

    Raises ValueError if the names differ, shapes differ, or ‖W_0‖ = 0 jointly. Per layer,
    tensors whose initial norm is 0 (e.g. zero-initialised biases) have no defined ratio and
    are left out of the dict.

    Examples:
        >>> w0 = {"w": torch.tensor([3.0, 4.0])}
        >>> relative_weight_movement({"w": torch.tensor([3.0, 4.5])}, w0)
        0.1
    """
    cur, ini = _named_tensors(current), _named_tensors(initial)
    if cur.keys() != ini.keys():
        raise ValueError(f"current and initial name different tensors: {sorted(cur.keys() ^ ini.keys())}")
    moved: dict[str, float] = {}
    size: dict[str, float] = {}
    for name, w0 in ini.items():
        wt = cur[name]
        if wt.shape != w0.shape:
            raise ValueError(f"{name}: shape {tuple(wt.shape)} != initial shape {tuple(w0.shape)}")
        w0 = w0.to(device=wt.device, dtype=torch.float64)
        moved[name] = float((wt.double() - w0).pow(2).sum())
        size[name] = float(w0.pow(2).sum())
    if per_layer:
        return {name: math.sqrt(moved[name] / size[name]) for name in ini if size[name] > 0}
    total = sum(size.values())
    if total == 0:
        raise ValueError("the initial weights have norm 0: the relative movement is undefined")
    return math.sqrt(sum(moved.values()) / total)


@validated(confidence="> 0, < 1")
def loglog_slope(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    r"""Least-squares power-law fit log y = intercept + slope·log x (PAPERS.md §3, "fitted slopes").

    Natural logarithms, so y ≈ e^intercept·x^slope. ``low``/``high`` bound the slope with a
    two-sided Student-t interval at level ``confidence`` on n − 2 degrees of freedom;
    ``r2`` is the coefficient of determination of the log-log fit (1 for a perfect fit,
    including the constant-y case where it is otherwise 0/0).

    Raises ValueError for fewer than 3 points, non-positive or non-finite values, or x all
    equal.

    Examples:
        >>> fit = loglog_slope([1, 2, 4, 8], [3.0, 1.5, 0.75, 0.375])
        >>> round(fit["slope"], 12), round(fit["r2"], 12)
        (-1.0, 1.0)
    """
    lx, ly = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if lx.shape != ly.shape or lx.ndim != 1:
        raise ValueError(f"x and y must be 1-d of one length, got shapes {lx.shape} and {ly.shape}")
    n = lx.size
    if n < 3:
        raise ValueError(f"a slope with a confidence interval needs at least 3 points, got {n}")
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly)) and np.all(lx > 0) and np.all(ly > 0)):
        raise ValueError("x and y must be finite and > 0 for a log-log fit")
    lx, ly = np.log(lx), np.log(ly)
    dx, dy = lx - lx.mean(), ly - ly.mean()
    sxx = float(dx @ dx)
    if sxx == 0:
        raise ValueError("x values are all equal: the slope is undefined")
    slope = float(dx @ dy) / sxx
    intercept = float(ly.mean() - slope * lx.mean())
    ss_res = float(np.sum((ly - intercept - slope * lx) ** 2))
    ss_tot = float(dy @ dy)
    stderr = math.sqrt(ss_res / (n - 2) / sxx)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * stderr
    r2 = 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {"slope": slope, "intercept": intercept, "low": slope - half, "high": slope + half, "r2": r2}
