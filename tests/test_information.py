"""Tests for theory.information (CACR's mutual-information claim, PAPERS.md §4). Float64;
closed forms for Gaussians, brute-force loops for the KSG estimator."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma

from clbounds.theory import information
from clbounds.theory.information import infonce_mi_lower_bound, knn_mutual_information
from clbounds.theory.losses import info_nce

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correlated_gaussian(n: int, r: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, 2, generator=gen(seed), dtype=F64)
    return z[:, 0], r * z[:, 0] + math.sqrt(1 - r * r) * z[:, 1]


# ---------------------------------------------------------------- infonce_mi_lower_bound


@settings(max_examples=25, deadline=None)
@given(b=st.integers(2, 12), d=st.integers(1, 6), tau=st.floats(0.05, 2.0), seed=st.integers(0, 10_000))
def test_infonce_bound_is_log_n_minus_loss_and_at_most_log_n(b, d, tau, seed):
    g = gen(seed)
    zq, zk = torch.randn(b, d, generator=g, dtype=F64), torch.randn(b, d, generator=g, dtype=F64)
    bound = infonce_mi_lower_bound(zq, zk, temperature=tau)
    log_n = math.log(2 * b - 1)  # each of the 2B anchors chooses among 2B − 1 rows
    assert bound.item() == pytest.approx(log_n - info_nce(zq, zk, temperature=tau).item(), rel=1e-12, abs=1e-12)
    assert bound.item() <= log_n + 1e-12


def test_infonce_bound_closed_forms():
    b, tau = 6, 0.5
    # Collapsed embeddings: info_nce = log(2B − 1), so the bound is exactly 0.
    collapsed = torch.ones(b, 3, dtype=F64)
    assert infonce_mi_lower_bound(collapsed, collapsed, tau).item() == pytest.approx(0.0, abs=1e-12)
    # Orthonormal embeddings with z1 = z2: info_nce = log(e^{1/τ} + 2B − 2) − 1/τ.
    z = torch.eye(b, dtype=F64)
    expected = math.log(2 * b - 1) - (math.log(math.exp(1 / tau) + 2 * b - 2) - 1 / tau)
    assert infonce_mi_lower_bound(z, z, tau).item() == pytest.approx(expected, rel=1e-12)
    # Perfect, well-separated views at small τ approach the cap log N from below.
    assert infonce_mi_lower_bound(z, z, 0.01).item() == pytest.approx(math.log(2 * b - 1), abs=1e-10)


# ---------------------------------------------------------------- knn_mutual_information


def ksg_loop(x: list[list[float]], y: list[list[float]], k: int) -> float:
    """Kraskov et al. (2004) algorithm 1 with max-norms, by plain loops."""
    n = len(x)

    def cheb(a: list[float], b: list[float]) -> float:
        return max(abs(p - q) for p, q in zip(a, b))

    total = 0.0
    for i in range(n):
        joint = sorted(max(cheb(x[i], x[j]), cheb(y[i], y[j])) for j in range(n) if j != i)
        eps = joint[k - 1]
        n_x = sum(1 for j in range(n) if j != i and cheb(x[i], x[j]) < eps)
        n_y = sum(1 for j in range(n) if j != i and cheb(y[i], y[j]) < eps)
        total += digamma(n_x + 1) + digamma(n_y + 1)
    return float(digamma(k) + digamma(n) - total / n)


@pytest.mark.parametrize("k, dx, dy", [(1, 1, 1), (3, 2, 1), (4, 2, 3)])
def test_ksg_equals_brute_force_loop(k, dx, dy, monkeypatch):
    g = gen(k + 10 * dx + 100 * dy)
    x = torch.randn(15, dx, generator=g, dtype=F64)
    y = x[:, :1] + 0.5 * torch.randn(15, dy, generator=g, dtype=F64)
    expected = ksg_loop(x.tolist(), y.tolist(), k)
    assert knn_mutual_information(x, y, k=k).item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    monkeypatch.setattr(information, "_BLOCK_ENTRIES", 20)  # several row blocks
    assert knn_mutual_information(x, y, k=k).item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_ksg_matches_scikit_learn_implementation():
    # scikit-learn's private KSG (used by mutual_info_regression) is an independent code path.
    mi_cc = pytest.importorskip("sklearn.feature_selection._mutual_info")._compute_mi_cc
    x, y = correlated_gaussian(300, 0.7, seed=1)
    expected = mi_cc(x.numpy(), y.numpy(), 3)
    assert knn_mutual_information(x, y, k=3).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("r", [0.6, 0.9])
def test_ksg_bivariate_gaussian_closed_form(r):
    x, y = correlated_gaussian(2000, r, seed=2)
    truth = -0.5 * math.log(1 - r * r)
    # Over 10 seeds at n = 2000, k = 3: std ~0.02, bias +0.008 (r = 0.6) and +0.023
    # (r = 0.9), largest |error| 0.032 and 0.056. The tolerance 0.07 covers all of them.
    assert knn_mutual_information(x, y, k=3).item() == pytest.approx(truth, abs=0.07)


def test_ksg_independent_is_near_zero():
    g = gen(3)
    x, y = torch.randn(2000, 2, generator=g, dtype=F64), torch.randn(2000, 1, generator=g, dtype=F64)
    # Unbiased for independence; std ~0.015 at n = 2000, so 0.05 is > 3 std.
    assert abs(knn_mutual_information(x, y, k=3).item()) < 0.05


def test_ksg_is_invariant_to_common_rescaling_shifts_and_permutations():
    # The max-norm boxes scale along with one common scale c > 0 for both spaces (the joint
    # norm mixes the two, so separate scales would change ε_i); shifts, sign flips and
    # the order of the samples leave every distance unchanged.
    x, y = correlated_gaussian(500, 0.5, seed=4)
    base = knn_mutual_information(x, y).item()
    assert knn_mutual_information(3 * x + 1, -3 * y - 2).item() == pytest.approx(base, rel=1e-12)
    perm = torch.randperm(500, generator=gen(5))
    assert knn_mutual_information(x[perm], y[perm]).item() == pytest.approx(base, rel=1e-12)


def test_ksg_degenerate_inputs():
    x = torch.zeros(10, dtype=F64)
    value = knn_mutual_information(x, x, k=2)  # all ties: finite, by the ψ(n + 1) counts
    assert torch.isfinite(value)
    with pytest.raises(ValueError):
        knn_mutual_information(torch.randn(5, dtype=F64), torch.randn(6, dtype=F64))
    with pytest.raises(ValueError):
        knn_mutual_information(torch.randn(5, dtype=F64), torch.randn(5, dtype=F64), k=5)
