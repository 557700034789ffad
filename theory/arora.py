r"""Terms of the mean-classifier bound of Arora et al. 2019 (CURL; PAPERS.md §6).

Setting. Latent classes c with probabilities p_c; D_c is the distribution of class-c inputs.
An *ideal* positive pair is two independent draws x, x⁺ ~ D_c of one class c ~ p; each of M
negatives is an independent draw from the marginal (its class c_i⁻ ~ p, so it collides with
the anchor's class with probability p_c). With the logistic loss

    ℓ(v) = log(1 + Σ_{i=1}^M e^{−v_i})            (natural log; the paper uses log₂),

the unsupervised loss is L_un^M(f) = E ℓ({f(x)ᵀ(f(x⁺) − f(x_i⁻))}_i), and the mean classifier
with class means μ_c = E_{D_c} f has the supervised loss

    L_sup^{μ,M}(f) = E_{(c⁺, c_1..c_M) | c⁺ ∉ {c_i}} E_{x~D_{c⁺}} log(1 + Σ_{c∈Q} e^{−f(x)ᵀ(μ_{c⁺} − μ_c)}),

where the classes are drawn i.i.d. from p conditioned on no collision with the anchor's
class, and Q is the *set* of distinct negative classes (a task of |Q| + 1 ≤ M + 1 classes, as
in the paper's multi-negative section). For M = 1 this is the paper's average binary
mean-classifier loss.

The bound (derived in ``bounds/arora2019.py``) reads L_sup^{μ,M} ≤ (L_un^M − γ_M)/(1 − τ_M)
with the collision probability τ_M and the collision floor γ_M computed here.

Empirical distribution. Everything below is evaluated on the empirical distribution D̂ of a
labelled sample (f(x_n), y_n): p̂_c = n_c/N, D̂_c uniform over the class-c members, μ̂_c their
mean. The theorem holds for *every* distribution, so it holds exactly on D̂; the positive x⁺
is an independent draw from D̂_c, so it equals x with probability 1/n_c (a plug-in bias of
order 1/n_c relative to the population loss).

Example:
    >>> f = torch.tensor([[1., 0.], [1., 0.], [0., 1.], [0., 1.]], dtype=torch.float64)
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> l_un, l_sup = unsupervised_loss_exact(f, y), mean_classifier_loss_exact(f, y)
    >>> tau = collision_probability(class_probabilities(y), 1)
    >>> bool(l_sup <= (l_un - tau * math.log(2)) / (1 - tau))
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from clbounds.theory.geometry import class_centers
from clbounds.theory.validation import validated

__all__ = [
    "logistic_loss",
    "class_probabilities",
    "collision_probability",
    "collision_floor",
    "unsupervised_loss_exact",
    "unsupervised_loss_practical",
    "unsupervised_loss",
    "mean_classifier_loss_exact",
    "mean_classifier_loss",
]

# Largest number of entries of one [anchors, positives, negatives] block (float64: 32 MiB).
_BLOCK_ENTRIES = 1 << 22


@validated(infinite=("v",))  # v = −inf (a masked score) gives 0
def logistic_loss(v: Tensor) -> Tensor:
    r"""ℓ(v) = log(1 + Σ_i e^{−v_i}) over the last dimension (Arora et al. 2019, PAPERS.md §6).

    Computed as logsumexp([0, −v]) so that large |v| neither overflows nor underflows.
    ℓ(0) = log(1 + M) for M zeros.

    Examples:
        >>> round(logistic_loss(torch.zeros(1, dtype=torch.float64)).item(), 6) == round(math.log(2), 6)
        True
    """
    zero = torch.zeros((*v.shape[:-1], 1), dtype=v.dtype, device=v.device)
    return torch.logsumexp(torch.cat([zero, -v], dim=-1), dim=-1)


@validated(labels=("y",), num_classes=">= 1")
def class_probabilities(y: Tensor, num_classes: int | None = None) -> Tensor:
    """p̂_c = n_c / N, float64, over ``num_classes`` (default: max label + 1).

    Examples:
        >>> class_probabilities(torch.tensor([0, 0, 1, 2])).tolist()
        [0.5, 0.25, 0.25]
    """
    if y.ndim != 1 or y.numel() == 0:
        raise ValueError(f"labels must be a non-empty [N] tensor, got shape {tuple(y.shape)}")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    return torch.bincount(y, minlength=k).double() / y.numel()


def _check_probabilities(p: Tensor, num_negatives: int) -> Tensor:
    if int(num_negatives) != num_negatives or num_negatives < 1:
        raise ValueError(f"num_negatives must be an integer >= 1, got {num_negatives}")
    p = p.double()
    if p.ndim != 1 or (p < 0).any() or not math.isclose(float(p.sum()), 1.0, rel_tol=1e-9):
        raise ValueError("p must be a [K] probability vector (non-negative, summing to 1)")
    return p


@validated(num_negatives=">= 1")
def collision_probability(p: Tensor, num_negatives: int) -> Tensor:
    r"""τ_M = P(the anchor's class is among the M negatives' classes) = Σ_c p_c (1 − (1 − p_c)^M).

    For M = 1 it is the paper's class-collision probability τ = Σ_c p_c² (PAPERS.md §6).

    Examples:
        >>> collision_probability(torch.tensor([0.5, 0.5]), 1).item()
        0.5
    """
    p = _check_probabilities(p, num_negatives)
    return (p * -torch.expm1(num_negatives * torch.log1p(-p))).sum()


@validated(num_negatives=">= 1", multiplicity=">= 1")
def collision_floor(p: Tensor, num_negatives: int, multiplicity: int = 1) -> Tensor:
    r"""γ_M = Σ_c p_c E_{J~Bin(M, p_c)} log(1 + m·J): the expected loss floor of colliding negatives.

    When J of the M negative *draws* share the anchor's class, each such draw appears m times
    among the negatives (m = 1 for independent negatives; m = 2 for NT-Xent, where both views
    of another input are negatives) and contributes e^{−0} = 1 to the mean-classifier sum, so
    ℓ ≥ log(1 + m·J). For M = 1, m = 1: γ = τ·log 2, the paper's τ·ℓ(0) term.

    The binomial sum is computed exactly (log-space pmf), so M may be in the thousands.

    Examples:
        >>> p = torch.tensor([0.25, 0.75], dtype=torch.float64)
        >>> bool(torch.isclose(collision_floor(p, 1), collision_probability(p, 1) * math.log(2)))
        True
    """
    p = _check_probabilities(p, num_negatives)
    m = num_negatives
    j = torch.arange(m + 1, dtype=torch.float64, device=p.device)
    log_binom = torch.lgamma(torch.tensor(m + 1.0, dtype=torch.float64, device=p.device)) - torch.lgamma(j + 1) - torch.lgamma(m - j + 1)
    # xlogy / xlog1py give 0·log 0 = 0, so p_c ∈ {0, 1} are exact.
    log_pmf = log_binom + torch.special.xlogy(j, p[:, None]) + torch.special.xlog1py(m - j, -p[:, None])
    return (p * (log_pmf.exp() * torch.log1p(multiplicity * j)).sum(1)).sum()


def _compact(f: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checks shapes; relabels to the classes present. Returns f (float64), labels, p̂, μ̂."""
    if f.ndim != 2 or y.ndim != 1 or f.shape[0] != y.shape[0]:
        raise ValueError(f"expected f [N, D] and y [N], got {tuple(f.shape)} and {tuple(y.shape)}")
    present, labels = torch.unique(y, return_inverse=True)
    if present.numel() < 2:
        raise ValueError("the mean-classifier bound needs at least 2 classes with members: with one class every negative collides")
    f = f.double()
    k = present.numel()
    p = torch.bincount(labels, minlength=k).double() / labels.numel()
    return f, labels, p, class_centers(f, labels, k)


@validated(labels=("y",), block_entries=">= 1")
def unsupervised_loss_exact(f: Tensor, y: Tensor, block_entries: int = _BLOCK_ENTRIES, per_anchor: bool = False, leave_one_out: bool = False) -> Tensor:
    r"""L_un with one negative, exactly, on the empirical distribution of (f, y) (PAPERS.md §6).

        L_un = (1/N) Σ_i (1/n_{y_i}) Σ_{j: y_j = y_i} (1/N) Σ_k log(1 + e^{f_iᵀf_k − f_iᵀf_j}),

    i.e. the anchor is uniform over the sample, the positive an independent draw of the
    anchor's class (itself included), the negative an independent draw of the sample. The
    cost is Σ_c n_c²·N = N³/K for balanced classes, processed class by class in blocks of at
    most ``block_entries`` entries.

    Args:
        f: [N, D] embeddings (the representation of the bound, e.g. z/‖z‖/√τ).
        y: [N] integer labels.

    Returns:
        Scalar tensor in float64; with ``per_anchor`` the [N] vector of each anchor's term
        (its mean is the loss); with ``leave_one_out`` the [N] vector of the loss without
        input m (as anchor, as positive and as negative), for
        :func:`clbounds.theory.uncertainty.jackknife`: the anchors' spread alone misses the
        variation an input adds as the positive and the negative of the others.

    Examples:
        >>> f = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
        >>> round(unsupervised_loss_exact(f, torch.tensor([0, 1])).item(), 6)  # (log 2 + log(1+e^{-1}))/2
        0.503204
    """
    f, labels, _, _ = _compact(f, y)
    n = f.shape[0]
    anchors = f.new_zeros(n)
    if leave_one_out:  # Q[i, k] = Σ_j h(i, j, k) over positives; P[i, j] = Σ_k h(i, j, k), j of i's class
        q_sum, p_sum = f.new_zeros(n, n), f.new_zeros(n, n)
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        g = f[idx] @ f.T  # [n_c, N]: f_iᵀf_k for anchors i of class c
        g_pos = g[:, idx]  # [n_c, n_c]: f_iᵀf_j for positives j of class c
        rows = max(1, block_entries // (idx.numel() * n))
        for s in range(0, idx.numel(), rows):
            block = F.softplus(g[s : s + rows, None, :] - g_pos[s : s + rows, :, None])  # [b, n_c, N]
            anchors[idx[s : s + rows]] = block.mean(dim=(1, 2))
            if leave_one_out:
                q_sum[idx[s : s + rows]] = block.sum(1)
                p_sum[idx[s : s + rows, None], idx[None, :]] = block.sum(2)
    if leave_one_out:
        return _unsupervised_leave_one_out(anchors, labels, q_sum, p_sum)
    return anchors if per_anchor else anchors.sum() / n


def _unsupervised_leave_one_out(anchors: Tensor, labels: Tensor, q_sum: Tensor, p_sum: Tensor) -> Tensor:
    """L_un without input m, for every m: anchor i keeps its sum over (positive j, negative k)
    less the negative m (column m of Q) and, when m is of i's class, less the positive m
    (P[i, m]), the pair j = k = m counted twice (its term is softplus(0) = log 2)."""
    n = anchors.numel()
    counts = torch.bincount(labels).double()[labels]  # n_{y_i}
    same = labels[:, None] == labels[None, :]
    totals = anchors * counts * n  # Σ_j Σ_k h(i, j, k)
    kept = totals[:, None] - q_sum - same * (p_sum - math.log(2))  # [i, m]
    pairs = (counts[:, None] - same.double()).clamp_min(1) * (n - 1)
    off = ~torch.eye(n, dtype=torch.bool, device=anchors.device)
    return torch.where(off, kept / pairs, torch.zeros_like(kept)).sum(0) / (n - 1)


@validated
def unsupervised_loss_practical(f_anchor: Tensor, f_positive: Tensor, f_negative: Tensor, per_anchor: bool = False, leave_one_out: bool = False) -> Tensor:
    r"""L_un with one negative and *practical* positives, exactly on the sample:

        L_un^prac = (1/N) Σ_i (1/N) Σ_j log(1 + e^{f_iᵀf⁻_j − f_iᵀf⁺_i}),

    the anchor f_i uniform over the sample, its positive f⁺_i another augmentation of the
    same input (not an independent draw of its class, as Arora et al.'s theorem requires) and
    the negative an independent draw f⁻_j of the sample (j = i included). This is the
    one-negative loss that contrastive training minimises; Arora's bound with it in place of
    L_un is not a theorem, and where it fails the gap is the shift SSA-CLR's argument adds.

    Args:
        f_anchor: [N, D] embeddings of the anchors.
        f_positive: [N, D] embeddings of the positives, row i from the same input as ``f_anchor[i]``.
        f_negative: [N, D] embeddings of the negatives, row j from input j.

    Returns:
        Scalar tensor in float64; with ``per_anchor`` the [N] vector of each anchor's term;
        with ``leave_one_out`` the [N] vector of the loss without input m (its anchor row and
        its negative column), for :func:`clbounds.theory.uncertainty.jackknife`.

    Examples:
        >>> f = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
        >>> round(unsupervised_loss_practical(f, f, f).item(), 6)  # (log 2 + log(1+e^{-1}))/2
        0.503204
    """
    if f_anchor.ndim != 2 or f_anchor.shape != f_positive.shape or f_anchor.shape != f_negative.shape:
        raise ValueError(f"expected three [N, D] embeddings of one shape, got {tuple(f_anchor.shape)}, {tuple(f_positive.shape)}, {tuple(f_negative.shape)}")
    if f_anchor.shape[0] == 0:
        raise ValueError("unsupervised_loss_practical needs at least one input")
    a, p, q = f_anchor.double(), f_positive.double(), f_negative.double()
    pos = (a * p).sum(1, keepdim=True)  # [N, 1]
    h = F.softplus(a @ q.T - pos)  # [anchor i, negative j]
    if leave_one_out:
        n = h.shape[0]
        if n < 2:
            raise ValueError("leave_one_out needs at least two inputs")
        return (h.sum() - h.sum(0) - h.sum(1) + h.diagonal()) / (n - 1) ** 2
    anchors = h.mean(1)
    return anchors if per_anchor else anchors.mean()


def _class_members(labels: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=k)
    starts = torch.cumsum(counts, 0) - counts
    return order, starts, counts


def _weighted_mean_and_stderr(values: Tensor, weights: Tensor) -> dict[str, Tensor]:
    """Σ_i w_i·m_i with m_i = mean_r v_ir, and its standard error over anchors and draws,
    √(n/(n − 1)·Σ_i w_i² (m_i − L̄)²) with L̄ the weighted mean (each m_i carries its own
    Monte-Carlo noise, so this covers both the sample of anchors and the draws); the
    Monte-Carlo part alone, √(Σ_i w_i² s_i²/R), is ``mc_stderr``."""
    n, r = values.shape
    mean_i = values.mean(1)
    var_i = values.var(1, unbiased=True) if r > 1 else torch.zeros_like(mean_i)
    loss = (weights * mean_i).sum()
    centre = loss / weights.sum()
    anchors = (weights.pow(2) * (mean_i - centre).pow(2)).sum() * (n / max(n - 1, 1))
    return {"loss": loss, "stderr": anchors.sqrt(), "mc_stderr": (weights.pow(2) * var_i / r).sum().sqrt()}


@validated(labels=("y",), num_negatives=">= 1", samples=">= 1")
def unsupervised_loss(f: Tensor, y: Tensor, num_negatives: int, samples: int = 32, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""L_un^M with M independent negatives on the empirical distribution, by Monte Carlo (PAPERS.md §6).

    For every anchor i, ``samples`` tuples are drawn: a positive j uniform over the anchor's
    class (itself included) and M negatives k_1..k_M uniform over the sample; the loss is
    ℓ({f_iᵀf_j − f_iᵀf_{k_m}}_m) (:func:`logistic_loss`). Unbiased for the exact L_un^M of
    the empirical distribution; for M = 1 compare with :func:`unsupervised_loss_exact`.

    Returns:
        {"loss": estimate, "stderr": its Monte-Carlo standard error}, float64 scalars.

    Examples:
        >>> f = torch.randn(20, 3, dtype=torch.float64); y = torch.arange(20) % 2
        >>> out = unsupervised_loss(f, y, num_negatives=4, samples=8, generator=torch.Generator().manual_seed(0))
        >>> bool(out["loss"] > 0) and bool(out["stderr"] >= 0)
        True
    """
    f, labels, p, _ = _compact(f, y)
    _check_probabilities(p, num_negatives)
    n, k = f.shape[0], p.numel()
    order, starts, counts = _class_members(labels, k)
    dev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, samples, generator=generator, device=dev, dtype=torch.float64).to(f.device)
    pos = order[starts[labels, None] + (u * counts[labels, None]).long().clamp(max=counts[labels, None] - 1)]  # [N, R]
    neg = torch.randint(0, n, (n, samples, num_negatives), generator=generator, device=dev).to(f.device)  # [N, R, M]
    s_pos = (f[:, None, :] * f[pos]).sum(-1)  # [N, R]
    s_neg = torch.einsum("nd,nrmd->nrm", f, f[neg])  # [N, R, M]
    values = logistic_loss(s_pos[..., None] - s_neg)
    return _weighted_mean_and_stderr(values, torch.full((n,), 1.0 / n, dtype=torch.float64, device=f.device))


def _margins(f: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """v_ic = f_iᵀ(μ_{y_i} − μ_c), [N, K]."""
    s = f @ centers.T
    return s.gather(1, labels[:, None]) - s


@validated(labels=("y",))
def mean_classifier_loss_exact(f: Tensor, y: Tensor, per_anchor: bool = False, leave_one_out: bool = False) -> Tensor:
    r"""L_sup^μ with one negative class, exactly, on the empirical distribution (PAPERS.md §6).

        L_sup^μ = Σ_{a≠b} p_a p_b / (1 − τ) · mean_{x∈S_a} log(1 + e^{−f(x)ᵀ(μ_a − μ_b)}),

    the average binary mean-classifier loss over tasks {a, b} drawn from p² conditioned on
    a ≠ b, with the class means μ_c of the same empirical distribution (the *true* means of
    D̂, as the bound's proof requires). With ``per_anchor`` the [N] vector whose mean is the
    loss (the class means held fixed); with ``leave_one_out`` the [N] vector of the loss
    without input m, its class mean and the class frequencies re-estimated, for
    :func:`clbounds.theory.uncertainty.jackknife` (the anchors' spread alone varies with the
    class frequencies, which the normalisation by 1 − τ cancels, and misses the class means').

    Examples:
        >>> f = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
        >>> round(mean_classifier_loss_exact(f, torch.tensor([0, 1])).item(), 6)  # log(1 + e^{-1})
        0.313262
    """
    f, labels, p, centers = _compact(f, y)
    other = torch.ones(f.shape[0], p.numel(), dtype=torch.bool, device=f.device).scatter_(1, labels[:, None], False)
    if leave_one_out:
        return _mean_classifier_leave_one_out(f, labels, centers, other)
    anchors = (F.softplus(-_margins(f, labels, centers)) * p * other).sum(1) / (1 - (p * p).sum())
    return anchors if per_anchor else anchors.mean()


def _mean_classifier_leave_one_out(f: Tensor, labels: Tensor, centers: Tensor, other: Tensor, block_entries: int = _BLOCK_ENTRIES) -> Tensor:
    """L_sup^μ without input m, for every m: m's class mean becomes (n_c μ_c − f_m)/(n_c − 1),
    so the scores f_iᵀμ_c change in column c only, by the Gram column f_iᵀf_m; p̂ loses m."""
    n, k = other.shape
    counts = torch.bincount(labels, minlength=k).double()
    scores, gram = f @ centers.T, f @ f.T  # [N, K], [N, N]
    out = f.new_empty(n)
    rows = max(1, block_entries // (n * k))
    for start in range(0, n, rows):
        m = torch.arange(start, min(n, start + rows), device=f.device)
        b, c = m.numel(), labels[m]
        left = counts.repeat(b, 1)
        left[torch.arange(b), c] -= 1
        p = left / (n - 1)  # [b, K]
        s = scores.repeat(b, 1, 1)  # [b, N, K]
        s[torch.arange(b), :, c] = (counts[c, None] * scores[:, c].T - gram[m]) / (counts[c, None] - 1).clamp_min(1)
        margins = s.gather(2, labels[None, :, None].expand(b, n, 1)) - s
        anchors = (F.softplus(-margins) * p[:, None, :] * other).sum(2) / (1 - (p * p).sum(1, keepdim=True))  # [b, N]
        anchors[torch.arange(b), m] = 0
        out[m] = anchors.sum(1) / (n - 1)
    return out


@validated(labels=("y",), num_negatives=">= 1", samples=">= 1")
def mean_classifier_loss(f: Tensor, y: Tensor, num_negatives: int, samples: int = 32, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    r"""L_sup^{μ,M}: the mean-classifier loss on tasks of M negative-class draws, by Monte Carlo.

    Conditioned on no collision, the anchor's class is a with probability
    p_a(1 − p_a)^M / (1 − τ_M) and the M negative classes are i.i.d. from p restricted to
    classes ≠ a. For every anchor i (weight (1 − p_{y_i})^M / (N(1 − τ_M)), so that the
    anchor class has that law), ``samples`` draws of the M negative classes are made; the
    loss is log(1 + Σ_{c∈Q} e^{−f_iᵀ(μ_{y_i} − μ_c)}) over the *set* Q of distinct drawn
    classes. Only the classes are random: the anchor's expectation over D̂_a is exact.

    Returns:
        {"loss": estimate, "stderr": its Monte-Carlo standard error}, float64 scalars.

    Examples:
        >>> f = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
        >>> out = mean_classifier_loss(f, torch.tensor([0, 1]), num_negatives=3, samples=4)
        >>> round(out["loss"].item(), 6), out["stderr"].item()  # two classes: Q is always the other one
        (0.313262, 0.0)
    """
    f, labels, p, centers = _compact(f, y)
    _check_probabilities(p, num_negatives)
    n, k = f.shape[0], p.numel()
    restricted = p.expand(n, k).clone().scatter_(1, labels[:, None], 0.0)  # p restricted to classes ≠ y_i
    dev = generator.device if generator is not None else torch.device("cpu")
    draws = torch.multinomial(restricted.to(dev), samples * num_negatives, replacement=True, generator=generator).to(f.device)
    present = torch.zeros(n, samples, k, dtype=torch.bool, device=f.device)
    present.scatter_(2, draws.view(n, samples, num_negatives), True)  # Q: duplicates collapse to one
    neg_margin = -_margins(f, labels, centers)[:, None, :].expand(n, samples, k)
    values = logistic_loss(-torch.where(present, neg_margin, -math.inf))  # absent classes add e^{-inf} = 0
    no_collision = torch.exp(num_negatives * torch.log1p(-p[labels]))  # (1 − p_{y_i})^M
    weights = no_collision / no_collision.sum()
    return _weighted_mean_and_stderr(values, weights)
