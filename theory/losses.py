"""Contrastive and non-contrastive self-supervised losses.

Every function takes embedding tensors and returns a scalar tensor (or a small dict of
scalar tensors), differentiable, in the dtype of its input. Nothing here reads files or
trains anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clbounds.theory.validation import validated

__all__ = [
    "info_nce",
    "barlow_twins",
    "cross_correlation",
    "cacr",
    "huang_infonce_split",
    "huang_barlow_split",
    "huang_barlow_loss",
    "query_key_info_nce",
    "discriminator_loss",
]


def _check_pair(name: str, z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Two [B, D] tensors of one shape with B ≥ 2 (one positive and at least one negative)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"{name} expects two [B, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"{name} needs a batch of at least 2 inputs (one positive and one negative)")


@validated(temperature="> 0")
def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    r"""NT-Xent loss of SimCLR (Chen et al. 2020, eq. 1), the InfoNCE used by all five papers.

    The 2B embeddings u = [z1; z2] are L2-normalised and s = u uᵀ / τ. For anchor i its
    positive is the other view of the same input, i ± B, and

        ℓ_i = log Σ_{k≠i} exp(s_ik) − s_{i, i±B},        L = (1/2B) Σ_i ℓ_i.

    Closed forms: collapsed embeddings (all equal) give log(2B − 1); mutually orthogonal
    embeddings with z1 = z2 give log(e^{1/τ} + 2B − 2) − 1/τ.

    Args:
        z1: [B, D] un-normalised projections of the first view of B inputs.
        z2: [B, D] un-normalised projections of the second view of the same B inputs.
        temperature: τ > 0.

    Examples:
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> info_nce(z1, z2, temperature=0.5).shape
        torch.Size([])
    """
    _check_pair("info_nce", z1, z2)
    b = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    # Dividing the [2B, D] factor is cheaper than the [2B, 2B] product when D < 2B; the
    # diagonal is masked in place (mm's backward does not need its output), and the targets
    # are built on the device, so a training step makes no host-to-device copy.
    s = torch.mm(u / temperature, u.T).fill_diagonal_(float("-inf"))
    positive = torch.arange(2 * b, device=s.device).add_(b).remainder_(2 * b)  # i ± B
    return F.cross_entropy(s, positive)


@validated(eps=">= 0")
def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Cross-correlation matrix F of Barlow Twins (Zbontar et al. 2021, eq. 2).

    Each column of z1 and z2 is standardised over the batch (biased variance, as BatchNorm
    without affine parameters does), then F = z̃1ᵀ z̃2 / B, a [D, D] matrix whose diagonal
    is 1 for identical views. A feature constant over the batch (zero variance) standardises
    to 0, so its row and column of F are 0; with eps = 0 that is 0/0, a ValueError.

    Examples:
        >>> z = torch.randn(32, 4)
        >>> torch.allclose(cross_correlation(z, z).diagonal(), torch.ones(4), atol=1e-4)
        True
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"cross_correlation expects two [B, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError("cross_correlation needs a batch of at least 2 to standardise")
    if eps == 0:
        # A feature constant over the batch has variance 0: without eps its standardisation
        # is 0/0 = NaN. (With eps > 0 it standardises to 0, a zero row/column of F.)
        for name, z in (("z1", z1), ("z2", z2)):
            constant = torch.nonzero((z == z[0]).all(0)).flatten().tolist()
            if constant:
                raise ValueError(f"cross_correlation: feature(s) {', '.join(map(str, constant))} of {name} are constant over the batch (zero variance); pass eps > 0")
    b = z1.shape[0]

    def standardise(z: torch.Tensor) -> torch.Tensor:
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)

    return standardise(z1).T @ standardise(z2) / b


def _barlow_terms(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_i (1 − F_ii)², Σ_{i≠j} F_ij²) of a cross-correlation matrix F, shared by the
    Barlow Twins loss and Huang's split of it."""
    on_diag = (1 - c.diagonal()).pow(2).sum()
    off_diag = c.pow(2).sum() - c.diagonal().pow(2).sum()
    return on_diag, off_diag


@validated(lambd=">= 0")
def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    r"""Barlow Twins loss (Zbontar et al. 2021, eq. 1).

        L = Σ_i (1 − F_ii)² + λ Σ_{i≠j} F_ij²

    with F the cross-correlation of the batch-standardised projections (see
    :func:`cross_correlation`). Huang et al. (2023) write it as (1 − λ)L1 + λL2 with the
    same two sums; this is the unscaled form of the original paper.

    Examples:
        >>> z = torch.randn(64, 8, dtype=torch.float64)
        >>> barlow_twins(z, z, lambd=0.0).item() < 1e-6
        True
    """
    on_diag, off_diag = _barlow_terms(cross_correlation(z1, z2))
    return on_diag + lambd * off_diag


@validated(tau_pos=">= 0", tau_neg=">= 0")
def cacr(
    views: torch.Tensor,
    tau_pos: float = 1.0,
    tau_neg: float = 0.9,
    return_weights: bool = False,
    uniform_pos: bool = False,
    uniform_neg: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""CACR / CCT loss (Zheng et al., TMLR 2023; PAPERS.md §4), as in the official
    small-scale code (JegZheng/CACR-SSL, ``small_scale_experiments/losses``: ``our_loss1``
    + ``our_loss2`` with α = β = 1 and the squared-Euclidean cost).

    views[v, i] is view v of image i; every row is L2-normalised here, so
    d(a, b) = ‖a − b‖² ∈ [0, 4]. Write z_v,i for the normalised rows.

    Contrastive attraction (``our_loss1``). *Every* view q = 0..V−1 is the query in turn
    and the other K = V − 1 views of the same image are its positives:

        w⁺_q,ik = softmax_k( τ⁺·d(z_q,i, z_k,i) )      (over the K views k ≠ q)
        L_CA    = (1/V) Σ_q mean_i Σ_k w⁺_q,ik · d(z_q,i, z_k,i)

    so a more distant positive gets more weight. (With V = 2 this is the same as taking
    view 0 alone as the query.)

    Contrastive repulsion (``our_loss2``). One term for each *unordered* view pair
    (x, y), x < y, in the order (0,1), (0,2), …, (1,2), …; view x supplies the anchors and
    view y the negatives (the direction is not symmetrised, as in the official loop):

        w⁻_xy,ij = softmax_{j≠i}( −τ⁻·d(z_x,i, z_y,j) )
        L_CR     = (1/P) Σ_{x<y} mean_i Σ_{j≠i} w⁻_xy,ij · (−d(z_x,i, z_y,j)),  P = V(V−1)/2

    so a closer negative gets more weight. L = L_CA + L_CR. The weights are part of the
    graph (not detached), as in the official small-scale code, so gradients flow through
    them. ``uniform_pos`` / ``uniform_neg`` replace w⁺ by 1/K or w⁻ by 1/(B − 1) (the
    official ``without_w1`` / ``without_w2`` ablations); τ⁺ = 0 or τ⁻ = 0 does the same.

    Args:
        views: [V, B, D] un-normalised projections, V = K + 1 ≥ 2 views of B ≥ 2 images.
        tau_pos: τ⁺ ≥ 0.
        tau_neg: τ⁻ ≥ 0 (0.9 for CIFAR-10, 2.0 for CIFAR-100/STL-10 in the paper).
        return_weights: also return a dict with
            ``w_pos`` [V, B, K]: w_pos[q, i] are query q's weights over the other views in
            increasing view order, skipping q (w_pos[0] is the [B, K] of view-0 queries);
            ``w_neg`` [P, B, B]: w_neg[p, i, j] = w⁻_ij for pair p, with a zero diagonal;
            ``pairs`` [P, 2]: the (x, y) view indices of each pair p;
            ``attraction`` and ``repulsion``: the scalars L_CA and L_CR.
        uniform_pos: ablation with uniform positive weights.
        uniform_neg: ablation with uniform negative weights.

    Examples:
        >>> views = torch.randn(5, 16, 8, dtype=torch.float64)
        >>> loss, w = cacr(views, return_weights=True)
        >>> tuple(w["w_pos"].shape), tuple(w["w_neg"].shape)
        ((5, 16, 4), (10, 16, 16))
        >>> torch.allclose(loss, w["attraction"] + w["repulsion"])
        True
    """
    if views.ndim != 3:
        raise ValueError(f"cacr expects views of shape [V, B, D], got {tuple(views.shape)}")
    v, b, _ = views.shape
    if v < 2:
        raise ValueError(f"cacr needs at least 2 views (a query and a positive), got {v}")
    if b < 2:
        raise ValueError(f"cacr needs a batch of at least 2 images (one negative per anchor), got {b}")
    z = F.normalize(views, dim=-1)
    device = z.device

    # Attraction: d_pos[q, k, i] = ‖z_q,i − z_k,i‖² for all view pairs (V²·B·D, V is small),
    # then drop k = q: view index k' + [k' ≥ q] lists the K views other than q in order.
    d_all = (z[:, None] - z[None]).pow(2).sum(-1)
    col = torch.arange(v - 1, device=device)[None]
    others = col + (col >= torch.arange(v, device=device)[:, None]).long()      # [V, K]
    d_pos = d_all.gather(1, others[:, :, None].expand(v, v - 1, b)).transpose(1, 2)  # [V, B, K]
    if uniform_pos:
        w_pos = torch.full_like(d_pos, 1.0 / (v - 1))
    else:
        w_pos = torch.softmax(tau_pos * d_pos, dim=-1)
    attraction = (w_pos * d_pos).sum(-1).mean()

    # Repulsion: one [B, B] block per view pair; a Python loop over the P ≤ V²/2 pairs
    # (not over samples) keeps memory at one block unless the weights are requested.
    pairs = torch.triu_indices(v, v, offset=1, device=device).T                  # [P, 2]
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=device)
    repulsion = z.new_zeros(())
    w_neg_blocks = []
    for x, y in pairs.tolist():
        zx, zy = z[x], z[y]
        d_neg = zx.pow(2).sum(1)[:, None] + zy.pow(2).sum(1)[None] - 2 * zx @ zy.T
        if uniform_neg:
            w_neg = off_diagonal.to(z.dtype) / (b - 1)
        else:
            # The diagonal (the positive pair) is excluded from the softmax over j ≠ i.
            w_neg = torch.softmax((-tau_neg * d_neg).masked_fill(~off_diagonal, float("-inf")), dim=1)
        repulsion = repulsion + (w_neg * -d_neg).sum(1).mean()
        if return_weights:
            w_neg_blocks.append(w_neg)
    repulsion = repulsion / len(pairs)

    loss = attraction + repulsion
    if not return_weights:
        return loss
    return loss, {
        "w_pos": w_pos,
        "w_neg": torch.stack(w_neg_blocks),
        "pairs": pairs,
        "attraction": attraction,
        "repulsion": repulsion,
    }


@validated(temperature="> 0")
def huang_infonce_split(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0) -> dict[str, torch.Tensor]:
    r"""Huang, Yi & Zhao (ICLR 2023; PAPERS.md §5) split of InfoNCE into L1 + L2.

    The paper takes f with ‖f‖ = 1 and writes

        L1 = ½ E‖f(x1) − f(x2)‖² − 1 = −E f1ᵀf2,
        L2 = E log( e^{f1ᵀf2} + Σ_{f⁻} e^{f1ᵀf⁻} ),

    so that L1 + L2 is the one-directional InfoNCE −E log( e^{f1ᵀf2} / (e^{f1ᵀf2} + Σ e^{f1ᵀf⁻}) ).
    Here f = z/‖z‖/√τ, so every product is divided by τ and ‖f‖² = 1/τ; then
    L1 = ½E‖f1 − f2‖² − 1/τ = −E f1ᵀf2, and temperature = 1 (the default) is exactly the
    paper's unit-norm form. For the anchor f1 = f(z1_i) the negatives f⁻ are the other
    B − 1 *second* views f(z2_j), j ≠ i (the paper's one-directional InfoNCE; not the
    2B − 2 negatives of the symmetric NT-Xent in :func:`info_nce`). The expectation is the
    mean over the B anchors, so ``total`` equals
    ``F.cross_entropy(f1 @ f2.T, arange(B))`` exactly.

    Returns:
        {"L1": ..., "L2": ..., "total": L1 + L2}, scalar tensors.

    Examples:
        >>> z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
        >>> s = huang_infonce_split(z1, z2, temperature=0.5)
        >>> bool(torch.isclose(s["L1"] + s["L2"], s["total"]))
        True
    """
    _check_pair("huang_infonce_split", z1, z2)
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature  # f1_i ᵀ f2_j
    l1 = -s.diagonal().mean()
    l2 = torch.logsumexp(s, dim=1).mean()
    return {"L1": l1, "L2": l2, "total": l1 + l2}


@validated
def huang_barlow_split(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""Huang et al. (2023; PAPERS.md §5) split of the cross-correlation (Barlow Twins) loss.

        L1 = Σ_i (1 − F_ii)²,     L2 = Σ_{i≠j} F_ij² = ‖F − I‖²_offdiag,

    with F = :func:`cross_correlation` (z1, z2). Two conventions combine them:
    Zbontar et al.'s ``barlow_twins(z1, z2, λ) = L1 + λ·L2`` and Huang's
    ``huang_barlow_loss(z1, z2, λ) = (1 − λ)·L1 + λ·L2``. L1 is the term of Huang's
    L_align ≤ 2√(d·L1) and L2 the term of their Theorem 4.

    Examples:
        >>> z = torch.randn(64, 4, dtype=torch.float64)
        >>> s = huang_barlow_split(z, z)
        >>> bool(torch.isclose(s["L1"] + 0.1 * s["L2"], barlow_twins(z, z, 0.1)))
        True
    """
    l1, l2 = _barlow_terms(cross_correlation(z1, z2))
    return {"L1": l1, "L2": l2}


@validated(lambd=">= 0, <= 1")
def huang_barlow_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    r"""Cross-correlation loss in Huang et al.'s convention (2023; PAPERS.md §5):
    (1 − λ)·L1 + λ·L2, with L1, L2 of :func:`huang_barlow_split` and 0 ≤ λ ≤ 1.

    For λ < 1 it is (1 − λ)·barlow_twins(z1, z2, λ / (1 − λ)): the same minimiser as
    Zbontar et al.'s L1 + λ'·L2 with λ' = λ/(1 − λ).

    Examples:
        >>> z1, z2 = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 4, dtype=torch.float64)
        >>> bool(torch.isclose(huang_barlow_loss(z1, z2, 0.2), 0.8 * barlow_twins(z1, z2, 0.25)))
        True
    """
    split = huang_barlow_split(z1, z2)
    return (1 - lambd) * split["L1"] + lambd * split["L2"]


@validated(temperature="> 0")
def query_key_info_nce(z_query: torch.Tensor, z_key: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    r"""The contrastive loss of Wen (2020) between a query and a key network (PAPERS.md §3):

        L = mean_i −log( exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ) ),   q = ẑ_query, k = ẑ_key normalised

    the positive is the key of the same image, the negatives the keys of the other images.

    Examples:
        >>> q = torch.eye(3); round(float(query_key_info_nce(q, q, 1.0)), 4)   # log(1 + 2/e)
        0.5514
    """
    _check_pair("query_key_info_nce", z_query, z_key)
    q, k = F.normalize(z_query, dim=1), F.normalize(z_key, dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


@validated
def discriminator_loss(z_benign: torch.Tensor, z_adv: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The discriminator loss of robust contrastive learning (PAPERS.md §1) for a linear
    discriminator D(ẑ) = weight·ẑ + bias on L2-normalised projections ẑ = z/‖z‖:

        L_D = ½ [ BCE(D(ẑ_benign), 1) + BCE(D(ẑ_adv), 0) ]

    sigmoid(D(ẑ)) is the probability that ẑ is benign. Pass detached weights to send gradients
    into the projections only (the encoder's objective … − d_w·L_D).

    Examples:
        >>> w, b = torch.zeros(1, 4), torch.zeros(1)
        >>> round(discriminator_loss(torch.randn(3, 4), torch.randn(3, 4), w, b).item(), 4)  # log 2 at D = 0
        0.6931
    """
    logit_b = F.linear(F.normalize(z_benign, dim=1), weight, bias).flatten()
    logit_a = F.linear(F.normalize(z_adv, dim=1), weight, bias).flatten()
    return 0.5 * (F.binary_cross_entropy_with_logits(logit_b, torch.ones_like(logit_b)) + F.binary_cross_entropy_with_logits(logit_a, torch.zeros_like(logit_a)))
