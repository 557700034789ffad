"""Shift between ideal and practical positive pairs (SSA-CLR, PAPERS.md §2; JS proxy of §1).

SSA-CLR compares two positive-pair distributions:
- *ideal*: two independent samples of one latent class (Arora et al. 2019, PAPERS.md §6);
- *practical*: two augmentations of one input.

The shift between them is measured as the exact InfoNCE gap, as a kernel (MMD²) or
optimal-transport (sliced Wasserstein) distance between the joint embeddings (z, z⁺), or as
the gap in mean positive cosine. The discriminator Jensen–Shannon proxy of §1 lives here too:
it is the same kind of two-sample divergence, between benign and adversarial features.

A pair distribution is passed as a tuple ``(z, z_pos)`` of two [B, D] tensors; to compare
joint distributions with :func:`mmd2` or :func:`sliced_wasserstein`, concatenate them,
``torch.cat([z, z_pos], dim=1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clbounds.theory.losses import info_nce
from clbounds.theory.validation import validated

__all__ = [
    "positive_pair_loss_gap",
    "infonce_range",
    "mmd2",
    "sliced_wasserstein",
    "positive_cosine_gap",
    "js_divergence",
]

# Largest number of entries of one pairwise block: 2^22 float64 entries are 32 MiB.
_BLOCK_ENTRIES = 1 << 22
# The median heuristic looks at the pairs of at most this many pooled points.
_MEDIAN_SUBSAMPLE = 2048


def _as_2d(x: torch.Tensor, name: str) -> torch.Tensor:
    """[N] → [N, 1]; [N, D] unchanged; anything else is an error."""
    if x.ndim == 1:
        return x.unsqueeze(1)
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N] or [N, D], got shape {tuple(x.shape)}")
    return x


def _two_samples(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same feature dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y.to(dtype=x.dtype, device=x.device)


def _check_pairs(ideal: tuple[torch.Tensor, torch.Tensor], practical: tuple[torch.Tensor, torch.Tensor]) -> None:
    for name, (z, z_pos) in (("ideal", ideal), ("practical", practical)):
        if z.shape != z_pos.shape or z.ndim != 2:
            raise ValueError(f"{name} must be two [B, D] tensors of one shape, got {tuple(z.shape)} and {tuple(z_pos.shape)}")


@validated(temperature="> 0")
def positive_pair_loss_gap(
    ideal: tuple[torch.Tensor, torch.Tensor],
    practical: tuple[torch.Tensor, torch.Tensor],
    temperature: float = 0.5,
) -> torch.Tensor:
    r"""Exact InfoNCE gap between ideal and practical positive pairs (SSA-CLR, PAPERS.md §2).

        gap = L_InfoNCE(ideal) − L_InfoNCE(practical),   so   L_un^ideal = L_un^practical + gap.

    The ideal pairs are (f(x), f(x⁺)) with x⁺ an independent sample of the class of x; the
    practical pairs are two augmentations of one input. Both go through the same
    :func:`theory.losses.info_nce`, so the gap is what the Arora-style bound (§6), which holds
    for the ideal loss, adds on top of the practically minimised loss. It is usually > 0:
    augmentations of one input are easier positives than two members of a class.

    Examples:
        >>> z = torch.randn(8, 4, dtype=torch.float64)
        >>> positive_pair_loss_gap((z, z.flip(0)), (z, z)).item() > 0
        True
    """
    _check_pairs(ideal, practical)
    return info_nce(*ideal, temperature=temperature) - info_nce(*practical, temperature=temperature)


def _log1p_exp(t: float) -> float:
    """log(1 + e^t) without overflow for large t (τ → 0 makes t = 2/τ huge)."""
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


@validated(num_negatives=">= 0", temperature="> 0")
def infonce_range(num_negatives: int, temperature: float) -> tuple[float, float]:
    r"""Interval that contains the per-anchor InfoNCE on normalised embeddings (PAPERS.md §2).

    Derivation. With cosines s⁺ (positive) and s_k (M negatives) of unit vectors,

        ℓ = log(e^{s⁺/τ} + Σ_k e^{s_k/τ}) − s⁺/τ = log(1 + Σ_k e^{(s_k − s⁺)/τ}),

    and s_k − s⁺ ∈ [−2, 2] because every cosine lies in [−1, 1]. Each of the M terms is
    therefore in [e^{−2/τ}, e^{2/τ}], so

        log(1 + M·e^{−2/τ}) ≤ ℓ ≤ log(1 + M·e^{2/τ}).

    The mean over anchors lies in the same interval, and so does any mixture, which is why
    the ideal/practical gap is at most (upper − lower)·TV(p_ideal, p_practical). The lower
    end is attained (positive at cosine 1, all negatives at −1, e.g. B = 2 with z1 = [e, −e]
    and z2 = z1), the upper end per anchor (positive antipodal to its negatives).

    For NT-Xent (:func:`theory.losses.info_nce`) on a batch of B inputs there are 2B rows;
    an anchor's softmax runs over the 2B − 1 other rows, one of which is its positive, so
    M = 2B − 2.

    Args:
        num_negatives: M ≥ 0.
        temperature: τ > 0.

    Returns:
        (lower, upper) as floats, computed without overflow for small τ.

    Examples:
        >>> lo, hi = infonce_range(num_negatives=14, temperature=0.5)
        >>> round(lo, 4), round(hi, 4)
        (0.2283, 6.6404)
    """
    if num_negatives == 0:
        return 0.0, 0.0
    log_m = math.log(num_negatives)
    return _log1p_exp(log_m - 2.0 / temperature), _log1p_exp(log_m + 2.0 / temperature)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² by the expansion ‖a‖² + ‖b‖² − 2aᵀb (one matmul), clamped at 0."""
    return torch.addmm(b_sq.unsqueeze(0), a, b.T, alpha=-2.0).add_(a_sq.unsqueeze(1)).clamp_(min=0.0)


def _rbf_kernel_sum(a: torch.Tensor, b: torch.Tensor | None, gamma: float) -> torch.Tensor:
    r"""Σ_{i,j} exp(−γ‖a_i − b_j‖²) over row blocks, so memory stays O(block · N).

    With b None it is Σ_{i≠j} over a against itself: the diagonal is left out and each
    off-diagonal block is computed once and counted twice (the kernel is symmetric).
    """
    a_sq = a.pow(2).sum(1)
    symmetric = b is None
    b_all, b_sq_all = (a, a_sq) if symmetric else (b, b.pow(2).sum(1))
    n_cols = b_all.shape[0]
    rows = max(1, _BLOCK_ENTRIES // max(n_cols, 1))
    total = a.new_zeros(())
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        if symmetric:
            # Columns from `start` on: the leading square holds the within-block pairs (both
            # orders), the rest are the pairs (i < j) with j beyond the block, counted twice.
            k = _sq_dists(a[start:stop], b_all[start:], a_sq[start:stop], b_sq_all[start:]).mul_(-gamma).exp_()
            square = k[:, : stop - start]
            total = total + square.sum() - square.diagonal().sum() + 2.0 * k[:, stop - start :].sum()
        else:
            k = _sq_dists(a[start:stop], b_all, a_sq[start:stop], b_sq_all).mul_(-gamma).exp_()
            total = total + k.sum()
    return total


def _median_bandwidth(z: torch.Tensor) -> float:
    """Median pairwise Euclidean distance of z (on an evenly strided subsample if large)."""
    if z.shape[0] > _MEDIAN_SUBSAMPLE:
        z = z[torch.linspace(0, z.shape[0] - 1, _MEDIAN_SUBSAMPLE, device=z.device).round().long()]
    sq = z.pow(2).sum(1)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    dist = _sq_dists(z, z, sq, sq)[iu[0], iu[1]].sqrt()
    h = torch.quantile(dist, 0.5).item()
    if h > 0:
        return h
    # Over half of the pairs coincide: fall back to the mean of the non-zero distances, and
    # to 1 when every point is equal (then k ≡ 1 and MMD² = 0 whatever h is).
    nonzero = dist[dist > 0]
    return nonzero.mean().item() if nonzero.numel() else 1.0


@validated(bandwidth="> 0")
def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None, paired: bool = False) -> torch.Tensor:
    r"""Unbiased RBF-kernel MMD² (Gretton et al. 2012, eq. 3; the shift term of PAPERS.md §2).

        MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j),

    with k(a, b) = exp(−‖a − b‖² / (2h²)). Being unbiased, it can be slightly negative when
    the two distributions are equal. With bandwidth None, h is the median pairwise distance
    of the pooled sample (the median heuristic); above 2048 pooled points it is the median
    over an evenly strided subsample of 2048 of them.

    Cost is O((m + n)² D) time and O(block · (m + n)) memory: the kernel sums are computed in
    row blocks of at most 2^22 entries, and within-sample blocks only once (symmetry). The
    matmuls dominate: on a busy 2-core CPU (float32, D = 128) m = n = 10,000 took 14 s and
    m = n = 20,000 48 s, in blocks of 2^22 entries; beyond ~10⁴ points use a GPU.

    With ``paired`` (m = n, row i of x and of y drawn together, e.g. sharing an anchor), the
    cross sum leaves out i = j: that is Gretton et al.'s eq. 3 for m = n, the U-statistic of
    h(z_i, z_j) = k(x_i, x_j) + k(y_i, y_j) − k(x_i, y_j) − k(x_j, y_i) over i ≠ j, which stays
    unbiased when x_i and y_i are dependent (the plain form above is biased low then, since
    the dependent pairs inflate the cross term).

    Args:
        x: [m, D] (or [m]) sample of P, m ≥ 2.
        y: [n, D] (or [n]) sample of Q, n ≥ 2.
        bandwidth: h > 0, or None for the median heuristic.
        paired: leave the i = j cross pairs out (needs m = n).

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(200, 2, generator=g, dtype=torch.float64)
        >>> mmd2(x, x + 3.0, bandwidth=1.0).item() > 0.5
        True
    """
    x, y = _two_samples(x, y)
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD² needs at least 2 points per sample, got {m} and {n}")
    # The kernel depends on ‖a − b‖/h only, so x, y and h may be scaled together: by a power
    # of two (exact in floating point) that brings the largest entry near 1, so that squared
    # distances of inputs at 1e20 (or 1e-20) neither overflow nor underflow.
    largest = float(torch.cat([x, y]).abs().max()) if x.device.type != "meta" else 0.0  # meta: shapes only
    scale = 2.0 ** math.floor(math.log2(largest)) if largest > 0 else 1.0
    x, y = x / scale, y / scale
    # Distances are translation invariant; centring cuts the cancellation in ‖a‖²+‖b‖²−2aᵀb.
    centre = torch.cat([x, y]).mean(0)
    x, y = x - centre, y - centre
    h = _median_bandwidth(torch.cat([x, y])) if bandwidth is None else float(bandwidth) / scale
    gamma = 1.0 / (2.0 * h * h)
    k_xx = _rbf_kernel_sum(x, None, gamma) / (m * (m - 1))
    k_yy = _rbf_kernel_sum(y, None, gamma) / (n * (n - 1))
    if paired:
        if m != n:
            raise ValueError(f"paired samples need one size, got {m} and {n}")
        diagonal = (x - y).pow(2).sum(1).mul(-gamma).exp().sum()
        k_xy = (_rbf_kernel_sum(x, y, gamma) - diagonal) / (m * (m - 1))
    else:
        k_xy = _rbf_kernel_sum(x, y, gamma) / (m * n)
    return k_xx + k_yy - 2.0 * k_xy


def _random_directions(
    n: int, dim: int, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """n directions uniform on the unit sphere S^{dim−1} (normalised Gaussians)."""
    device = generator.device if generator is not None else like.device
    g = torch.randn(n, dim, generator=generator, device=device, dtype=like.dtype).to(like.device)
    # A Gaussian vector is zero with probability 0; the clamp only guards the division.
    return g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(like.dtype).tiny)


def _quantile_coupling(m: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Exact monotone coupling of two empirical 1-D measures with m and n atoms.

    The quantile functions of the sorted samples are step functions that jump at i/m and
    j/n. On each interval between consecutive breakpoints of the union both are constant,
    so W_p^p = Σ_intervals width · |x_(ix) − y_(iy)|^p exactly. Returns (ix, iy, width).
    For m = n this is the sorted pairing x_(i) ↔ y_(i) with width 1/n.
    """
    # float64 on the CPU (some accelerators lack float64); i/m == j/n as rationals gives
    # one identical, correctly rounded float, so unique() merges exactly the shared steps.
    f64 = torch.float64
    t = torch.unique(torch.cat([torch.arange(1, m + 1, dtype=f64) / m, torch.arange(1, n + 1, dtype=f64) / n]))
    left = torch.cat([t.new_zeros(1), t[:-1]])
    mid = (t + left) / 2  # strictly inside an interval, so floor() picks the right atom
    ix = (mid * m).floor().long().clamp_(max=m - 1)
    iy = (mid * n).floor().long().clamp_(max=n - 1)
    return ix.to(device), iy.to(device), (t - left).to(device)


@validated(n_projections=">= 1", p=">= 1")
def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 128,
    p: int = 2,
    generator: torch.Generator | None = None,
    directions: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Sliced p-Wasserstein distance (Bonneel et al. 2015; the shift term of PAPERS.md §2).

        SW_p(P, Q) = ( E_{θ ~ U(S^{D−1})} W_p^p(θᵀP, θᵀQ) )^{1/p},

    estimated with ``n_projections`` random unit directions (or the given ``directions``).
    Each 1-D W_p between empirical measures is exact: for equal sizes it pairs the sorted
    projections, x_(i) ↔ y_(i); for unequal sizes it integrates |F⁻¹(t) − G⁻¹(t)|^p over
    the merged quantile grid {i/m} ∪ {j/n}, on which both quantile functions are constant.

    Closed form used in the tests: for y = x + c every projection is a shift by θᵀc, so
    SW_2² = E(θᵀc)² = ‖c‖²/D.

    Args:
        x: [m, D] (or [m]); y: [n, D] (or [n]).
        n_projections: number of random directions (ignored if ``directions`` is given).
        p: order, ≥ 1.
        generator: drives the random directions (deterministic results).
        directions: optional [P, D] unit directions, e.g. to share them between calls.

    Examples:
        >>> x = torch.zeros(5, 1, dtype=torch.float64)
        >>> sliced_wasserstein(x, x + 2.0).item()
        2.0
    """
    x, y = _two_samples(x, y)
    m, n = x.shape[0], y.shape[0]
    if m == 0 or n == 0:
        raise ValueError("sliced_wasserstein needs non-empty samples")
    if directions is None:
        directions = _random_directions(n_projections, x.shape[1], generator, x)
    elif directions.ndim != 2 or directions.shape[1] != x.shape[1]:
        raise ValueError(f"directions must be [P, {x.shape[1]}], got {tuple(directions.shape)}")
    directions = directions.to(dtype=x.dtype, device=x.device)
    ix, iy, width = _quantile_coupling(m, n, x.device)
    width = width.to(x.dtype).unsqueeze(1)
    per_chunk = max(1, _BLOCK_ENTRIES // (len(ix) + m + n))
    costs = []
    for start in range(0, directions.shape[0], per_chunk):
        theta = directions[start : start + per_chunk]
        xs = (x @ theta.T).sort(dim=0).values
        ys = (y @ theta.T).sort(dim=0).values
        costs.append((width * (xs[ix] - ys[iy]).abs().pow(p)).sum(0))
    return torch.cat(costs).mean().pow(1.0 / p)


@validated
def positive_cosine_gap(
    ideal: tuple[torch.Tensor, torch.Tensor], practical: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    r"""Gap in mean positive cosine similarity (SSA-CLR shift, PAPERS.md §2).

        gap = mean_i cos(z_i, z_i⁺)|practical − mean_i cos(z_i, z_i⁺)|ideal  ∈ [−2, 2].

    Sign: positive when augmentation pairs are more similar than same-class pairs, the usual
    case, i.e. how much easier the practical positives are. Zero-norm rows count as cosine 0.

    Examples:
        >>> z = torch.eye(3, dtype=torch.float64)
        >>> positive_cosine_gap((z, z.roll(1, 0)), (z, z)).item()
        1.0
    """
    _check_pairs(ideal, practical)

    def mean_cosine(z: torch.Tensor, z_pos: torch.Tensor) -> torch.Tensor:
        return (F.normalize(z, dim=1) * F.normalize(z_pos, dim=1)).sum(1).mean()

    return mean_cosine(*practical) - mean_cosine(*ideal)


@validated(steps=">= 0", lr="> 0", holdout=">= 0, < 1", weight_decay=">= 0")
def js_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 200,
    lr: float = 1.0,
    generator: torch.Generator | None = None,
    holdout: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    r"""Discriminator Jensen–Shannon proxy between two feature samples (PAPERS.md §1).

    A linear-logistic discriminator D(z) = σ(wᵀz + b) is fitted on the detached features
    (x labelled 1, benign; y labelled 0, adversarial) by minimising

        L_D = ½[BCE(D(x), 1) + BCE(D(y), 0)]

    (each BCE a mean over its own sample), and the proxy is log 2 − L_D*, clamped to
    [0, log 2]. For any D, −L_D = ½E_P log D + ½E_Q log(1 − D) ≤ JS(P, Q) − log 2 (Goodfellow
    et al. 2014, with equality at D* = p/(p + q)), so a linear D gives a *lower* bound on the
    population JS, exact when log p/q is affine (e.g. Gaussians with one covariance). On a
    finite sample the in-sample L_D* is optimistic, which biases the proxy up by O(D/N):
    with D comparable to N the two samples are linearly separable and the in-sample proxy
    saturates at log 2 whatever the distributions. ``holdout`` > 0 fits D on one part of each
    sample and scores L_D on the held-out rest: for the fitted (now fixed) D the held-out
    −L_D + log 2 is an unbiased estimate of a quantity ≤ JS(P, Q), so the optimism is gone.
    ``weight_decay`` adds ½·λ‖w‖² to the fitting objective only, so a separable fit stays
    finite and its held-out score is not ruined by infinitely confident mistakes.

    Features are standardised with the pooled mean and standard deviation (a linear D is
    invariant to that, the optimisation is better conditioned). L_D is convex in (w, b), so
    D is fitted by full-batch L-BFGS with a strong-Wolfe line search, at most ``steps``
    iterations, from a small random start drawn from ``generator``; it converges in tens of
    iterations, also on separable samples (where L_D → 0 and the proxy → log 2).

    Args:
        x: [N, D] (or [N]) benign features; y: [M, D] (or [M]) adversarial features.
        steps: maximum L-BFGS iterations.
        lr: L-BFGS step scale (1 is the natural Newton-like step).
        generator: drives the initial weights and the held-out split; results are
            deterministic given it.
        holdout: fraction of each sample held out for scoring (0: fit and score in-sample).
        weight_decay: ridge penalty λ on w in the fitting objective (not in the score).

    Returns:
        Scalar tensor in [0, log 2], in the dtype of x, without gradient.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(500, 2, generator=g, dtype=torch.float64)
        >>> js_divergence(x, x + 10.0).item() > 0.6
        True
    """
    x, y = _two_samples(x.detach(), y.detach())
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError("js_divergence needs non-empty samples")
    x_fit, y_fit, x_score, y_score = x, y, x, y
    if holdout > 0:
        n_x, n_y = round(holdout * x.shape[0]), round(holdout * y.shape[0])
        if not (0 < n_x < x.shape[0] and 0 < n_y < y.shape[0]):
            raise ValueError(f"holdout={holdout} leaves an empty fit or score part of samples of {x.shape[0]} and {y.shape[0]}")
        draw_on = generator.device if generator is not None else torch.device("cpu")
        px = torch.randperm(x.shape[0], generator=generator, device=draw_on).to(x.device)
        py = torch.randperm(y.shape[0], generator=generator, device=draw_on).to(y.device)
        x_score, x_fit = x[px[:n_x]], x[px[n_x:]]
        y_score, y_fit = y[py[:n_y]], y[py[n_y:]]
    pooled = torch.cat([x_fit, y_fit])
    mean, std = pooled.mean(0), pooled.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant features carry no signal
    x_fit, y_fit = (x_fit - mean) / std, (y_fit - mean) / std
    x_score, y_score = (x_score - mean) / std, (y_score - mean) / std
    device = generator.device if generator is not None else x.device
    w0 = 0.01 * torch.randn(x.shape[1], generator=generator, device=device, dtype=x.dtype)
    w = w0.to(x.device).requires_grad_()
    b = x.new_zeros(()).requires_grad_()

    def discriminator_loss(real_z: torch.Tensor, fake_z: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy_with_logits(real_z @ w + b, torch.ones_like(real_z[:, 0]))
        fake = F.binary_cross_entropy_with_logits(fake_z @ w + b, torch.zeros_like(fake_z[:, 0]))
        return 0.5 * (real + fake)

    if steps > 0:
        optimiser = torch.optim.LBFGS(
            [w, b], lr=lr, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-12, tolerance_change=1e-14,
        )

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = discriminator_loss(x_fit, y_fit) + 0.5 * weight_decay * w.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimiser.step(closure)
    with torch.no_grad():
        return (math.log(2.0) - discriminator_loss(x_score, y_score)).clamp(0.0, math.log(2.0))
