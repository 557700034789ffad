r"""Standard errors of the measured terms: the sampling noise a verdict must see beyond.

A term measured on a sample (test inputs, augmented views, batches, Monte-Carlo draws) is an
estimate of a population quantity; a bound check compares two such estimates, and
``bounds.common`` decides "holds" or "violated" only beyond a margin built from these standard
errors. Each function takes tensors (or a rate and a count) and returns the standard error as
a float64 tensor.

Example:
    >>> round(stderr_of_mean(torch.tensor([1.0, 2.0, 3.0, 4.0])).item(), 6)
    0.645497
    >>> round(binomial_stderr(0.0, 100).item(), 4)  # a rate of 0 still has a positive error
    0.0137
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def stderr_of_mean(values: Tensor) -> Tensor:
    r"""s/√n, the standard error of the mean of ``values`` (one value per sampled unit), with
    s the sample standard deviation (n − 1 in the denominator); 0 for a single value.

    Examples:
        >>> stderr_of_mean(torch.tensor([2.0, 2.0])).item()
        0.0
    """
    v = values.detach().double().flatten()
    if v.numel() < 2:
        return torch.zeros((), dtype=torch.float64)
    return v.std(unbiased=True) / math.sqrt(v.numel())


def binomial_stderr(rate: float | Tensor, n: int) -> Tensor:
    r"""The standard error of a rate of n Bernoulli trials, √(p̃(1 − p̃)/n) at the Agresti–Coull
    centre p̃ = (n·p + 2)/(n + 4), so that a rate of 0 or 1 (often measured: an error of 0,
    a misalignment rate of 1) keeps an error of the order 1/n instead of 0.

    Examples:
        >>> round(binomial_stderr(0.5, 100).item(), 4)
        0.05
    """
    if n < 1:
        raise ValueError(f"binomial_stderr needs n >= 1 trials, got {n}")
    p = (n * float(rate) + 2) / (n + 4)
    return torch.tensor(math.sqrt(p * (1 - p) / n), dtype=torch.float64)


def jackknife(full: Tensor | float, leave_one_out: Tensor) -> dict[str, Tensor]:
    r"""The delete-one jackknife of a statistic T of n sampled units: its standard error and bias.

        se_J = √((n − 1)/n · Σ_m (T₍₋ₘ₎ − T̄₍·₎)²),    bias_J = (n − 1)(T̄₍·₎ − T),

    with T₍₋ₘ₎ the statistic recomputed without unit m and T̄₍·₎ their mean. Unlike the standard
    error of per-unit terms, it sees every way a unit enters T: as an anchor and as a negative
    of a pair loss (a U-statistic), and through the class means and frequencies a mean
    classifier re-estimates from the same sample. ``bias_J`` estimates the plug-in bias of
    order 1/n (a sample's own point in its class mean).

    Args:
        full: T on all n units.
        leave_one_out: [n] the T₍₋ₘ₎.

    Examples:
        >>> out = jackknife(2.0, torch.tensor([2.5, 2.0, 1.5], dtype=torch.float64))   # T = the mean of 1, 2, 3
        >>> round(out["stderr"].item(), 6), round(out["bias"].item(), 6)   # s/√n = 1/√3, unbiased
        (0.57735, 0.0)
    """
    v = leave_one_out.detach().double().flatten()
    n = v.numel()
    if n < 2:
        zero = torch.zeros((), dtype=torch.float64)
        return {"stderr": zero, "bias": zero}
    centre = v.mean()
    return {"stderr": ((n - 1) / n * (v - centre).pow(2).sum()).sqrt(), "bias": (n - 1) * (centre - float(full))}


def grouped_jackknife(statistic: Callable[[Tensor], Tensor | float], n: int, groups: int = 10, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""The delete-a-group jackknife: the n units split at random into ``groups`` groups of equal
    size (±1), T recomputed without each group,

        se_J = √((G − 1)/G · Σ_g (T₍₋g₎ − T̄)²),    bias_J = (G − 1)(T̄ − T),

    for a statistic whose delete-one values have no closed form (a Monte-Carlo estimate over
    the sample's own inputs). ``statistic`` takes a boolean mask of the units kept. A Monte-Carlo
    statistic makes its own draws on each call, so its draw noise enters se_J about G − 1
    times over: conservative, never too small.

    Examples:
        >>> x = torch.arange(20, dtype=torch.float64)
        >>> out = grouped_jackknife(lambda keep: x[keep].mean(), 20, groups=20)   # one per group: delete-one
        >>> round(out["stderr"].item(), 6) == round(stderr_of_mean(x).item(), 6), abs(out["bias"].item()) < 1e-12
        (True, True)
    """
    if not 2 <= groups <= n:
        raise ValueError(f"grouped_jackknife needs 2 <= groups <= n, got groups={groups}, n={n}")
    fold = torch.empty(n, dtype=torch.long)
    fold[torch.randperm(n, generator=generator)] = torch.arange(n) % groups
    full = float(statistic(torch.ones(n, dtype=torch.bool)))
    leave_out = torch.tensor([float(statistic(fold != g)) for g in range(groups)], dtype=torch.float64)
    centre = leave_out.mean()
    return {"stderr": ((groups - 1) / groups * (leave_out - centre).pow(2).sum()).sqrt(), "bias": (groups - 1) * (centre - full)}


def collision_stderr(p: Tensor, n: int) -> Tensor:
    r"""The delta-method standard error of the plug-in collision probability τ̂ = Σ_c p̂_c²
    from n labels: Var τ̂ ≈ (4/n)(Σ_c p_c³ − (Σ_c p_c²)²).

    Examples:
        >>> collision_stderr(torch.tensor([0.5, 0.5], dtype=torch.float64), 100).item()  # balanced: first order 0
        0.0
    """
    p = p.double()
    var = 4.0 / n * ((p**3).sum() - (p**2).sum() ** 2)
    return var.clamp_min(0).sqrt()
