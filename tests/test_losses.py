"""Float64 tests of theory.losses against closed forms and plain-loop brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import hadamard

from clbounds.theory.losses import (
    barlow_twins,
    cacr,
    cross_correlation,
    huang_barlow_loss,
    huang_barlow_split,
    huang_infonce_split,
    info_nce,
)

f64 = torch.float64


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


# ---------------------------------------------------------------- plain-loop references

def unit_rows(z: torch.Tensor) -> list[list[float]]:
    rows = z.tolist()
    return [[a / math.sqrt(sum(c * c for c in r)) for a in r] for r in rows]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def sqdist(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def brute_info_nce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    u = unit_rows(z1) + unit_rows(z2)
    n, b = len(u), len(u) // 2
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = sum(math.exp(dot(u[i], u[k]) / tau) for k in range(n) if k != i)
        total += math.log(denom) - dot(u[i], u[pos]) / tau
    return total / n


def brute_one_way_info_nce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """−mean_i log( e^{f1_i·f2_i} / (e^{f1_i·f2_i} + Σ_{j≠i} e^{f1_i·f2_j}) ), f = z/‖z‖/√τ."""
    a, p = unit_rows(z1), unit_rows(z2)
    total = 0.0
    for i in range(len(a)):
        positive = math.exp(dot(a[i], p[i]) / tau)
        negatives = sum(math.exp(dot(a[i], p[j]) / tau) for j in range(len(p)) if j != i)
        total += -math.log(positive / (positive + negatives))
    return total / len(a)


def brute_cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> list[list[float]]:
    def standardise(z: torch.Tensor) -> list[list[float]]:
        rows = z.tolist()
        b, d = len(rows), len(rows[0])
        out = [[0.0] * d for _ in range(b)]
        for c in range(d):
            mean = sum(rows[r][c] for r in range(b)) / b
            var = sum((rows[r][c] - mean) ** 2 for r in range(b)) / b
            for r in range(b):
                out[r][c] = (rows[r][c] - mean) / math.sqrt(var + eps)
        return out

    a, c2 = standardise(z1), standardise(z2)
    b, d = len(a), len(a[0])
    return [[sum(a[r][i] * c2[r][j] for r in range(b)) / b for j in range(d)] for i in range(d)]


def brute_barlow_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[float, float]:
    c = brute_cross_correlation(z1, z2)
    d = len(c)
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on, off


def brute_cacr(views: torch.Tensor, tau_pos: float, tau_neg: float, uniform_pos=False, uniform_neg=False):
    """Loop transcription of the official our_loss1 + our_loss2 (α = β = 1)."""
    z = [unit_rows(views[v]) for v in range(views.shape[0])]
    v_count, b = len(z), len(z[0])
    attraction = 0.0
    for q in range(v_count):
        per_query = 0.0
        for i in range(b):
            costs = [sqdist(z[q][i], z[k][i]) for k in range(v_count) if k != q]
            if uniform_pos:
                weights = [1 / len(costs)] * len(costs)
            else:
                e = [math.exp(tau_pos * c) for c in costs]
                weights = [x / sum(e) for x in e]
            per_query += sum(w * c for w, c in zip(weights, costs))
        attraction += per_query / b
    attraction /= v_count

    repulsion, pairs = 0.0, 0
    for x in range(v_count):
        for y in range(x + 1, v_count):
            per_pair = 0.0
            for i in range(b):
                costs = [-sqdist(z[x][i], z[y][j]) for j in range(b) if j != i]
                if uniform_neg:
                    weights = [1 / len(costs)] * len(costs)
                else:
                    e = [math.exp(tau_neg * c) for c in costs]
                    weights = [w / sum(e) for w in e]
                per_pair += sum(w * c for w, c in zip(weights, costs))
            repulsion += per_pair / b
            pairs += 1
    repulsion /= pairs
    return attraction, repulsion


# ---------------------------------------------------------------- info_nce

@settings(max_examples=25, deadline=None)
@given(b=st.integers(2, 6), d=st.integers(1, 5), tau=st.floats(0.05, 5.0), seed=st.integers(0, 10_000))
def test_info_nce_matches_brute_force(b, d, tau, seed):
    z1, z2 = randn(b, d, seed=seed), randn(b, d, seed=seed + 1)
    assert info_nce(z1, z2, tau).item() == pytest.approx(brute_info_nce(z1, z2, tau), abs=1e-12, rel=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("b", [2, 5, 16])
def test_info_nce_collapsed_is_log_2b_minus_1(b, tau):
    z = randn(1, 7).expand(b, 7)
    assert info_nce(z, 2.5 * z, tau).item() == pytest.approx(math.log(2 * b - 1), abs=1e-12)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("b", [2, 4, 9])
def test_info_nce_orthogonal_identical_views(b, tau):
    z = torch.eye(b, dtype=f64)
    expected = math.log(math.exp(1 / tau) + 2 * b - 2) - 1 / tau
    assert info_nce(z, z, tau).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("b", [2, 4, 9])
def test_info_nce_second_views_orthogonal_to_everything(b, tau):
    # z1 collapsed onto e_0, z2_i = e_{1+i}: z2_i ⟂ every other embedding. An anchor in z1
    # sees B−1 collapsed negatives at similarity 1/τ and B orthogonal rows (its positive
    # among them) at 0; an anchor in z2 sees 2B−1 rows at 0.
    z1 = torch.zeros(b, b + 1, dtype=f64)
    z1[:, 0] = 1.0
    z2 = torch.eye(b + 1, dtype=f64)[1:]
    expected = 0.5 * (math.log((b - 1) * math.exp(1 / tau) + b) + math.log(2 * b - 1))
    assert info_nce(z1, z2, tau).item() == pytest.approx(expected, abs=1e-12)


def test_info_nce_gradient_flows():
    z1, z2 = randn(6, 4, seed=1).requires_grad_(), randn(6, 4, seed=2).requires_grad_()
    info_nce(z1, z2, 0.5).backward()
    for g in (z1.grad, z2.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, 0.3), (randn(4, 3, seed=3).requires_grad_(), randn(4, 3, seed=4).requires_grad_()))


def test_info_nce_invariant_to_positive_row_rescaling():
    z1, z2 = randn(7, 5, seed=5), randn(7, 5, seed=6)
    s1 = torch.rand(7, 1, dtype=f64, generator=torch.Generator().manual_seed(0)) * 10 + 0.01
    s2 = torch.rand(7, 1, dtype=f64, generator=torch.Generator().manual_seed(1)) * 10 + 0.01
    assert torch.allclose(info_nce(z1 * s1, z2 * s2, 0.4), info_nce(z1, z2, 0.4), atol=1e-13, rtol=0)


def test_info_nce_zero_rows_are_finite():
    z = torch.zeros(4, 3, dtype=f64, requires_grad=True)
    loss = info_nce(z, z, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(7), abs=1e-12)  # all similarities 0
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    "z1, z2, tau",
    [
        (torch.ones(1, 3, dtype=f64), torch.ones(1, 3, dtype=f64), 0.5),  # B < 2
        (torch.ones(4, 3, dtype=f64), torch.ones(4, 2, dtype=f64), 0.5),  # shape mismatch
        (torch.ones(4, 3, 2, dtype=f64), torch.ones(4, 3, 2, dtype=f64), 0.5),  # not [B, D]
        (torch.ones(4, 3, dtype=f64), torch.ones(4, 3, dtype=f64), 0.0),
        (torch.ones(4, 3, dtype=f64), torch.ones(4, 3, dtype=f64), -1.0),
        (torch.ones(4, 3, dtype=f64), torch.ones(4, 3, dtype=f64), float("nan")),
    ],
)
def test_info_nce_rejects_bad_input(z1, z2, tau):
    with pytest.raises(ValueError):
        info_nce(z1, z2, tau)


# ---------------------------------------------------------------- barlow_twins

@pytest.mark.parametrize("lambd", [0.0, 5e-3, 0.7])
@pytest.mark.parametrize("b, d, seed", [(3, 2, 0), (6, 4, 1), (10, 3, 2)])
def test_barlow_twins_matches_brute_force(b, d, seed, lambd):
    z1, z2 = randn(b, d, seed=seed), randn(b, d, seed=seed + 100)
    assert torch.allclose(cross_correlation(z1, z2), torch.tensor(brute_cross_correlation(z1, z2), dtype=f64), atol=1e-12, rtol=0)
    on, off = brute_barlow_terms(z1, z2)
    assert barlow_twins(z1, z2, lambd).item() == pytest.approx(on + lambd * off, abs=1e-12)


def hadamard_columns(b: int, d: int) -> torch.Tensor:
    """d columns of a Sylvester Hadamard matrix other than the all-ones one: entries ±1,
    so each column has batch mean 0 and biased variance 1, and columns are orthogonal."""
    return torch.tensor(hadamard(b)[:, 1 : d + 1], dtype=f64)


def test_barlow_twins_decorrelated_identical_views_is_zero():
    eps = 1e-5
    z = hadamard_columns(8, 5)
    # F = I/(1 + eps) exactly, so the loss is d·(eps/(1+eps))² ≈ 5e-10 for any λ.
    assert torch.allclose(cross_correlation(z, z), torch.eye(5, dtype=f64) / (1 + eps), atol=1e-14, rtol=0)
    for lambd in (0.0, 5e-3, 1.0):
        assert barlow_twins(z, z, lambd).item() == pytest.approx(5 * (eps / (1 + eps)) ** 2, abs=1e-15)
        assert barlow_twins(z, z, lambd).item() < 1e-8


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.2, math.pi / 2])
@pytest.mark.parametrize("lambd", [0.0, 5e-3, 0.5])
def test_barlow_twins_closed_form_for_rotated_views(theta, lambd):
    # z2 = z1·R with R two 2×2 rotations by θ: F = R/(1 + eps), so
    # L = 4(1 − cosθ/(1+eps))² + λ·4 sin²θ/(1+eps)².
    eps = 1e-5
    z1 = hadamard_columns(8, 4)
    c, s = math.cos(theta), math.sin(theta)
    r = torch.zeros(4, 4, dtype=f64)
    r[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=f64)
    r[2:, 2:] = torch.tensor([[c, -s], [s, c]], dtype=f64)
    z2 = z1 @ r
    assert torch.allclose(cross_correlation(z1, z2), r / (1 + eps), atol=1e-14, rtol=0)
    expected = 4 * (1 - c / (1 + eps)) ** 2 + lambd * 4 * s**2 / (1 + eps) ** 2
    assert barlow_twins(z1, z2, lambd).item() == pytest.approx(expected, abs=1e-12)


def test_barlow_twins_lambda_zero_sees_only_the_diagonal():
    z1, z2 = randn(12, 4, seed=7), randn(12, 4, seed=8)
    c = cross_correlation(z1, z2)
    assert barlow_twins(z1, z2, 0.0).item() == pytest.approx((1 - c.diagonal()).pow(2).sum().item(), abs=1e-13)
    # Rotated views (θ = 0.3) and a plain rescale (cos 0.3 on the diagonal, no off-diagonal)
    # share the diagonal of F, so λ = 0 cannot tell them apart while λ > 0 can.
    base = hadamard_columns(8, 2)
    c0, s0 = math.cos(0.3), math.sin(0.3)
    rotated = base @ torch.tensor([[c0, -s0], [s0, c0]], dtype=f64)
    shrunk = base * c0 + hadamard_columns(8, 4)[:, 2:] * s0  # same diagonal, F off-diagonal 0
    assert torch.allclose(cross_correlation(base, rotated).diagonal(), cross_correlation(base, shrunk).diagonal(), atol=1e-14)
    assert barlow_twins(base, rotated, 0.0).item() == pytest.approx(barlow_twins(base, shrunk, 0.0).item(), abs=1e-14)
    assert barlow_twins(base, rotated, 1.0).item() > barlow_twins(base, shrunk, 1.0).item() + 0.1


def test_barlow_twins_rejects_negative_lambda():
    with pytest.raises(ValueError):
        barlow_twins(randn(4, 2), randn(4, 2), -0.1)


# ---------------------------------------------------------------- cacr

@settings(max_examples=15, deadline=None)
@given(
    v=st.integers(2, 4), b=st.integers(2, 5), d=st.integers(1, 4),
    tau_pos=st.floats(0.0, 3.0), tau_neg=st.floats(0.0, 3.0), seed=st.integers(0, 10_000),
    uniform_pos=st.booleans(), uniform_neg=st.booleans(),
)
def test_cacr_matches_brute_force(v, b, d, tau_pos, tau_neg, seed, uniform_pos, uniform_neg):
    views = randn(v, b, d, seed=seed)
    loss, out = cacr(views, tau_pos, tau_neg, return_weights=True, uniform_pos=uniform_pos, uniform_neg=uniform_neg)
    attraction, repulsion = brute_cacr(views, tau_pos, tau_neg, uniform_pos, uniform_neg)
    assert out["attraction"].item() == pytest.approx(attraction, abs=1e-12)
    assert out["repulsion"].item() == pytest.approx(repulsion, abs=1e-12)
    assert loss.item() == pytest.approx(attraction + repulsion, abs=1e-12)
    assert cacr(views, tau_pos, tau_neg, uniform_pos=uniform_pos, uniform_neg=uniform_neg).item() == loss.item()


def test_cacr_weight_shapes_and_normalisation():
    v, b = 4, 6
    _, out = cacr(randn(v, b, 3, seed=11), 1.0, 0.9, return_weights=True)
    w_pos, w_neg = out["w_pos"], out["w_neg"]
    assert w_pos.shape == (v, b, v - 1) and w_neg.shape == (v * (v - 1) // 2, b, b)
    assert out["pairs"].tolist() == [[x, y] for x in range(v) for y in range(x + 1, v)]
    assert torch.allclose(w_pos.sum(-1), torch.ones(v, b, dtype=f64), atol=1e-14)
    assert torch.allclose(w_neg.sum(-1), torch.ones(len(w_neg), b, dtype=f64), atol=1e-14)
    assert (w_neg.diagonal(dim1=1, dim2=2) == 0).all()  # j ≠ i only
    off_diagonal = ~torch.eye(b, dtype=torch.bool)
    assert (w_pos > 0).all() and (w_neg[:, off_diagonal] > 0).all()


def test_cacr_w_pos_is_softmax_of_distances_in_view_order():
    views = randn(3, 4, 5, seed=12)
    z = F.normalize(views, dim=-1)
    _, out = cacr(views, tau_pos=0.7, return_weights=True)
    for q in range(3):
        others = [k for k in range(3) if k != q]
        d = torch.stack([(z[q] - z[k]).pow(2).sum(-1) for k in others], dim=-1)
        assert torch.allclose(out["w_pos"][q], torch.softmax(0.7 * d, dim=-1), atol=1e-14)


def test_cacr_more_weight_on_farther_positive_and_closer_negative():
    # Image 0: query e0; positive view 1 close to it, view 2 far from it.
    # Anchor 0 in view 0; in view 1 the negative of image 1 is near e0, that of image 2 far.
    e = torch.eye(3, dtype=f64)
    views = torch.stack([
        torch.stack([e[0], e[1], e[2]]),                                  # view 0 (query)
        torch.stack([e[0] + 0.1 * e[1], e[0] + 0.2 * e[2], -e[0]]),       # view 1
        torch.stack([-e[0] + 0.1 * e[2], e[1], e[2]]),                     # view 2
    ])
    _, out = cacr(views, tau_pos=1.0, tau_neg=0.9, return_weights=True)
    # w_pos[0, 0] ranks views (1, 2) for query view 0 of image 0: view 2 is farther.
    assert out["w_pos"][0, 0, 1] > out["w_pos"][0, 0, 0]
    # Pair (0, 1) is w_neg[0]; for anchor 0 the negative j = 1 (near e0) beats j = 2 (at −e0).
    assert out["pairs"][0].tolist() == [0, 1]
    assert out["w_neg"][0, 0, 1] > out["w_neg"][0, 0, 2]
    # A larger τ⁻ sharpens the preference for the hard negative.
    _, sharp = cacr(views, tau_pos=1.0, tau_neg=3.0, return_weights=True)
    assert sharp["w_neg"][0, 0, 1] > out["w_neg"][0, 0, 1]


def test_cacr_uniform_ablation_is_plain_mean():
    v, b = 3, 5
    views = randn(v, b, 4, seed=13)
    z = F.normalize(views, dim=-1)
    pos = [(z[q, i] - z[k, i]).pow(2).sum() for q in range(v) for k in range(v) if k != q for i in range(b)]
    neg = [-(z[x, i] - z[y, j]).pow(2).sum() for x in range(v) for y in range(x + 1, v) for i in range(b) for j in range(b) if j != i]
    _, out = cacr(views, 5.0, 5.0, return_weights=True, uniform_pos=True, uniform_neg=True)
    assert out["attraction"].item() == pytest.approx(torch.stack(pos).mean().item(), abs=1e-13)
    assert out["repulsion"].item() == pytest.approx(torch.stack(neg).mean().item(), abs=1e-13)
    # τ = 0 makes the softmax uniform, i.e. the same ablation.
    assert cacr(views, 0.0, 0.0).item() == pytest.approx(cacr(views, 5.0, 5.0, uniform_pos=True, uniform_neg=True).item(), abs=1e-14)
    # One flag at a time only changes its own half.
    _, only_pos = cacr(views, 5.0, 5.0, return_weights=True, uniform_pos=True)
    _, full = cacr(views, 5.0, 5.0, return_weights=True)
    assert only_pos["repulsion"].item() == full["repulsion"].item()
    assert only_pos["attraction"].item() != pytest.approx(full["attraction"].item(), abs=1e-6)


def test_cacr_collapsed_positives_give_zero_attraction():
    base = randn(1, 6, 4, seed=14)
    scales = torch.tensor([1.0, 3.0, 0.2, 7.0], dtype=f64)[:, None, None]
    views = base * scales  # every view of image i points the same way
    loss, out = cacr(views, return_weights=True)
    assert out["attraction"].item() == pytest.approx(0.0, abs=1e-14)
    assert torch.allclose(out["w_pos"], torch.full_like(out["w_pos"], 1 / 3), atol=1e-14)
    assert loss.item() == pytest.approx(out["repulsion"].item(), abs=1e-14)
    assert -4 <= out["repulsion"].item() <= 0  # −‖a − b‖² of unit vectors


def test_cacr_gradient_flows_through_the_weights():
    views = randn(3, 4, 3, seed=15).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: cacr(x, 1.0, 0.9), (views,))
    # The same loss with w⁺, w⁻ detached has a different gradient, so gradcheck above
    # (numerical vs analytic) can only pass if the weights are in the graph.
    z = F.normalize(views, dim=-1)
    _, out = cacr(views, 1.0, 0.9, return_weights=True)
    w_pos, w_neg = out["w_pos"].detach(), out["w_neg"].detach()
    att = torch.stack([
        (w_pos[q] * torch.stack([(z[q] - z[k]).pow(2).sum(-1) for k in range(3) if k != q], -1)).sum(-1).mean()
        for q in range(3)
    ]).mean()
    rep = torch.stack([
        (w_neg[p] * -torch.cdist(z[x], z[y]).pow(2)).sum(-1).mean() for p, (x, y) in enumerate(out["pairs"].tolist())
    ]).mean()
    (g_detached,) = torch.autograd.grad(att + rep, views)
    (g_full,) = torch.autograd.grad(cacr(views, 1.0, 0.9), views)
    assert (att + rep).item() == pytest.approx(cacr(views, 1.0, 0.9).item(), abs=1e-13)
    assert (g_full - g_detached).abs().max() > 1e-3
    assert torch.isfinite(g_full).all()


def test_cacr_degenerate_inputs_are_finite():
    zeros = torch.zeros(3, 4, 2, dtype=f64, requires_grad=True)
    loss = cacr(zeros)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zeros.grad).all()
    same = torch.ones(2, 2, 3, dtype=f64)  # everything collapsed: L_CA = L_CR = 0
    assert cacr(same).item() == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize(
    "views, kwargs",
    [
        (torch.ones(4, 3, dtype=f64), {}),  # not [V, B, D]
        (torch.ones(1, 4, 3, dtype=f64), {}),  # a single view
        (torch.ones(3, 1, 3, dtype=f64), {}),  # B < 2
        (torch.ones(3, 4, 3, dtype=f64), {"tau_pos": -1.0}),
        (torch.ones(3, 4, 3, dtype=f64), {"tau_neg": float("nan")}),
    ],
)
def test_cacr_rejects_bad_input(views, kwargs):
    with pytest.raises(ValueError):
        cacr(views, **kwargs)


# ---------------------------------------------------------------- Huang et al. splits

@settings(max_examples=25, deadline=None)
@given(b=st.integers(2, 6), d=st.integers(1, 5), tau=st.floats(0.05, 5.0), seed=st.integers(0, 10_000))
def test_huang_infonce_split_sums_to_one_way_infonce(b, d, tau, seed):
    z1, z2 = randn(b, d, seed=seed), randn(b, d, seed=seed + 1)
    s = huang_infonce_split(z1, z2, temperature=tau)
    reference = brute_one_way_info_nce(z1, z2, tau)
    assert (s["L1"] + s["L2"]).item() == pytest.approx(reference, abs=1e-12, rel=1e-12)
    assert s["total"].item() == pytest.approx(reference, abs=1e-12, rel=1e-12)


@pytest.mark.parametrize("tau", [0.2, 1.0, 2.0])
def test_huang_infonce_l1_is_half_alignment_minus_squared_norm(tau):
    z1, z2 = randn(9, 4, seed=20), randn(9, 4, seed=21)
    f1, f2 = unit_rows(z1), unit_rows(z2)
    # f = z/‖z‖/√τ: ½‖f1 − f2‖² = ‖z̄1 − z̄2‖²/(2τ) and ‖f‖² = 1/τ.
    half_alignment = sum(sqdist(a, c) for a, c in zip(f1, f2)) / len(f1) / (2 * tau)
    neg_products = -sum(dot(a, c) for a, c in zip(f1, f2)) / len(f1) / tau
    s = huang_infonce_split(z1, z2, temperature=tau)
    assert s["L1"].item() == pytest.approx(half_alignment - 1 / tau, abs=1e-12)
    assert s["L1"].item() == pytest.approx(neg_products, abs=1e-12)
    # L2 = E log(e^{f1ᵀf2} + Σ_{j≠i} e^{f1ᵀf2_j}) by loops.
    l2 = sum(math.log(sum(math.exp(dot(f1[i], f2[j]) / tau) for j in range(9))) for i in range(9)) / 9
    assert s["L2"].item() == pytest.approx(l2, abs=1e-12)


def test_huang_infonce_closed_forms():
    # Orthogonal one-hot z1 = z2: L1 = −1/τ, L2 = log(e^{1/τ} + B − 1).
    b, tau = 5, 0.5
    z = torch.eye(b, dtype=f64)
    s = huang_infonce_split(z, z, temperature=tau)
    assert s["L1"].item() == pytest.approx(-1 / tau, abs=1e-14)
    assert s["L2"].item() == pytest.approx(math.log(math.exp(1 / tau) + b - 1), abs=1e-12)
    # Collapsed: total = log B; default τ = 1 is the paper's unit-norm form, L1 = −1.
    c = huang_infonce_split(randn(1, 3).expand(b, 3), randn(1, 3).expand(b, 3))
    assert c["L1"].item() == pytest.approx(-1.0, abs=1e-14)
    assert c["total"].item() == pytest.approx(math.log(b), abs=1e-12)


def test_huang_infonce_split_rejects_bad_input():
    with pytest.raises(ValueError):
        huang_infonce_split(torch.ones(1, 2, dtype=f64), torch.ones(1, 2, dtype=f64))
    with pytest.raises(ValueError):
        huang_infonce_split(torch.ones(3, 2, dtype=f64), torch.ones(3, 2, dtype=f64), temperature=0.0)


@pytest.mark.parametrize("lambd", [0.0, 5e-3, 0.3, 1.0])
def test_huang_barlow_split_identities(lambd):
    z1, z2 = randn(10, 4, seed=30), randn(10, 4, seed=31)
    s = huang_barlow_split(z1, z2)
    on, off = brute_barlow_terms(z1, z2)
    assert s["L1"].item() == pytest.approx(on, abs=1e-12)
    assert s["L2"].item() == pytest.approx(off, abs=1e-12)
    assert (s["L1"] + lambd * s["L2"]).item() == pytest.approx(barlow_twins(z1, z2, lambd).item(), abs=1e-12)
    assert huang_barlow_loss(z1, z2, lambd).item() == pytest.approx((1 - lambd) * on + lambd * off, abs=1e-12)
    if lambd < 1:
        rescaled = (1 - lambd) * barlow_twins(z1, z2, lambd / (1 - lambd))
        assert huang_barlow_loss(z1, z2, lambd).item() == pytest.approx(rescaled.item(), abs=1e-12)


def test_huang_barlow_loss_rejects_lambda_outside_unit_interval():
    for lambd in (-0.1, 1.5):
        with pytest.raises(ValueError):
            huang_barlow_loss(randn(4, 2), randn(4, 2), lambd)
