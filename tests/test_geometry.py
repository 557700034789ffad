"""Tests of theory.geometry: closed forms, brute-force loops on tiny inputs, properties."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from clbounds.theory.geometry import (
    _aligned_box,
    _conv_circulant_bound,
    _conv_operator_norm,
    _greedy_clique,
    _max_clique_exact,
    aligned_crop_distance,
    alignment,
    augmented_distance,
    center_separation,
    class_centers,
    intra_class_spread,
    lipschitz_lower,
    lipschitz_upper,
    misalignment_rate,
    nearest_center_error,
    nearest_center_predict,
    sigma_delta,
    uniformity,
    view_diameter,
)

F64 = torch.float64
PROPERTY = settings(max_examples=30, deadline=None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def simplex(k: int, d: int | None = None) -> torch.Tensor:
    """K unit vectors with pairwise inner product −1/(K−1), embedded in D ≥ K dims."""
    v = torch.eye(k, dtype=F64) - 1.0 / k
    v = v / v.norm(dim=1, keepdim=True)
    return torch.cat([v, torch.zeros(k, (d or k) - k, dtype=F64)], 1)


def labelled(seed: int, n: int, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [n, d] embeddings with labels that use every one of k classes."""
    g = gen(seed)
    y = torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=g)])
    y = y[torch.randperm(n, generator=g)]
    return torch.randn(n, d, generator=g, dtype=F64), y


def random_graph_distances(seed: int, n: int, p: float) -> torch.Tensor:
    """A symmetric d_A whose threshold graph at δ = 1 is G(n, p): 0.5 on edges, 2 elsewhere."""
    r = torch.rand(n, n, generator=gen(seed)) < p
    adj = torch.triu(r, 1)
    adj = adj | adj.T
    d = torch.where(adj, 0.5, 2.0).to(F64)
    return d.fill_diagonal_(0)


# ───────────────────── brute-force references (plain loops) ─────────────────────


def dist(u, v) -> float:
    return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(u, v)))


def bf_centers(z, y, k):
    out = []
    for c in range(k):
        rows = [z[i] for i in range(len(y)) if int(y[i]) == c]
        out.append([sum(float(r[j]) for r in rows) / len(rows) for j in range(z.shape[1])])
    return torch.tensor(out, dtype=F64)


def bf_max_clique_size(adj) -> int:
    n = adj.shape[0]
    for size in range(n, 0, -1):
        for sub in itertools.combinations(range(n), size):
            if all(adj[i, j] for i, j in itertools.combinations(sub, 2)):
                return size
    return 0


# ───────────────────────── simplex closed forms ─────────────────────────


@pytest.mark.parametrize("k, extra_dims", [(2, 0), (3, 1), (5, 0), (5, 3), (8, 2)])
def test_regular_simplex_separation(k, extra_dims):
    out = center_separation(simplex(k, k + extra_dims))
    assert out["max_inner"].item() == pytest.approx(-1 / (k - 1), abs=1e-12)
    assert out["min_distance"].item() == pytest.approx(math.sqrt(2 * k / (k - 1)), abs=1e-12)
    assert out["delta_mu"].item() == pytest.approx(0.0, abs=1e-12)


def test_regular_simplex_in_k_minus_1_dims():
    # Project the K = 5 simplex onto the orthonormal basis of its (K−1)-dim span.
    v = simplex(5)
    basis = torch.linalg.svd(v, full_matrices=False).Vh[:4]  # rank 4
    w = v @ basis.T
    assert w.shape == (5, 4)
    out = center_separation(w)
    assert out["max_inner"].item() == pytest.approx(-0.25, abs=1e-12)
    assert out["min_distance"].item() == pytest.approx(math.sqrt(10 / 4), abs=1e-12)
    assert out["delta_mu"].item() == pytest.approx(0.0, abs=1e-12)


def test_simplex_recovered_from_symmetric_samples():
    k, d, m = 5, 7, 6
    v = simplex(k, d)
    g = gen(0)
    z, y, sq = [], [], []
    for c in range(k):
        e = 0.3 * torch.randn(m, d, generator=g, dtype=F64)
        z += [v[c] + e, v[c] - e]  # symmetric noise: the mean is exactly the vertex
        y += [c] * 2 * m
        sq.append(e.pow(2).sum(1).repeat(2))
    z, y, sq = torch.cat(z), torch.tensor(y), torch.cat(sq)
    perm = torch.randperm(len(y), generator=g)
    z, y, sq = z[perm], y[perm], sq[perm]
    mu = class_centers(z, y)
    torch.testing.assert_close(mu, v, atol=1e-12, rtol=0)
    out = center_separation(mu)
    assert out["max_inner"].item() == pytest.approx(-1 / (k - 1), abs=1e-12)
    assert out["min_distance"].item() == pytest.approx(math.sqrt(2 * k / (k - 1)), abs=1e-12)
    assert out["delta_mu"].item() == pytest.approx(0.0, abs=1e-12)
    # Spread: ‖z − μ_y‖ = ‖±e‖.
    assert intra_class_spread(z, y).item() == pytest.approx(sq.mean().item(), rel=1e-12)
    per_class = torch.stack([sq[y == c].mean() for c in range(k)])
    torch.testing.assert_close(intra_class_spread(z, y, per_class=True), per_class, rtol=1e-12, atol=0)


def test_delta_mu_with_radius():
    centers = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64)
    assert center_separation(centers, r=2.0)["delta_mu"].item() == pytest.approx(1 - 1 / 4)


# ─────────────────────────── other closed forms ───────────────────────────


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.0])
def test_uniformity_antipodal_pair(t):
    u = torch.nn.functional.normalize(torch.randn(1, 6, generator=gen(1), dtype=F64), dim=1)
    assert uniformity(torch.cat([u, -u]), t=t).item() == pytest.approx(-4 * t, rel=1e-12)


def test_uniformity_far_points_do_not_underflow():
    # exp(−2·100²) underflows to 0; the shifted fallback must still give −2·10⁴ exactly.
    z = torch.tensor([[0.0], [100.0]], dtype=F64)
    assert uniformity(z, t=2).item() == pytest.approx(-2e4, rel=1e-12)
    z32 = torch.tensor([[0.0], [10.0], [30.0]])
    expected = math.log(sum(math.exp(-(d**2)) for d in (10, 20, 30)) / 3)  # finite in float64 only
    assert torch.isfinite(uniformity(z32, t=1))
    assert uniformity(z32.double(), t=1).item() == pytest.approx(expected, rel=1e-12)


def test_intra_class_spread_known_configuration():
    z = torch.tensor([[0, 0], [2, 0], [0, 1], [0, 3], [0, 5]], dtype=F64)
    y = torch.tensor([0, 0, 1, 1, 1])
    # Centres (1, 0) and (0, 3); squared deviations 1, 1 | 4, 0, 4.
    assert intra_class_spread(z, y).item() == pytest.approx(10 / 5)
    torch.testing.assert_close(intra_class_spread(z, y, per_class=True), torch.tensor([1.0, 8 / 3], dtype=F64))


def test_alignment_closed_form():
    z1 = torch.eye(3, dtype=F64)
    z2 = torch.roll(z1, 1, dims=0)  # orthogonal unit vectors: ‖z1 − z2‖ = √2
    assert alignment(z1, z2).item() == pytest.approx(2.0)
    assert alignment(z1, z2, alpha=1).item() == pytest.approx(math.sqrt(2))
    assert alignment(z1, z1).item() == 0.0


def test_augmented_distance_one_view_is_euclidean():
    x = torch.randn(1, 9, 2, 3, generator=gen(2), dtype=F64)
    flat = x[0].flatten(1)
    expected = torch.tensor([[dist(flat[i], flat[j]) for j in range(9)] for i in range(9)], dtype=F64)
    torch.testing.assert_close(augmented_distance(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(augmented_distance(x, chunk_size=2), expected, atol=1e-12, rtol=0)


def test_misalignment_closed_form():
    # Views of input n are 0 and n·e₁: diameter n, so R_ε = #{n > ε} / N.
    n = torch.arange(6, dtype=F64)
    views = torch.stack([torch.zeros(6, 3, dtype=F64), n[:, None] * torch.eye(3, dtype=F64)[0]])
    torch.testing.assert_close(view_diameter(views), n)
    assert misalignment_rate(views, eps=2.5).item() == pytest.approx(3 / 6)
    assert misalignment_rate(views, eps=3.0).item() == pytest.approx(2 / 6)  # strict: 3 does not exceed 3


# ───────────────────────── brute force on tiny input ─────────────────────────


@pytest.mark.parametrize("seed", range(3))
def test_class_centers_and_spread_brute_force(seed):
    z, y = labelled(seed, 11, 3, 4)
    mu = bf_centers(z, y, 3)
    torch.testing.assert_close(class_centers(z, y), mu, atol=1e-12, rtol=0)
    sq = [dist(z[i], mu[int(y[i])]) ** 2 for i in range(11)]
    assert intra_class_spread(z, y).item() == pytest.approx(sum(sq) / 11, rel=1e-12)
    per = [sum(s for s, c in zip(sq, y.tolist()) if c == k) / y.tolist().count(k) for k in range(3)]
    torch.testing.assert_close(intra_class_spread(z, y, per_class=True), torch.tensor(per, dtype=F64))


@pytest.mark.parametrize("seed", range(3))
def test_center_separation_brute_force(seed):
    c = torch.randn(5, 3, generator=gen(seed), dtype=F64)
    pairs = [(k, l) for k in range(5) for l in range(5) if k != l]
    out = center_separation(c, r=1.5)
    assert out["max_inner"].item() == pytest.approx(max(sum(float(a) * float(b) for a, b in zip(c[k], c[l])) for k, l in pairs))
    assert out["min_distance"].item() == pytest.approx(min(dist(c[k], c[l]) for k, l in pairs))
    assert out["delta_mu"].item() == pytest.approx(1 - min(dist(v, [0, 0, 0]) ** 2 for v in c) / 1.5**2)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_brute_force(alpha):
    z1, z2 = torch.randn(2, 7, 4, generator=gen(3), dtype=F64)
    expected = sum(dist(a, b) ** alpha for a, b in zip(z1, z2)) / 7
    assert alignment(z1, z2, alpha=alpha).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("block_size", [1, 3, 4, 100])
def test_uniformity_brute_force(block_size):
    z = torch.nn.functional.normalize(torch.randn(9, 3, generator=gen(4), dtype=F64), dim=1)
    terms = [math.exp(-2 * dist(z[i], z[j]) ** 2) for i in range(9) for j in range(i + 1, 9)]
    assert uniformity(z, t=2, block_size=block_size).item() == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-12)


def test_misalignment_brute_force():
    views = torch.randn(4, 12, 3, generator=gen(5), dtype=F64)
    diam = [max(dist(views[a, n], views[b, n]) for a in range(4) for b in range(4)) for n in range(12)]
    torch.testing.assert_close(view_diameter(views), torch.tensor(diam, dtype=F64))
    for eps in (0.5, 1.5, 2.5, 4.0):
        assert misalignment_rate(views, eps).item() == pytest.approx(sum(d > eps for d in diam) / 12)


def test_augmented_distance_brute_force():
    views = torch.randn(3, 6, 2, 2, generator=gen(6), dtype=F64)
    flat = views.flatten(2)
    expected = torch.tensor(
        [[0.0 if i == j else min(dist(flat[a, i], flat[b, j]) for a in range(3) for b in range(3)) for j in range(6)] for i in range(6)],
        dtype=F64,
    )
    for chunk in (1, 4, 1024):
        torch.testing.assert_close(augmented_distance(views, chunk_size=chunk), expected, atol=1e-12, rtol=0)


def _aligned_brute_force(images: torch.Tensor, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Every pair of equal-size boxes B, B + Δ inside the image (any size and position) whose area
    and ratio are in range, cropped and resized by kornia (the augmentation's own CPU operator)."""
    from kornia.geometry.transform import crop_by_indices

    n, _, h, w = images.shape
    best = torch.full((n, n), float("inf"), dtype=images.dtype)
    for bh, bw in itertools.product(range(1, h + 1), range(1, w + 1)):
        if not (scale[0] * h * w <= bh * bw <= scale[1] * h * w and ratio[0] <= bw / bh <= ratio[1]):
            continue
        for r0, c0, r1, c1 in itertools.product(range(h - bh + 1), range(w - bw + 1), range(h - bh + 1), range(w - bw + 1)):
            box = lambda r, c: torch.tensor([[[c, r], [c + bw - 1, r], [c + bw - 1, r + bh - 1], [c, r + bh - 1]]], dtype=images.dtype).expand(n, 4, 2)
            a = crop_by_indices(images, box(r0, c0), size=(h, w), align_corners=True).flatten(1)
            b = crop_by_indices(images, box(r1, c1), size=(h, w), align_corners=True).flatten(1)
            best = torch.minimum(best, torch.cdist(a, b))
    return best


def test_aligned_crop_distance_undoes_a_circular_shift_and_stays_above_every_crop_pair():
    """Closed form: two copies of one image, circularly shifted by (2, 3), are at distance 0 (the
    crops that show the same content), while the raw distance is large. Against kornia's own
    crop operator over *every* pair of equal-size boxes in range (a superset of the aligned
    ones): the estimate is never below that minimum and never above the raw distance."""
    x = torch.rand(3, 3, 8, 8, generator=gen(0), dtype=F64)
    images = torch.cat([x, x.roll((2, 3), dims=(-2, -1))])
    d = aligned_crop_distance(images)
    assert torch.diagonal(d[:3, 3:]).abs().max() < 1e-6
    raw = torch.cdist(images.flatten(1), images.flatten(1))
    assert (raw.diagonal(3) > 1).all()
    assert (d <= raw + 1e-9).all() and torch.equal(d, d.T) and (d.diagonal() == 0).all()
    brute = _aligned_brute_force(images)
    brute.fill_diagonal_(0)
    assert (d >= brute - 1e-9).all()
    grouped = aligned_crop_distance(images, groups=torch.tensor([0, 1, 0, 0, 1, 0]))
    same = torch.tensor([0, 1, 0, 0, 1, 0])
    mask = same[:, None] == same[None]
    torch.testing.assert_close(grouped[mask], d[mask], atol=1e-6, rtol=0)  # sqrt of rounding at the zero pairs
    assert torch.isinf(grouped[~mask]).all()


def test_aligned_crop_distance_matches_kornia_on_its_own_boxes():
    """The same minimum as the brute-force loop restricted to the boxes the estimate uses."""
    from kornia.geometry.transform import crop_by_indices

    images = torch.rand(4, 3, 9, 9, generator=gen(1), dtype=F64)
    n, _, h, w = images.shape
    expected = torch.full((n, n), float("inf"), dtype=F64)
    for dy, dx in itertools.product(range(-h + 1, h), range(-w + 1, w)):
        box = _aligned_box(h, w, dy, dx, (0.2, 1.0), (3 / 4, 4 / 3))
        if box is None:
            continue
        (r0, c0), (bh, bw) = box
        corners = lambda r, c: torch.tensor([[[c, r], [c + bw - 1, r], [c + bw - 1, r + bh - 1], [c, r + bh - 1]]], dtype=F64).expand(n, 4, 2)
        a = crop_by_indices(images, corners(r0, c0), size=(h, w), align_corners=True).flatten(1)
        b = crop_by_indices(images, corners(r0 + dy, c0 + dx), size=(h, w), align_corners=True).flatten(1)
        expected = torch.minimum(expected, torch.cdist(a, b))
    expected = torch.minimum(expected, expected.T)
    expected.fill_diagonal_(0)
    torch.testing.assert_close(aligned_crop_distance(images), expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("side", [8, 16, 32, 96])
def test_aligned_boxes_are_in_the_support_of_the_crop(side):
    for dy, dx in itertools.product(range(-side + 1, side), repeat=2):
        box = _aligned_box(side, side, dy, dx, (0.2, 1.0), (3 / 4, 4 / 3))
        if box is None:
            continue
        (r0, c0), (bh, bw) = box
        assert 0.2 * side * side <= bh * bw <= side * side and 3 / 4 <= bw / bh <= 4 / 3
        for r, c in ((r0, c0), (r0 + dy, c0 + dx)):
            assert 0 <= r and r + bh <= side and 0 <= c and c + bw <= side
    assert _aligned_box(side, side, 0, 0, (0.2, 1.0), (3 / 4, 4 / 3)) == ((0, 0), (side, side))  # the identity


@pytest.mark.parametrize("seed", range(4))
def test_sigma_delta_brute_force(seed):
    g = gen(seed)
    # Two classes of 10 and 7 points on a line, M = 2 augmentations each.
    y = torch.tensor([0] * 10 + [1] * 7)
    base = 3 * torch.rand(17, 1, generator=g, dtype=F64)
    views = torch.stack([base, base + 0.2 * torch.randn(17, 1, generator=g, dtype=F64)])
    d = augmented_distance(views)
    delta = 0.8
    adj = (d <= delta).tolist()
    fractions = []
    for c in range(2):
        idx = [i for i in range(17) if int(y[i]) == c]
        sub = torch.tensor([[adj[i][j] for j in idx] for i in idx])
        fractions.append(bf_max_clique_size(sub) / len(idx))
    out = sigma_delta(d, y, delta)
    torch.testing.assert_close(out["per_class"], torch.tensor(fractions, dtype=F64))
    assert out["sigma"].item() == pytest.approx(min(fractions))
    assert out["method"] == ["exact", "exact"]


def test_nearest_center_error_brute_force():
    z, y = labelled(7, 20, 4, 3)
    centers = torch.randn(4, 3, generator=gen(8), dtype=F64)
    pred = [min(range(4), key=lambda k: dist(z[i], centers[k])) for i in range(20)]
    assert nearest_center_predict(z, centers, chunk_size=3).tolist() == pred
    assert nearest_center_error(z, y, centers).item() == pytest.approx(sum(p != int(t) for p, t in zip(pred, y)) / 20)


# ─────────────────────────────── σ(δ) ───────────────────────────────


def test_sigma_delta_known_graph_and_greedy_trap():
    # Class 0 (11 vertices): a star with hub 0 and leaves 1..6 (no leaf–leaf edges) plus a
    # 4-clique {7, 8, 9, 10}. ω = 4, but greedy-by-degree starts at the hub (degree 6) → 2.
    # Class 1 (5 vertices): the 5-cycle, ω = 2.
    edges0 = [(0, i) for i in range(1, 7)] + list(itertools.combinations(range(7, 11), 2))
    edges1 = [(i, (i + 1) % 5) for i in range(5)]
    n = 16
    d = torch.full((n, n), 9.0, dtype=F64).fill_diagonal_(0)
    for i, j in edges0 + [(11 + a, 11 + b) for a, b in edges1]:
        d[i, j] = d[j, i] = 1.0
    y = torch.tensor([0] * 11 + [1] * 5)
    exact = sigma_delta(d, y, delta=1.0)
    assert exact["method"] == ["exact", "exact"]
    assert exact["clique_size"].tolist() == [4, 2]
    torch.testing.assert_close(exact["per_class"], torch.tensor([4 / 11, 2 / 5], dtype=F64))
    assert exact["sigma"].item() == pytest.approx(4 / 11)
    greedy = sigma_delta(d, y, delta=1.0, exact_max_size=0)
    assert greedy["method"] == ["greedy", "greedy"]
    assert greedy["clique_size"].tolist() == [2, 2]
    assert greedy["sigma"].item() == pytest.approx(2 / 11)
    # With δ below every edge, only singletons remain; with δ above all, the whole class.
    assert sigma_delta(d, y, delta=0.5)["sigma"].item() == pytest.approx(1 / 11)
    assert sigma_delta(d, y, delta=10.0)["sigma"].item() == pytest.approx(1.0)


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(1, 14), p=st.floats(0.1, 0.95))
def test_greedy_is_a_clique_no_larger_than_exact(seed, n, p):
    adj = random_graph_distances(seed, n, p) <= 1.0
    adj.fill_diagonal_(False)
    exact, greedy = _max_clique_exact(adj), _greedy_clique(adj)
    for clique in (exact, greedy):
        assert len(set(clique)) == len(clique)
        assert all(adj[i, j] for i, j in itertools.combinations(clique, 2))
    assert len(greedy) <= len(exact)
    if n <= 10:
        assert len(exact) == bf_max_clique_size(adj)


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(3, 30), p=st.floats(0.1, 0.9))
def test_sigma_delta_greedy_lower_bound(seed, n, p):
    d = random_graph_distances(seed, n, p)
    y = torch.randint(0, 3, (n,), generator=gen(seed))
    y[:3] = torch.arange(3)
    exact = sigma_delta(d, y, 1.0, exact_max_size=n)
    greedy = sigma_delta(d, y, 1.0, exact_max_size=0)
    assert (greedy["per_class"] <= exact["per_class"]).all()
    assert greedy["sigma"] <= exact["sigma"]
    assert ((exact["per_class"] > 0) & (exact["per_class"] <= 1)).all()


# ─────────────────────── permutation / relabelling invariance ───────────────────────


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(4, 25), k=st.integers(2, 4))
def test_geometry_invariant_under_joint_permutation(seed, n, k):
    z, y = labelled(seed, n, k, 3)
    z2 = z + 0.1 * torch.randn(z.shape, generator=gen(seed + 1), dtype=F64)
    perm = torch.randperm(n, generator=gen(seed + 2))
    mu = class_centers(z, y)
    torch.testing.assert_close(class_centers(z[perm], y[perm]), mu)
    torch.testing.assert_close(intra_class_spread(z[perm], y[perm]), intra_class_spread(z, y))
    torch.testing.assert_close(intra_class_spread(z[perm], y[perm], per_class=True), intra_class_spread(z, y, per_class=True))
    torch.testing.assert_close(alignment(z[perm], z2[perm]), alignment(z, z2))
    torch.testing.assert_close(uniformity(z[perm], block_size=3), uniformity(z))
    torch.testing.assert_close(nearest_center_error(z[perm], y[perm], mu), nearest_center_error(z, y, mu))


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(5, 25), k=st.integers(2, 5))
def test_geometry_under_relabelling(seed, n, k):
    z, y = labelled(seed, n, k, 3)
    pi = torch.randperm(k, generator=gen(seed + 3))  # class c is renamed pi[c]
    y2 = pi[y]
    mu, mu2 = class_centers(z, y), class_centers(z, y2)
    torch.testing.assert_close(mu2[pi], mu)
    torch.testing.assert_close(intra_class_spread(z, y2), intra_class_spread(z, y))
    torch.testing.assert_close(intra_class_spread(z, y2, per_class=True)[pi], intra_class_spread(z, y, per_class=True))
    sep, sep2 = center_separation(mu), center_separation(mu2)
    for key in sep:
        torch.testing.assert_close(sep2[key], sep[key])
    torch.testing.assert_close(nearest_center_error(z, y2, mu2), nearest_center_error(z, y, mu))
    torch.testing.assert_close(nearest_center_predict(z, mu2), pi[nearest_center_predict(z, mu)])


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(3, 20))
def test_sigma_and_misalignment_permutation(seed, n):
    g = gen(seed)
    views = torch.randn(3, n, 2, generator=g, dtype=F64)
    y = torch.cat([torch.arange(2), torch.randint(0, 2, (n - 2,), generator=g)])
    perm, pi = torch.randperm(n, generator=g), torch.tensor([1, 0])
    d = augmented_distance(views)
    torch.testing.assert_close(augmented_distance(views[:, perm]), d[perm][:, perm])
    out = sigma_delta(d, y, 1.0)
    torch.testing.assert_close(sigma_delta(d[perm][:, perm], y[perm], 1.0)["per_class"], out["per_class"])
    torch.testing.assert_close(sigma_delta(d, pi[y], 1.0)["per_class"][pi], out["per_class"])
    rate = misalignment_rate(views, 1.5)
    torch.testing.assert_close(misalignment_rate(views[:, perm], 1.5), rate)
    torch.testing.assert_close(misalignment_rate(views[torch.tensor([2, 0, 1])], 1.5), rate)


# ─────────────────────────────── Lipschitz ───────────────────────────────


@pytest.fixture
def one_thread():
    # Power iteration is thousands of tiny convs; on a busy 2-core machine OpenMP's thread
    # hand-offs make each one ~100× slower. Results do not depend on the thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dense_matrix(op, in_shape) -> torch.Tensor:
    """The matrix of a linear map on inputs of shape in_shape, column by column."""
    numel = math.prod(in_shape)
    basis = torch.eye(numel, dtype=F64).reshape(numel, *in_shape)
    with torch.no_grad():
        return op(basis).reshape(numel, -1).T


def test_lipschitz_linear_map():
    lin = nn.Linear(5, 3, dtype=F64)
    w = lin.weight.detach()
    spectral = torch.linalg.svdvals(w)[0]
    upper = lipschitz_upper(nn.Sequential(lin, nn.ReLU()))
    assert upper.item() == pytest.approx(spectral.item(), rel=1e-12)
    x1, x2 = torch.randn(2, 50, 5, generator=gen(9), dtype=F64)
    assert lipschitz_lower(lin, x1, x2) <= upper * (1 + 1e-12)
    # Along the top right-singular vector the ratio is exactly ‖W‖₂.
    v = torch.linalg.svd(w).Vh[0]
    assert lipschitz_lower(lin, x1[:1], x1[:1] + 0.7 * v).item() == pytest.approx(spectral.item(), rel=1e-10)


def test_lipschitz_lower_skips_equal_pairs():
    x = torch.randn(3, 4, generator=gen(10), dtype=F64)
    x2 = x.clone()
    x2[1] += 1.0
    assert lipschitz_lower(lambda t: 2 * t, x, x2).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="x1 == x2"):
        lipschitz_lower(lambda t: t, x, x.clone())


CONVS = [
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=2, kernel_size=3, padding=2, dilation=2, groups=2),
    dict(in_channels=2, out_channels=4, kernel_size=(2, 3), stride=(1, 2), padding="valid"),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding="same", padding_mode="zeros"),
]


def conv_dense_norm(layer: nn.Conv2d, in_shape) -> torch.Tensor:
    op = lambda x: layer._conv_forward(x, layer.weight, None)  # noqa: E731
    return torch.linalg.svdvals(dense_matrix(op, in_shape))[0]


@pytest.mark.parametrize("size", [7, 8])  # 8 with stride 2 needs output_padding = 1 in the adjoint
@pytest.mark.parametrize("conv", CONVS)
def test_conv_operator_norms_against_dense_matrix(conv, size, one_thread):
    torch.manual_seed(size)
    layer = nn.Conv2d(**conv, dtype=F64)
    shape = torch.Size((1, conv["in_channels"], size, size))
    expected = conv_dense_norm(layer, shape[1:]).item()
    power = _conv_operator_norm(layer, shape, iters=500).item()
    assert power <= expected * (1 + 1e-10)  # power iteration approaches from below
    assert power == pytest.approx(expected, rel=1e-8)
    # The default 50 steps, even where the top singular values are close (conv2, size 8).
    assert _conv_operator_norm(layer, shape, iters=50).item() == pytest.approx(expected, rel=1e-6)
    assert _conv_circulant_bound(layer, shape).item() >= expected * (1 - 1e-10)


def test_circulant_bound_is_exact_for_pointwise_conv():
    layer = nn.Conv2d(3, 5, 1, dtype=F64)  # a 1×1 conv applies W at every pixel: norm ‖W‖₂
    w_norm = torch.linalg.svdvals(layer.weight.detach()[:, :, 0, 0])[0].item()
    assert _conv_circulant_bound(layer, torch.Size((1, 3, 4, 4))).item() == pytest.approx(w_norm, rel=1e-12)
    assert conv_dense_norm(layer, (3, 4, 4)).item() == pytest.approx(w_norm, rel=1e-12)


def test_lipschitz_upper_conv_net_matches_dense_product(one_thread):
    torch.manual_seed(1)
    c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1, dtype=F64)
    c2 = nn.Conv2d(4, 4, 3, padding=1, groups=2, dtype=F64)
    bn = nn.BatchNorm2d(4, dtype=F64)
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 4.0]))
    bn.weight.data.copy_(torch.tensor([1.0, -3.0, 0.5, 2.0]))
    lin = nn.Linear(4 * 4 * 4, 3, dtype=F64)
    net = nn.Sequential(c1, nn.ReLU(), c2, bn, nn.Flatten(), lin).eval()
    bn_scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().max()
    expected = conv_dense_norm(c1, (2, 7, 7)) * conv_dense_norm(c2, (4, 4, 4)) * bn_scale * torch.linalg.svdvals(lin.weight.detach())[0]
    upper = lipschitz_upper(net, input_shape=(2, 7, 7), iters=500)
    assert upper.item() == pytest.approx(expected.item(), rel=1e-8)
    certified = lipschitz_upper(net, input_shape=(2, 7, 7), certified=True)
    assert certified >= expected * (1 - 1e-10)
    x1, x2 = torch.rand(2, 64, 2, 7, 7, generator=gen(11), dtype=F64)
    assert lipschitz_lower(net, x1, x2) <= upper


def test_lipschitz_upper_pooling():
    # AdaptiveAvgPool2d(1) on H×W is the all-(1/HW) row: norm 1/√(HW), which the Schur bound attains.
    pool_net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert lipschitz_upper(pool_net, input_shape=(3, 4, 4)).item() == pytest.approx(0.25)
    # Overlapping average pooling: the bound is ≥ the true norm of its dense matrix.
    avg = nn.AvgPool2d(3, stride=1, padding=1)
    true = torch.linalg.svdvals(dense_matrix(avg, (1, 5, 5)))[0]
    assert lipschitz_upper(nn.Sequential(avg), input_shape=(1, 5, 5)).item() >= true.item() - 1e-12
    # Non-overlapping max pooling is 1-Lipschitz; 3×3 windows with stride 1 overlap ≤ 9 times.
    assert lipschitz_upper(nn.Sequential(nn.MaxPool2d(2)), input_shape=(1, 4, 4)).item() == pytest.approx(1.0)
    assert lipschitz_upper(nn.Sequential(nn.MaxPool2d(3, stride=1)), input_shape=(1, 5, 5)).item() == pytest.approx(3.0)


def test_lipschitz_upper_refuses_what_it_cannot_bound():
    conv_net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU())
    with pytest.raises(ValueError, match="input_shape"):
        lipschitz_upper(conv_net)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.lin(x)

    with pytest.raises(TypeError, match="Residual"):
        lipschitz_upper(nn.Sequential(nn.Linear(3, 3), Residual()))
    with pytest.raises(TypeError, match="SiLU"):
        lipschitz_upper(nn.Sequential(nn.Linear(3, 3), nn.SiLU()))
    with pytest.raises(ValueError, match="eval"):
        lipschitz_upper(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train())


def test_lipschitz_upper_of_a_declared_residual_block_closed_form_and_a_resnet():
    class Residual(nn.Module):  # x + diag(a) x: Lipschitz constant exactly 1 + max a (a ≥ 0)
        def __init__(self, a: torch.Tensor) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3, bias=False).double()
            with torch.no_grad():
                self.lin.weight.copy_(torch.diag(a))

        def forward(self, x):
            return x + self.lin(x)

        def residual_parts(self):
            return nn.Sequential(self.lin), nn.Sequential(), nn.Identity()

    block = Residual(torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64))
    assert lipschitz_upper(nn.Sequential(block, block)).item() == pytest.approx(9.0, rel=1e-12)  # (1 + 2)², attained on e₂

    from clbounds.experiments.models.encoders import BasicBlock, resnet18_backbone

    torch.manual_seed(0)
    for blk in (BasicBlock(4, 8, 2), BasicBlock(8, 8, 1)):  # a conv shortcut and an identity one
        blk.eval()
        for m in blk.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so BN's factor matters
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
        x = torch.randn(5, blk.conv1.in_channels, 8, 8)
        branch, shortcut, post = blk.residual_parts()
        with torch.no_grad():  # the declared decomposition is the block's forward
            assert torch.allclose(blk(x), post(branch(x) + shortcut(x)), atol=1e-6)
    net, _ = resnet18_backbone((3, 16, 16), 0.125)
    net.eval()
    upper = lipschitz_upper(net, input_shape=(3, 16, 16), certified=True).item()
    x = torch.randn(64, 3, 16, 16, dtype=torch.float32)
    y = x + 1e-3 * torch.randn_like(x)
    with torch.no_grad():  # an independent lower side: finite differences never exceed the certified bound
        lower = ((net(x) - net(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)).max().item()
    assert 0 < lower <= upper and math.isfinite(upper)


# ─────────────────────────────── degenerate input ───────────────────────────────


def test_empty_class_names_it():
    z = torch.randn(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="class 1 "):
        class_centers(z, torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="class 3"):
        intra_class_spread(z, torch.tensor([0, 1, 2, 2]), num_classes=4)
    with pytest.raises(ValueError, match="class 1 "):
        sigma_delta(torch.zeros(4, 4, dtype=F64), torch.tensor([0, 0, 2, 2]), delta=1.0)


def test_single_class_separation_raises():
    z = torch.randn(5, 3, dtype=F64)
    with pytest.raises(ValueError, match="at least 2 classes"):
        center_separation(class_centers(z, torch.zeros(5, dtype=torch.int64)))


def test_all_equal_embeddings_are_finite():
    z = torch.ones(6, 4, dtype=F64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    assert uniformity(z).item() == pytest.approx(0.0, abs=1e-12)
    assert alignment(z, z).item() == 0.0
    assert intra_class_spread(z, y).item() == 0.0
    sep = center_separation(class_centers(z, y))
    assert all(torch.isfinite(v) for v in sep.values())
    assert sep["min_distance"].item() == 0.0
    assert misalignment_rate(torch.stack([z, z]), eps=0.0).item() == 0.0
    assert nearest_center_error(z, y, class_centers(z, y)).item() == pytest.approx(0.5)  # ties → class 0
    # Zero-norm centres: Δ_μ = 1, still finite.
    assert center_separation(torch.zeros(3, 2, dtype=F64))["delta_mu"].item() == 1.0
    assert torch.isfinite(uniformity(torch.zeros(3, 2, dtype=F64)))


def test_bad_arguments_raise():
    z = torch.randn(4, 2, dtype=F64)
    with pytest.raises(ValueError):
        uniformity(z[:1])
    with pytest.raises(ValueError):
        misalignment_rate(z[None], eps=0.1)  # one view only
    with pytest.raises(ValueError):
        class_centers(z, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        class_centers(z, torch.tensor([0, 1, 5, 1]), num_classes=3)


# ─────────────────────────────── scale ───────────────────────────────


def test_uniformity_and_nearest_center_at_n_20000():
    n, d, k = 10_000, 32, 10
    g = gen(12)
    # Two antipodal clusters of n identical points: C(n,2) pairs at 0 in each, n² pairs at 2.
    u = torch.nn.functional.normalize(torch.randn(1, d, generator=g), dim=1)
    z = torch.cat([u.expand(n, d), -u.expand(n, d)])
    t = 2.0
    expected = math.log((n * (n - 1) + n * n * math.exp(-4 * t)) / (2 * n * (2 * n - 1) / 2))
    assert uniformity(z, t=t).item() == pytest.approx(expected, rel=1e-5)

    # Points near simplex vertices; 1000 of them carry the next class's label.
    centers = simplex(k, d).float()
    y_true = torch.randint(0, k, (2 * n,), generator=g)
    zz = centers[y_true] + 0.05 * torch.randn(2 * n, d, generator=g)
    y = y_true.clone()
    y[:1000] = (y[:1000] + 1) % k
    assert torch.equal(nearest_center_predict(zz, centers), y_true)
    assert nearest_center_error(zz, y, centers).item() == pytest.approx(1000 / (2 * n))


def test_misalignment_rate_recovers_a_known_r_eps_from_below_as_views_grow():
    """Views of input i lie on the unit circle at angles θ_i + U(−a_i, a_i), a_i ~ U(0, 1): the sup
    distance over its views is the chord 2 sin(a_i), so R_ε = P[a > arcsin(ε/2)] = 1 − arcsin(ε/2).
    With M views the estimate is a lower one that rises to R_ε."""
    from clbounds.theory.geometry import misalignment_rate

    g = torch.Generator().manual_seed(0)
    n, m = 2000, 128
    theta, a = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g, dtype=torch.float64)
    angles = theta[None] + a[None] * (2 * torch.rand(m, n, generator=g, dtype=torch.float64) - 1)
    views = torch.stack([angles.cos(), angles.sin()], dim=-1)  # [M, N, 2]
    for eps in (0.5, 1.0, 1.5):
        truth = 1 - math.asin(eps / 2)
        ladder = [float(misalignment_rate(views[:k], eps)) for k in (2, 4, 8, 16, 32, 128)]
        assert all(b >= a_ for a_, b in zip(ladder, ladder[1:]))  # nested views: never falls
        assert all(v <= truth + 3 * math.sqrt(truth * (1 - truth) / n) for v in ladder)  # a lower estimate
        assert abs(ladder[-1] - truth) < 0.04, (eps, ladder, truth)
        assert ladder[0] < truth - 0.1  # two views are far from the sup: an unsettled R_eps is too low
