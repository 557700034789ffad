"""Geometry of the embedding: class centres, spread, alignment/uniformity, and the terms of
Huang et al. (2023) Theorems 1–2 (PAPERS.md §5): augmented distance d_A, σ(δ), the
misalignment rate R_ε, the Lipschitz constant L and the nearest-centre classifier G_f.

Everything is a pure function of tensors. Pairwise work over N samples is chunked, so
memory stays bounded for large N; results keep the device and dtype of the inputs.
Embeddings are used as given (no normalisation inside): pass z = f(x)/‖f(x)‖ where a
statement assumes unit vectors (then r = 1).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbounds.theory.validation import validated

__all__ = [
    "class_centers",
    "intra_class_spread",
    "center_separation",
    "alignment",
    "uniformity",
    "view_diameter",
    "misalignment_rate",
    "augmented_distance",
    "sigma_delta",
    "lipschitz_lower",
    "lipschitz_upper",
    "nearest_center_predict",
    "nearest_center_error",
]


# ───────────────────────────── helpers ─────────────────────────────


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """[n, m] squared Euclidean distances ‖a_i − b_j‖², via one matmul, clamped at 0; [G, n, m]
    for batches [G, n, D] and [G, m, D]."""
    # One [n, m] allocation, then in place: at this size the cost is memory, not flops.
    if a.ndim == 3:
        d = torch.baddbmm(b.pow(2).sum(-1).unsqueeze(-2), a, b.transpose(-1, -2), alpha=-2)
    else:
        d = torch.addmm(b.pow(2).sum(1), a, b.T, alpha=-2)
    return d.add_(a.pow(2).sum(-1, keepdim=True)).clamp_min_(0)


def _check_labels(z: Tensor, y: Tensor, num_classes: int | None) -> int:
    """Validate [N, D] embeddings and [N] integer labels; return the number of classes K."""
    if z.ndim != 2:
        raise ValueError(f"expected embeddings of shape [N, D], got {tuple(z.shape)}")
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"expected labels of shape [{z.shape[0]}], got {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError("need at least one sample")
    if int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if int(y.max()) >= k:
        raise ValueError(f"label {int(y.max())} is out of range for num_classes={k}")
    return k


def _class_counts(y: Tensor, k: int) -> Tensor:
    """[K] class sizes; raise a ValueError naming every empty class."""
    counts = torch.bincount(y, minlength=k)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        names = ", ".join(f"class {c}" for c in empty)
        verb = "has" if len(empty) == 1 else "have"
        raise ValueError(f"{names} {verb} no samples; every class in 0..{k - 1} needs at least one")
    return counts


# ───────────────────── class centres and separation ─────────────────────


@validated(labels=("y",), num_classes=">= 1")
def class_centers(z: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    r"""Class centres μ_k = mean of the embeddings of class k (Huang et al. 2023, §5 of PAPERS.md).

    Huang's μ_k = E_{x∈C_k} E_{x'∈A(x)} f(x'); pass the embeddings of augmented views (one
    row per view, labelled with its input's class) to estimate it.

    Args:
        z: [N, D] embeddings.
        y: [N] integer labels in [0, K).
        num_classes: K; defaults to max(y) + 1. Every class must have a sample.

    Returns:
        [K, D] tensor of centres, dtype and device of z.

    Examples:
        >>> z = torch.tensor([[0., 0.], [2., 0.], [0., 1.], [0., 3.]])
        >>> class_centers(z, torch.tensor([0, 0, 1, 1]))
        tensor([[1., 0.],
                [0., 2.]])
    """
    k = _check_labels(z, y, num_classes)
    counts = _class_counts(y, k)
    sums = torch.zeros(k, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts.to(z.dtype).unsqueeze(1)


@validated(labels=("y",), num_classes=">= 1")
def intra_class_spread(
    z: Tensor, y: Tensor, per_class: bool = False, num_classes: int | None = None
) -> Tensor:
    r"""Intra-class spread E‖z − μ_y‖² (the within-class variance of the embedding).

    With per_class=True returns the [K] vector of per-class means (1/|C_k|) Σ_{i∈C_k} ‖z_i − μ_k‖²;
    otherwise the mean over all N samples (classes weighted by their size).

    Examples:
        >>> z = torch.tensor([[0., 0.], [2., 0.], [0., 1.], [0., 3.], [0., 5.]])
        >>> y = torch.tensor([0, 0, 1, 1, 1])
        >>> intra_class_spread(z, y).item()
        2.0
        >>> intra_class_spread(z, y, per_class=True)
        tensor([1.0000, 2.6667])
    """
    mu = class_centers(z, y, num_classes)
    sq = (z - mu[y]).pow(2).sum(1)
    if not per_class:
        return sq.mean()
    k = mu.shape[0]
    sums = torch.zeros(k, dtype=z.dtype, device=z.device).index_add_(0, y, sq)
    return sums / torch.bincount(y, minlength=k).to(z.dtype)


@validated(r="> 0")
def center_separation(centers: Tensor, r: float = 1.0) -> dict[str, Tensor]:
    r"""Separation of the class centres, the quantities of Huang et al. Theorem 1 (PAPERS.md §5).

    - ``max_inner`` = max_{k≠l} μ_kᵀμ_l, which Theorem 1 needs below r²(1 − ρ_max − √(2ρ_max) − Δ_μ/2);
    - ``min_distance`` = min_{k≠l} ‖μ_k − μ_l‖;
    - ``delta_mu`` = Δ_μ = 1 − min_k ‖μ_k‖² / r², with r the bound ‖f‖ ≤ r (r = 1 for normalised z).

    A regular simplex of K unit vectors gives max_inner = −1/(K−1), min_distance = √(2K/(K−1))
    and delta_mu = 0.

    Examples:
        >>> out = center_separation(torch.eye(3))
        >>> out["max_inner"].item(), round(out["min_distance"].item(), 4), out["delta_mu"].item()
        (0.0, 1.4142, 0.0)
    """
    if centers.ndim != 2:
        raise ValueError(f"expected centres of shape [K, D], got {tuple(centers.shape)}")
    k = centers.shape[0]
    if k < 2:
        raise ValueError(f"center_separation needs at least 2 classes, got {k}")
    iu = torch.triu_indices(k, k, offset=1, device=centers.device)
    gram = centers @ centers.T
    return {
        "max_inner": gram[iu[0], iu[1]].max(),
        # pdist takes differences directly: no cancellation for nearly equal centres.
        "min_distance": F.pdist(centers).min(),
        "delta_mu": 1 - centers.pow(2).sum(1).min() / r**2,
    }


# ───────────────────────── alignment and uniformity ─────────────────────────


@validated(alpha="> 0")
def alignment(z1: Tensor, z2: Tensor, alpha: float = 2) -> Tensor:
    r"""Alignment E‖z1 − z2‖^α of positive pairs (Wang & Isola 2020, eq. 4).

    With α = 2 this is Huang et al.'s L_align = E‖f(x1) − f(x2)‖² (PAPERS.md §5, Theorem 2).

    Examples:
        >>> alignment(torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]])).item()
        2.0
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] == 0:
        raise ValueError(f"alignment expects two non-empty [N, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    sq = (z1 - z2).pow(2).sum(1)
    return (sq if alpha == 2 else sq.pow(alpha / 2)).mean()


def _pair_exponents(rows: Tensor, cols: Tensor, diagonal: bool) -> Tensor:
    """One block of −t‖z_i − z_j‖² from the augmented factors of :func:`uniformity`; on a
    diagonal block the pairs j ≤ i are set to −inf so each pair counts once."""
    s = rows @ cols.T
    if diagonal:
        s.masked_fill_(torch.ones(s.shape, dtype=torch.bool, device=s.device).tril_(), float("-inf"))
    return s


@validated(t="> 0", block_size=">= 1")
def uniformity(z: Tensor, t: float = 2, block_size: int = 2048) -> Tensor:
    r"""Uniformity log E_{i<j} exp(−t‖z_i − z_j‖²) over distinct pairs (Wang & Isola 2020, eq. 5).

    The sum over the upper triangle of the pair matrix is accumulated in log space block by
    block (block_size × block_size at a time), then log(N(N−1)/2) is subtracted: memory is
    bounded, and a block whose terms underflow is redone with a shifted logsumexp, so the
    result stays finite when all pairs are far apart.

    Two antipodal points give −4t; N equal points give 0.

    Examples:
        >>> uniformity(torch.tensor([[1., 0.], [-1., 0.]]), t=2).item()
        -8.0
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"uniformity needs [N, D] embeddings with N >= 2, got {tuple(z.shape)}")
    n = z.shape[0]
    sq = z.pow(2).sum(1, keepdim=True)
    one = torch.ones_like(sq)
    # −t‖z_i − z_j‖² = [z_i, −t‖z_i‖², 1]·[2t z_j, 1, −t‖z_j‖²]: a block is one GEMM, no
    # broadcast passes over memory (the cost at this size). Every term is exp(≤ 0) ≤ 1.
    left = torch.cat([z, -t * sq, one], 1)
    right = torch.cat([2 * t * z, one, -t * sq], 1)
    tiny = torch.finfo(z.dtype).tiny ** 0.5
    total = torch.tensor(float("-inf"), dtype=z.dtype, device=z.device)
    for i0 in range(0, n, block_size):
        rows = left[i0 : i0 + block_size]
        for j0 in range(i0, n, block_size):  # upper-triangular blocks only
            cols = right[j0 : j0 + block_size]
            mass = _pair_exponents(rows, cols, j0 == i0).exp_().sum()
            # Below √tiny, underflowed terms could matter: redo the block with a shift.
            if mass > tiny:
                log_mass = mass.log()
            else:
                log_mass = torch.logsumexp(_pair_exponents(rows, cols, j0 == i0).flatten(), 0)
            total = torch.logaddexp(total, log_mass)
    return total - math.log(n * (n - 1) / 2)


# ───────────────────────────── misalignment ─────────────────────────────


@validated
def view_diameter(view_embeddings: Tensor) -> Tensor:
    r"""Per input, the largest distance between the embeddings of its M views:
    max_{a,b} ‖f(x^a) − f(x^b)‖, the quantity inside R_ε of Huang et al. (PAPERS.md §5).

    Args:
        view_embeddings: [M, N, D], M ≥ 2 views of N inputs.

    Returns:
        [N] diameters.

    Examples:
        >>> v = torch.tensor([[[0., 0.], [1., 1.]], [[3., 4.], [1., 1.]]])
        >>> view_diameter(v)
        tensor([5., 0.])
    """
    if view_embeddings.ndim != 3 or view_embeddings.shape[0] < 2:
        raise ValueError(f"expected [M, N, D] embeddings with M >= 2 views, got {tuple(view_embeddings.shape)}")
    x = view_embeddings.transpose(0, 1)  # [N, M, D]; only M×M pairs per input, so no chunking
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").amax(dim=(1, 2))


@validated(eps=">= 0")
def misalignment_rate(view_embeddings: Tensor, eps: float) -> Tensor:
    r"""Misalignment rate R_ε = P[ sup_{x1,x2∈A(x)} ‖f(x1) − f(x2)‖ > ε ] (Huang et al. 2023,
    PAPERS.md §5), estimated with M sampled views per input: the fraction of the N inputs
    whose view diameter (:func:`view_diameter`) exceeds ε. M finite views under-estimate
    the sup, so this is a lower estimate of R_ε that grows with M.

    Examples:
        >>> v = torch.tensor([[[0., 0.], [1., 1.]], [[3., 4.], [1., 1.]]])
        >>> misalignment_rate(v, eps=1.0).item()
        0.5
    """
    if view_embeddings.ndim == 3 and view_embeddings.shape[1] == 0:
        raise ValueError("misalignment_rate needs at least one input")
    return (view_diameter(view_embeddings) > eps).to(view_embeddings.dtype).mean()


# ─────────────────────── augmented distance and σ(δ) ───────────────────────


@validated(chunk_size=">= 1")
def augmented_distance(views: Tensor, chunk_size: int = 1024) -> Tensor:
    r"""Augmented distance d_A(x_i, x_j) = min_{a,b} ‖x_i^a − x_j^b‖ (Huang et al. 2023, Def. of
    (σ,δ)-augmentation, PAPERS.md §5), estimated over M sampled augmentations per input.

    Args:
        views: [M, N, ...] M augmentations of N inputs; trailing dims are flattened.
        chunk_size: rows of the output computed at once (memory ~ chunk_size × N).

    Returns:
        [N, N] symmetric matrix with zero diagonal (by definition, d_A(x, x) = 0).

    Examples:
        >>> views = torch.tensor([[[0., 0.], [5., 0.]], [[1., 0.], [3., 0.]]])  # M=2, N=2
        >>> augmented_distance(views)
        tensor([[0., 2.],
                [2., 0.]])
    """
    if views.ndim < 3 or views.shape[0] < 1 or views.shape[1] < 1:
        raise ValueError(f"expected views of shape [M, N, ...] with M, N >= 1, got {tuple(views.shape)}")
    m, n = views.shape[:2]
    x = views.reshape(m, n, -1)
    # Distances are translation invariant; centring shrinks the norms and so the
    # cancellation error of ‖a‖² + ‖b‖² − 2aᵀb.
    x = x - x.mean(dim=(0, 1))
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    for i0 in range(0, n, chunk_size):
        best = torch.full((min(chunk_size, n - i0), n), float("inf"), dtype=x.dtype, device=x.device)
        for a in range(m):
            for b in range(m):
                best = torch.minimum(best, _sq_dists(x[a, i0 : i0 + chunk_size], x[b]))
        out[i0 : i0 + chunk_size] = best.sqrt()
    out = torch.minimum(out, out.T)  # exact symmetry despite rounding in the two orders
    out.fill_diagonal_(0)
    return out


def aligned_crop_distance(
    images: Tensor,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    offsets_per_axis: int = 41,
    groups: Tensor | None = None,
) -> Tensor:
    r"""Augmented distance over *aligned* crop pairs: an upper estimate of d_A (Huang et al.
    2023, PAPERS.md §5) for a random-resized-crop augmentation, which can undo a translation.

        d_A(x_i, x_j) ≤ min over Δ = (Δy, Δx) of ‖R(x_i[B]) − R(x_j[B + Δ])‖

    B is an h × w box, B + Δ the same box moved by Δ, both inside the image; R resizes a crop
    to the image's side (bilinear, corner-aligned: kornia's ``RandomResizedCrop`` on the CPU).
    Each box has an area fraction within ``crop_scale`` and an aspect ratio w/h within
    ``crop_ratio``, so it is in the support of that crop, and each term is the distance of two
    augmentations of x_i and x_j: the minimum is ≥ d_A. Δ = 0 with the whole image is the
    identity, so the result is ≤ ‖x_i − x_j‖.

    Two inputs that differ by a translation (or a circular shift) Δ show the same content in B
    and B + Δ, so this estimate is ~0 for them, where M independently sampled views (see
    :func:`augmented_distance`) meet such a pair with probability zero and stay at the typical
    distance of two random crops. Per offset the box is the largest that fits both positions
    (shrunk on its long side to the ratio), centred in its room; offsets cover every Δ whose box
    meets ``crop_scale`` and ``crop_ratio``, on a grid of at most about ``offsets_per_axis``
    values per axis (every pixel up to 32-px images at the default scale).

    Args:
        images: [N, C, H, W] float images.
        crop_scale: area range of the crop, as a fraction of H·W.
        crop_ratio: aspect-ratio (w/h) range of the crop.
        offsets_per_axis: the most offsets tried per axis (cost is their square times N²·C·H·W).
        groups: optional [N] integer labels; only distances within a group are computed (σ(δ)
            reads no others), the rest are +inf. The crops are made once for all inputs.

    Returns:
        [N, N] symmetric matrix with zero diagonal.

    Examples:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> pair = torch.cat([x, x.roll(3, dims=-1)])  # the same image, shifted by 3 columns
        >>> d = aligned_crop_distance(pair)
        >>> round(float(d[0, 1]), 2), bool((pair[0] - pair[1]).norm() > 5)
        (0.0, True)
    """
    if images.ndim != 4 or images.shape[0] < 1 or not images.is_floating_point():
        raise ValueError(f"expected float images of shape [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0 or not 0.0 < crop_ratio[0] <= crop_ratio[1]:
        raise ValueError(f"expected 0 < crop_scale[0] <= crop_scale[1] <= 1 and 0 < crop_ratio[0] <= crop_ratio[1], got {crop_scale}, {crop_ratio}")
    if offsets_per_axis < 1:
        raise ValueError(f"offsets_per_axis must be >= 1, got {offsets_per_axis}")
    n, _, h, w = images.shape
    if groups is not None and (groups.ndim != 1 or groups.shape[0] != n):
        raise ValueError(f"expected groups of shape [{n}], got {tuple(groups.shape)}")
    blocks = [torch.arange(n, device=images.device)] if groups is None else [torch.nonzero(groups == g).flatten() for g in torch.unique(groups)]
    sizes = {idx.numel() for idx in blocks}
    if len(sizes) == 1:  # equal groups (balanced classes): one batched product per offset
        blocks = [torch.stack(blocks)]
    best = [torch.full((*idx.shape, idx.shape[-1]), float("inf"), dtype=images.dtype, device=images.device) for idx in blocks]
    # The largest offset along each axis that still leaves a box of the allowed area and ratio.
    reach_y = max(d for d in range(h) if _aligned_box(h, w, d, 0, crop_scale, crop_ratio) is not None) if _aligned_box(h, w, 0, 0, crop_scale, crop_ratio) else -1
    reach_x = max(d for d in range(w) if _aligned_box(h, w, 0, d, crop_scale, crop_ratio) is not None) if reach_y >= 0 else -1
    for dy in _offset_grid(reach_y, offsets_per_axis):
        for dx in _offset_grid(reach_x, offsets_per_axis):
            box = _aligned_box(h, w, dy, dx, crop_scale, crop_ratio)
            if box is None:
                continue
            (r0, c0), (bh, bw) = box
            a = _resized_crop(images, r0, c0, bh, bw).reshape(n, -1)
            b = _resized_crop(images, r0 + dy, c0 + dx, bh, bw).reshape(n, -1)
            centre = (a.mean(0) + b.mean(0)) / 2  # smaller norms, less cancellation (see augmented_distance)
            a, b = a - centre, b - centre
            for idx, block in zip(blocks, best):
                torch.minimum(block, _sq_dists(a[idx], b[idx]), out=block)  # [n, D], or [G, n, D] for equal groups
    out = torch.full((n, n), float("inf"), dtype=images.dtype, device=images.device)
    for idx, block in zip(blocks, best):
        for i, b in zip(idx.reshape(-1, idx.shape[-1]), block.reshape(-1, *block.shape[-2:])):
            out[i[:, None], i[None]] = b.sqrt()
    out = torch.minimum(out, out.T)  # (B, B + Δ) for (i, j) is (B + Δ, B) for (j, i): both are valid pairs
    out.fill_diagonal_(0)
    return out


def _offset_grid(reach: int, count: int) -> list[int]:
    """Offsets −reach … reach on a grid of at most about ``count`` values, always with 0; none if reach < 0."""
    if reach < 0:
        return []
    step = max(1, -(-(2 * reach + 1) // count))
    return sorted({*range(0, reach + 1, step), *range(0, -reach - 1, -step)})


def _aligned_box(h: int, w: int, dy: int, dx: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Top-left corner and size of the largest box B with B and B + (dy, dx) inside an h × w
    image, area fraction in ``scale`` and w/h in ``ratio``, centred in its room; None if none."""
    bh, bw = h - abs(dy), w - abs(dx)
    if bh < 1 or bw < 1:
        return None
    if bw > ratio[1] * bh:
        bw = math.floor(ratio[1] * bh)
    elif bw < ratio[0] * bh:
        bh = math.floor(bw / ratio[0])
    if bh * bw > scale[1] * h * w:  # too large: shrink both sides
        f = math.sqrt(scale[1] * h * w / (bh * bw))
        bh, bw = max(1, math.floor(bh * f)), max(1, math.floor(bw * f))
    if bh < 1 or bw < 1 or bh * bw < scale[0] * h * w or not ratio[0] <= bw / bh <= ratio[1]:
        return None
    lo_r, hi_r = max(0, -dy), min(h, h - dy) - bh
    lo_c, hi_c = max(0, -dx), min(w, w - dx) - bw
    return ((lo_r + hi_r) // 2, (lo_c + hi_c) // 2), (bh, bw)


def _resized_crop(images: Tensor, r0: int, c0: int, bh: int, bw: int) -> Tensor:
    """The crop resized to the image's side, bilinear with corners aligned, as two matrix
    products (F.interpolate's CPU kernel was 8 ms a call here, 25 of 32 s)."""
    crop = images[..., r0 : r0 + bh, c0 : c0 + bw]
    h, w = images.shape[-2:]
    if (bh, bw) == (h, w):
        return crop
    return _bilinear_matrix(h, bh, images.dtype, images.device) @ crop @ _bilinear_matrix(w, bw, images.dtype, images.device).T


@functools.lru_cache(maxsize=256)
def _bilinear_matrix(out: int, inp: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[out, inp] weights of 1-D linear interpolation with corners aligned (output o reads input
    o·(inp − 1)/(out − 1)), as ``F.interpolate(..., align_corners=True)``."""
    pos = torch.arange(out, dtype=torch.float64) * ((inp - 1) / (out - 1) if out > 1 else 0.0)
    lo = pos.floor().long().clamp(max=inp - 1)
    hi = (lo + 1).clamp(max=inp - 1)
    frac = pos - lo
    m = torch.zeros(out, inp, dtype=torch.float64)
    m[torch.arange(out), lo] += 1 - frac
    m[torch.arange(out), hi] += frac
    return m.to(dtype=dtype, device=device)


def _greedy_clique(adj: Tensor) -> list[int]:
    """A maximal clique, grown by always adding the candidate with most candidate neighbours.

    Candidate degrees are updated by subtracting the columns that leave the candidate set;
    each vertex leaves once, so the whole run costs O(n²).
    """
    n = adj.shape[0]
    a = adj.to(torch.int64)
    cand = torch.ones(n, dtype=torch.bool, device=adj.device)
    deg = a.sum(1)
    clique: list[int] = []
    while bool(cand.any()):
        v = int(torch.where(cand, deg, -1).argmax())
        clique.append(v)
        removed = cand & ~adj[v]  # includes v itself: no self-loops
        cand = cand & adj[v]
        deg = deg - a[:, removed].sum(1)
    return clique


def _max_clique_exact(adj: Tensor) -> list[int]:
    """A maximum clique by branch and bound with greedy-colouring bounds (Tomita & Seki 2003, MCQ).

    Vertex sets are Python-int bitsets. Vertices are relabelled by decreasing degree, and
    the greedy clique is the initial incumbent, both to prune early.
    """
    n = adj.shape[0]
    if n == 0:
        return []
    a = adj.cpu()
    order = torch.argsort(a.sum(1), descending=True, stable=True).tolist()
    rel = a[order][:, order]
    nbr = [sum(1 << j for j in torch.nonzero(rel[i]).flatten().tolist()) for i in range(n)]
    best = [order.index(v) for v in _greedy_clique(a)]

    def colour_sort(p: int) -> list[tuple[int, int]]:
        # Greedy colouring of p; a vertex of colour c can extend a clique by at most c vertices
        # among those coloured up to c.
        out, colour, q = [], 0, p
        while q:
            colour += 1
            u = q
            while u:
                v = (u & -u).bit_length() - 1
                u &= ~nbr[v] & ~(1 << v)
                q &= ~(1 << v)
                out.append((v, colour))
        return out

    def expand(clique: list[int], p: int) -> None:
        nonlocal best
        for v, colour in reversed(colour_sort(p)):
            if len(clique) + colour <= len(best):
                return
            clique.append(v)
            sub = p & nbr[v]
            if sub:
                expand(clique, sub)
            elif len(clique) > len(best):
                best = clique.copy()
            clique.pop()
            p &= ~(1 << v)

    expand([], (1 << n) - 1)
    return sorted(order[i] for i in best)


@validated(labels=("y",), delta=">= 0", exact_max_size=">= 0", num_classes=">= 1")
def sigma_delta(
    d_a: Tensor, y: Tensor, delta: float, exact_max_size: int = 64, num_classes: int | None = None
) -> dict:
    r"""σ(δ) of a (σ,δ)-augmentation (Huang et al. 2023, PAPERS.md §5).

    For each class C_k, the main part C_k⁰ is the largest subset whose pairwise augmented
    distance is ≤ δ: a maximum clique of the graph with an edge where d_A ≤ δ. Its size as
    a fraction of |C_k| is σ_k. Theorem 1 needs every class to have a main part of mass
    ≥ σ·p_k, so σ = min_k σ_k.

    A class with ≤ exact_max_size members is solved exactly (branch and bound, exponential in
    the worst case); a larger one gets a greedy maximal clique, which is a **lower bound** on
    σ_k, and therefore on σ. Theorem 1 may still be applied with it: an augmentation that is
    (σ,δ) is also (σ',δ) for every σ' ≤ σ.

    Args:
        d_a: [N, N] augmented distances (see :func:`augmented_distance`).
        y: [N] integer class labels.
        delta: δ ≥ 0.
        exact_max_size: largest class size solved exactly.
        num_classes: K; defaults to max(y) + 1. Every class must have a sample.

    Returns:
        dict with ``sigma`` (scalar tensor, min over classes), ``per_class`` ([K] fractions),
        ``clique_size`` and ``class_size`` ([K] int64), and ``method`` (list of K strings,
        "exact" or "greedy").

    Examples:
        >>> d = torch.tensor([[0., 1., 5.], [1., 0., 1.], [5., 1., 0.]])
        >>> out = sigma_delta(d, torch.tensor([0, 0, 0]), delta=1.0)
        >>> round(out["sigma"].item(), 4), out["method"]
        (0.6667, ['exact'])
    """
    if d_a.ndim != 2 or d_a.shape[0] != d_a.shape[1]:
        raise ValueError(f"expected a square [N, N] distance matrix, got {tuple(d_a.shape)}")
    k = _check_labels(d_a, y, num_classes)
    counts = _class_counts(y, k)
    adj = d_a <= delta
    adj.fill_diagonal_(False)
    sizes, methods = [], []
    for c in range(k):
        idx = torch.nonzero(y == c).flatten()
        sub = adj[idx][:, idx]
        exact = idx.numel() <= exact_max_size
        sizes.append(len(_max_clique_exact(sub) if exact else _greedy_clique(sub)))
        methods.append("exact" if exact else "greedy")
    dtype = d_a.dtype if d_a.dtype.is_floating_point else torch.get_default_dtype()
    clique_size = torch.tensor(sizes, dtype=torch.int64, device=d_a.device)
    per_class = clique_size.to(dtype) / counts.to(dtype)
    return {
        "sigma": per_class.min(),
        "per_class": per_class,
        "clique_size": clique_size,
        "class_size": counts,
        "method": methods,
    }


# ───────────────────────────── Lipschitz constant ─────────────────────────────


@validated(batch_size=">= 1")
def lipschitz_lower(f: Callable[[Tensor], Tensor], x1: Tensor, x2: Tensor, batch_size: int = 1024) -> Tensor:
    r"""Empirical lower estimate of the Lipschitz constant L of f (Huang et al., PAPERS.md §5):
    max over the given pairs of ‖f(x1) − f(x2)‖ / ‖x1 − x2‖, with inputs and outputs flattened
    per sample. Pairs with x1 = x2 are skipped. Any such ratio is ≤ L.

    Args:
        f: maps a batch [N, ...] to [N, ...], each input on its own (e.g. an encoder in eval
            mode); it is called on ``batch_size`` pairs at a time, so memory does not grow with N.
        x1: [N, ...] inputs.
        x2: [N, ...] inputs paired row by row with ``x1``.

    Examples:
        >>> lipschitz_lower(lambda x: 3 * x, torch.zeros(2, 4), torch.ones(2, 4)).item()
        3.0
    """
    if x1.shape != x2.shape or x1.ndim < 1:
        raise ValueError(f"x1 and x2 must have one shape [N, ...], got {tuple(x1.shape)} and {tuple(x2.shape)}")
    dx = (x1 - x2).flatten(1).norm(dim=1)
    keep = dx > 0
    if not bool(keep.any()):
        raise ValueError("every pair has x1 == x2; no ratio can be formed")
    a, b = x1[keep], x2[keep]
    with torch.no_grad():
        df = torch.cat([(f(a[i : i + batch_size]) - f(b[i : i + batch_size])).flatten(1).norm(dim=1) for i in range(0, a.shape[0], batch_size)])
    return (df / dx[keep].to(df.dtype)).max()


_GELU_LIPSCHITZ = 0.5 * (1 + math.erf(1)) + math.exp(-1) / math.sqrt(math.pi)  # Φ(x)+xφ(x) at x=√2

_ONE_LIPSCHITZ = (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Flatten, nn.Unflatten)


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding_mode != "zeros":
        raise ValueError(f"lipschitz_upper supports zero padding only, got padding_mode={conv.padding_mode!r}")
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise ValueError("padding='same' with an even effective kernel pads asymmetrically; not supported")
        return (total[0] // 2, total[1] // 2)
    return tuple(conv.padding)  # type: ignore[return-value]


def _conv_operator_norm(conv: nn.Conv2d, in_shape: torch.Size, iters: int, block: int = 8) -> Tensor:
    """‖A‖₂ of the linear map x ↦ conv(x) (bias dropped) on inputs of shape in_shape.

    Block power (subspace) iteration on AᵀA, with Aᵀ = conv_transpose2d (output_padding
    recovers the input size): ``block`` orthonormal inputs go through as one batch, and the
    answer is σ_max(AQ) of the final basis Q (Rayleigh–Ritz). That is ≤ ‖A‖₂ for any Q and
    converges like (σ_{block+1}/σ_1)^iters rather than (σ_2/σ_1)^iters, which matters
    because convs often have clustered top singular values.
    """
    w = conv.weight.detach()
    pad = _conv_padding(conv)

    def fwd(x: Tensor) -> Tensor:
        return F.conv2d(x, w, None, conv.stride, pad, conv.dilation, conv.groups)

    b = min(block, math.prod(in_shape[1:]))
    shape = (b, *in_shape[1:])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype).to(w.device)
    out_hw = fwd(x).shape[-2:]
    op = tuple(
        in_shape[-2 + i] - ((out_hw[i] - 1) * conv.stride[i] - 2 * pad[i] + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1)
        for i in range(2)
    )

    def adj(y: Tensor) -> Tensor:
        return F.conv_transpose2d(y, w, None, conv.stride, pad, op, conv.groups, conv.dilation)

    def orthonormal(x: Tensor) -> Tensor:  # rows of the result are an orthonormal basis
        return torch.linalg.qr(x.reshape(b, -1).T).Q.T.reshape(shape)

    for _ in range(iters):
        x = adj(fwd(orthonormal(x)))
    return torch.linalg.svdvals(fwd(orthonormal(x)).reshape(b, -1))[0]


def _conv_circulant_bound(conv: nn.Conv2d, in_shape: torch.Size) -> Tensor:
    """Certified upper bound on ‖A‖₂ of the conv on inputs of shape in_shape.

    On the zero-padded grid of size (H + 2p) × (W + 2p) the stride-1 conv agrees, at every
    valid output, with the circular cross-correlation by the same (dilated) kernel, which the
    2-D DFT block-diagonalises (Sedghi, Gupta & Long 2019): its norm is max_ω σ_max(K̂(ω)),
    with K̂(ω) the [C_out, C_in] matrix of kernel Fourier coefficients. Padding embeds
    isometrically, and striding and cropping only drop outputs, so A's norm is at most that.
    """
    pad = _conv_padding(conv)
    w = conv.weight.detach()
    c_out, c_in_g, kh, kw = w.shape
    dh, dw = conv.dilation
    h, wd = in_shape[-2] + 2 * pad[0], in_shape[-1] + 2 * pad[1]
    if dh * (kh - 1) + 1 > h or dw * (kw - 1) + 1 > wd:
        raise ValueError(f"input {tuple(in_shape)} is smaller than the kernel of {conv}")
    grid = torch.zeros(c_out, c_in_g, h, wd, dtype=w.dtype, device=w.device)
    grid[:, :, : dh * (kh - 1) + 1 : dh, : dw * (kw - 1) + 1 : dw] = w
    g = conv.groups  # grouped conv is block-diagonal: the norm is the max over groups
    spec = torch.fft.fft2(grid).reshape(g, c_out // g, c_in_g, h * wd).permute(0, 3, 1, 2)
    return torch.linalg.svdvals(spec).amax()


def _linear_schur_bound(layer: nn.Module, x: Tensor) -> Tensor:
    """Schur test ‖A‖₂ ≤ √(‖A‖₁‖A‖∞) for a linear map with non-negative weights (average
    pooling): row sums are A·1 and column sums Aᵀ·1, the gradient of Σ A·x."""
    ones = torch.ones_like(x, requires_grad=True)
    with torch.enable_grad():
        out = layer(ones)
        (col,) = torch.autograd.grad(out.sum(), ones)
    return torch.sqrt(out.detach().max() * col.max())


def _maxpool_lipschitz(pool: nn.MaxPool2d) -> float:
    # |max(a) − max(b)| ≤ ‖a − b‖ on each window, so ‖Δout‖² ≤ c‖Δin‖² where c is the most
    # windows any input element lies in.
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    k, s, d = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.dilation)
    c = 1
    for ki, si, di in zip(k, s, d):
        c *= min(ki, math.ceil((di * (ki - 1) + 1) / si))
    return math.sqrt(c)


def _sequential_leaves(model: nn.Module):
    """Leaf modules of a composition: a plain nn.Sequential, or a module that declares its
    forward as one (``sequential_parts() -> nn.Sequential``, e.g. a ResNet's stem, stages and
    pooling)."""
    if type(model).forward is nn.Sequential.forward:
        for child in model:
            yield from _sequential_leaves(child)
    elif callable(getattr(model, "sequential_parts", None)):
        yield from _sequential_leaves(model.sequential_parts())
    else:
        yield model


def _layer_lipschitz(m: nn.Module, x: Tensor | None, iters: int, certified: bool) -> Tensor | float:
    if callable(getattr(m, "residual_parts", None)):  # post(branch(x) + shortcut(x))
        branch, shortcut, post = m.residual_parts()
        shape = None if x is None else tuple(x.shape[1:])
        inner = lipschitz_upper(branch, shape, iters, certified) + lipschitz_upper(shortcut, shape, iters, certified)
        after = None if x is None else tuple(branch(x).shape[1:])
        return lipschitz_upper(post, after, iters, certified) * inner
    if isinstance(m, nn.Linear):
        return torch.linalg.matrix_norm(m.weight.detach(), ord=2)
    if isinstance(m, nn.Conv2d):
        return _conv_circulant_bound(m, x.shape) if certified else _conv_operator_norm(m, x.shape, iters)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training or m.running_var is None:
            raise ValueError(f"{type(m).__name__} must be in eval mode with running statistics (call model.eval())")
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = m.weight.detach() * scale
        return scale.abs().max()
    if isinstance(m, nn.Dropout):
        if m.training:
            raise ValueError("Dropout must be in eval mode (call model.eval())")
        return 1.0
    if isinstance(m, _ONE_LIPSCHITZ):
        return 1.0
    if isinstance(m, nn.LeakyReLU):
        return max(1.0, abs(m.negative_slope))
    if isinstance(m, nn.ELU):
        return max(1.0, m.alpha)
    if isinstance(m, nn.Sigmoid):
        return 0.25
    if isinstance(m, nn.GELU) and m.approximate == "none":
        return _GELU_LIPSCHITZ
    if isinstance(m, nn.MaxPool2d):
        return _maxpool_lipschitz(m)
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return _linear_schur_bound(m, x)
    raise TypeError(
        f"lipschitz_upper cannot bound module {type(m).__name__!r}: only nn.Sequential compositions "
        "of Linear, Conv2d, BatchNorm (eval), pooling and known activations are supported. A module "
        "with its own forward (a residual block, input normalisation) needs a bound of its own, "
        "e.g. L(shortcut) + L(branch) per residual block: bound the plain parts and multiply."
    )


@validated(iters=">= 1")
def lipschitz_upper(
    model: nn.Module, input_shape: tuple[int, ...] | None = None, iters: int = 50, certified: bool = False
) -> Tensor:
    r"""Upper bound on the Lipschitz constant L of f (Huang et al., PAPERS.md §5): the product of
    the layers' Lipschitz constants, valid because the Lipschitz constant of a composition
    is at most the product of its parts.

    - nn.Linear: ‖W‖₂ (exact, by SVD). Biases do not matter.
    - nn.Conv2d: the operator norm of the conv as a linear map, which depends on the input
      size, so ``input_shape`` (one sample, e.g. (3, 32, 32)) is required. It is computed by
      ``iters`` steps of block power iteration on AᵀA (8 vectors, Rayleigh–Ritz) with
      conv2d and conv_transpose2d. Power iteration converges to ‖A‖₂ from below, so with too few steps (a small gap between
      the top two singular values) the product can fall short of a true upper bound:
      raise ``iters`` until the value settles, or pass ``certified=True`` to use instead the
      circulant (Fourier) bound max_ω σ_max(K̂(ω)) on the padded grid (Sedghi et al. 2019),
      which is ≥ ‖A‖₂ always, equal for 1×1 convs, and looser for strided convs.
    - BatchNorm (eval mode only): max_c |γ_c| / √(var_c + eps).
    - ReLU, ReLU6, Tanh, Hardtanh, Softplus, Identity, Flatten, Dropout (eval): 1;
      LeakyReLU: max(1, |slope|); ELU: max(1, α); Sigmoid: 1/4; GELU (exact): ≈ 1.1289.
    - MaxPool2d: √c with c the most windows one input lies in (1 when windows do not overlap);
      AvgPool2d / AdaptiveAvgPool2d: the Schur bound √(max row sum · max column sum).

    - A residual block that declares ``residual_parts() -> (branch, shortcut, post)``, meaning
      that its forward is post(branch(x) + shortcut(x)): L(post) · (L(branch) + L(shortcut)),
      each part bounded by this function on the block's input size (the triangle inequality:
      ‖g(x) + s(x) − g(y) − s(y)‖ ≤ (L_g + L_s)‖x − y‖). An empty shortcut is the identity, 1.
      (clbounds' ResNet ``BasicBlock`` declares its parts; a test checks the decomposition.)

    - A module that declares ``sequential_parts() -> nn.Sequential`` (its forward is that
      composition) is walked like a Sequential: the importers' torchvision-layout ResNet-18/50
      (stem, max-pool, stages of blocks with ``residual_parts``, adaptive average pool).

    Only plain nn.Sequential compositions, declared compositions and such residual blocks are
    walked, since only their forward is known from their children. Any other module with children (a wrapper that
    normalises its input, a block without ``residual_parts``) raises TypeError rather than
    return a wrong number: bound such parts by hand.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
        >>> with torch.no_grad(): _ = net[0].weight.copy_(torch.diag(torch.tensor([3., 1.])))
        >>> lipschitz_upper(net).item()
        3.0
    """
    spatial = (nn.Conv2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    if input_shape is None and any(isinstance(m, spatial) for m in model.modules()):
        raise ValueError("the model has conv/pooling layers, whose operator norm depends on the input size: pass input_shape, e.g. (3, 32, 32)")
    leaves = list(_sequential_leaves(model))
    ref = next(model.parameters(), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else torch.device("cpu")
    x = None if input_shape is None else torch.zeros((1, *input_shape), dtype=dtype, device=device)
    bound = torch.ones((), dtype=dtype, device=device)
    with torch.no_grad():
        for m in leaves:
            bound = bound * _layer_lipschitz(m, x, iters, certified)
            if x is not None:
                x = m(x)  # propagate the shape to the next layer
    return bound


# ───────────────────────────── nearest centre ─────────────────────────────


@validated(chunk_size=">= 1")
def nearest_center_predict(z: Tensor, centers: Tensor, chunk_size: int = 8192) -> Tensor:
    r"""Nearest-centre classifier G_f(x) = argmin_k ‖f(x) − μ_k‖ (Huang et al. 2023, PAPERS.md §5).

    Ties go to the smallest class index. Chunked over N.

    Examples:
        >>> nearest_center_predict(torch.tensor([[0.9, 0.], [0., 2.]]), torch.eye(2))
        tensor([0, 1])
    """
    if z.ndim != 2 or centers.ndim != 2 or z.shape[1] != centers.shape[1] or centers.shape[0] == 0:
        raise ValueError(f"expected z [N, D] and centres [K, D] with K >= 1, got {tuple(z.shape)} and {tuple(centers.shape)}")
    c = centers.to(z.dtype)
    # ‖z‖² is the same for every k, so argmin_k (‖μ_k‖² − 2 zᵀμ_k) is enough.
    c_sq = c.pow(2).sum(1)
    out = [(c_sq - 2 * z[i : i + chunk_size] @ c.T).argmin(1) for i in range(0, z.shape[0], chunk_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=z.device)


@validated(labels=("y",))
def nearest_center_error(z: Tensor, y: Tensor, centers: Tensor) -> Tensor:
    r"""Err(G_f) = P[G_f(x) ≠ y], the error of the nearest-centre classifier that Huang et al.
    Theorem 1 bounds by (1 − σ) + R_ε (PAPERS.md §5).

    Examples:
        >>> z = torch.tensor([[0.9, 0.], [0., 2.], [1., 0.1]])
        >>> nearest_center_error(z, torch.tensor([0, 1, 1]), torch.eye(2)).item()
        0.3333333432674408
    """
    if y.ndim != 1 or y.shape[0] != z.shape[0] or y.numel() == 0:
        raise ValueError(f"expected non-empty labels of shape [{z.shape[0]}], got {tuple(y.shape)}")
    dtype = z.dtype if z.dtype.is_floating_point else torch.get_default_dtype()
    return (nearest_center_predict(z, centers) != y).to(dtype).mean()
