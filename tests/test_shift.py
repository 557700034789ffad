"""Tests for theory.shift: ideal-vs-practical positive-pair shift terms (PAPERS.md §2) and the
discriminator JS proxy (§1). All in float64; closed forms plus brute-force loops."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from clbounds.theory import shift
from clbounds.theory.losses import info_nce
from clbounds.theory.shift import (
    infonce_range,
    js_divergence,
    mmd2,
    positive_cosine_gap,
    positive_pair_loss_gap,
    sliced_wasserstein,
)

F64 = torch.float64
LOG2 = math.log(2.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


# ---------------------------------------------------------------- positive_pair_loss_gap


def test_loss_gap_is_zero_when_ideal_equals_practical():
    z, z_pos = randn(16, 8, seed=1), randn(16, 8, seed=2)
    assert positive_pair_loss_gap((z, z_pos), (z, z_pos), temperature=0.3).item() == 0.0


def test_loss_gap_is_difference_of_infonce_and_positive_for_easier_practical_pairs():
    z, other = randn(32, 8, seed=3), randn(32, 8, seed=4)
    practical = (z, z + 0.05 * other)  # augmentation-like: nearly identical
    ideal = (z, other)  # unrelated partner
    gap = positive_pair_loss_gap(ideal, practical, temperature=0.5)
    expected = info_nce(*ideal, temperature=0.5) - info_nce(*practical, temperature=0.5)
    assert gap.item() == expected.item()
    assert gap.item() > 0


def test_loss_gap_rejects_mismatched_pairs():
    with pytest.raises(ValueError):
        positive_pair_loss_gap((randn(4, 3), randn(5, 3)), (randn(4, 3), randn(4, 3)))


# ---------------------------------------------------------------- infonce_range


def per_anchor_infonce_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> list[float]:
    """ℓ_i of NT-Xent by plain loops over anchors and candidates."""
    u = F.normalize(torch.cat([z1, z2]), dim=1).tolist()
    b = z1.shape[0]
    losses = []
    for i in range(2 * b):
        pos = (i + b) % (2 * b)
        sims = {k: sum(a * c for a, c in zip(u[i], u[k])) / tau for k in range(2 * b) if k != i}
        losses.append(math.log(sum(math.exp(s) for s in sims.values())) - sims[pos])
    return losses


def test_infonce_range_closed_form():
    lo, hi = infonce_range(num_negatives=6, temperature=0.25)
    assert lo == pytest.approx(math.log(1 + 6 * math.exp(-8)), rel=1e-14)
    assert hi == pytest.approx(math.log(1 + 6 * math.exp(8)), rel=1e-14)
    assert infonce_range(0, 0.5) == (0.0, 0.0)


def test_infonce_range_is_finite_for_tiny_temperature():
    lo, hi = infonce_range(num_negatives=510, temperature=1e-3)  # e^{2000} would overflow
    assert lo == pytest.approx(math.log1p(510 * math.exp(-2000)), abs=1e-300)
    assert hi == pytest.approx(2000 + math.log(510), rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(2, 6),
    d=st.integers(1, 5),
    tau=st.floats(0.05, 2.0),
    seed=st.integers(0, 10_000),
)
def test_infonce_range_contains_every_anchor_loss(b, d, tau, seed):
    z1, z2 = randn(b, d, seed=seed), randn(b, d, seed=seed + 1)
    lo, hi = infonce_range(num_negatives=2 * b - 2, temperature=tau)
    slack = 1e-9 * max(1.0, hi)
    for loss in per_anchor_infonce_loop(z1, z2, tau):
        assert lo - slack <= loss <= hi + slack
    assert lo - slack <= info_nce(z1, z2, temperature=tau).item() <= hi + slack


def test_infonce_range_extremes():
    tau = 0.5
    e = torch.tensor([[1.0, 0.0]], dtype=F64)
    # B = 2, z1 = z2 = [e, −e]: positives at cosine 1, both negatives at −1 → the lower end exactly.
    z = torch.cat([e, -e])
    lo, hi = infonce_range(num_negatives=2, temperature=tau)
    assert info_nce(z, z, temperature=tau).item() == pytest.approx(lo, rel=1e-12)
    # Collapsed embeddings: all cosines 1 → log(1 + M), inside the range.
    b = 5
    collapsed = torch.ones(b, 3, dtype=F64)
    lo, hi = infonce_range(num_negatives=2 * b - 2, temperature=tau)
    value = info_nce(collapsed, collapsed, temperature=tau).item()
    assert value == pytest.approx(math.log(2 * b - 1), rel=1e-12)
    assert lo <= value <= hi
    # One anchor with an antipodal positive and negatives equal to it reaches the upper end.
    z1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    z2 = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=F64)
    assert per_anchor_infonce_loop(z1, z2, tau)[0] == pytest.approx(infonce_range(2, tau)[1], rel=1e-12)


def test_infonce_range_rejects_bad_arguments():
    with pytest.raises(ValueError):
        infonce_range(-1, 0.5)
    with pytest.raises(ValueError):
        infonce_range(3, 0.0)


# ---------------------------------------------------------------- mmd2


def rbf(a: list[float], b: list[float], h: float) -> float:
    return math.exp(-sum((p - q) ** 2 for p, q in zip(a, b)) / (2 * h * h))


def mmd2_loop(x: torch.Tensor, y: torch.Tensor, h: float | None) -> float:
    """Gretton et al. eq. 3 with plain double loops; median heuristic by statistics.median."""
    xs, ys = x.tolist(), y.tolist()
    if h is None:
        pooled = xs + ys
        h = statistics.median(math.dist(a, b) for a, b in itertools.combinations(pooled, 2))
    m, n = len(xs), len(ys)
    kxx = sum(rbf(xs[i], xs[j], h) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(rbf(ys[i], ys[j], h) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(rbf(a, b, h) for a in xs for b in ys) / (m * n)
    return kxx + kyy - 2 * kxy


def gaussian_mmd2(mu1: torch.Tensor, mu2: torch.Tensor, s: float, h: float) -> float:
    """MMD² between N(μ1, s²I) and N(μ2, s²I) under k = exp(−‖a−b‖²/(2h²)).

    X − X' ~ N(m, 2s²I) and E exp(−‖W‖²/(2h²)) = (h²/(h²+σ²))^{d/2} exp(−‖m‖²/(2(h²+σ²)))
    for W ~ N(m, σ²I), so E k_xx = E k_yy = c and E k_xy = c·exp(−‖Δμ‖²/(2(h²+2s²))).
    """
    d = mu1.numel()
    c = (h * h / (h * h + 2 * s * s)) ** (d / 2)
    return 2 * c * (1 - math.exp(-float((mu1 - mu2).pow(2).sum()) / (2 * (h * h + 2 * s * s))))


@pytest.mark.parametrize("mean, var, h", [(0.0, 1.0, 1.0), (1.5, 0.5, 0.7), (-0.8, 2.0, 3.0)])
def test_gaussian_kernel_expectation_matches_quadrature(mean, var, h):
    """The 1-D case of the integral behind gaussian_mmd2, checked by numerical quadrature."""
    density = stats.norm(loc=mean, scale=math.sqrt(var)).pdf
    numeric, _ = integrate.quad(lambda w: math.exp(-w * w / (2 * h * h)) * density(w), -np.inf, np.inf)
    closed = math.sqrt(h * h / (h * h + var)) * math.exp(-mean * mean / (2 * (h * h + var)))
    assert numeric == pytest.approx(closed, rel=1e-9)


def test_mmd2_matches_gaussian_closed_form():
    n, d, s, h = 3000, 2, 1.0, 1.5
    mu1, mu2 = torch.zeros(d, dtype=F64), torch.tensor([1.0, -0.5], dtype=F64)
    x = mu1 + s * randn(n, d, seed=10)
    y = mu2 + s * randn(n, d, seed=11)
    expected = gaussian_mmd2(mu1, mu2, s, h)  # 0.1448...
    # Over seeds the estimator's std at n = 3000 is about 0.008 here; 0.03 is ~4 std.
    assert mmd2(x, y, bandwidth=h).item() == pytest.approx(expected, abs=0.03)


def test_mmd2_is_near_zero_for_one_distribution():
    x, y = randn(2000, 3, seed=20), randn(2000, 3, seed=21)
    # Under P = Q the unbiased MMD² is centred at 0 with std O(1/n); over seeds
    # |MMD²| stays below 2e-4 here, so 2e-3 is generous.
    assert abs(mmd2(x, y).item()) < 2e-3
    assert abs(mmd2(x, y, bandwidth=0.5).item()) < 2e-3


@pytest.mark.parametrize("bandwidth", [None, 0.8])
def test_mmd2_equals_brute_force_loop(bandwidth, monkeypatch):
    x, y = randn(7, 3, seed=30), 0.5 + randn(5, 3, seed=31)
    expected = mmd2_loop(x, y, bandwidth)
    assert mmd2(x, y, bandwidth=bandwidth).item() == pytest.approx(expected, rel=1e-12, abs=1e-14)
    # Force several row blocks so the chunked, symmetric path is exercised.
    monkeypatch.setattr(shift, "_BLOCK_ENTRIES", 9)
    assert mmd2(x, y, bandwidth=bandwidth).item() == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_mmd2_degenerate_inputs():
    same = torch.ones(6, 2, dtype=F64)
    value = mmd2(same, same.clone())  # all distances 0: median fallback, k ≡ 1
    assert torch.isfinite(value) and value.item() == pytest.approx(0.0, abs=1e-12)
    assert mmd2(torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64), bandwidth=1.0).item() == pytest.approx(
        2 * (1 - math.exp(-0.5)), rel=1e-12
    )
    with pytest.raises(ValueError):
        mmd2(randn(1, 2), randn(5, 2))
    with pytest.raises(ValueError):
        mmd2(randn(4, 2), randn(4, 3))


# ---------------------------------------------------------------- sliced_wasserstein


def wasserstein_1d_loop(a: list[float], b: list[float], p: int) -> float:
    """W_p^p of two empirical 1-D measures on the common grid k/(mn): both quantile
    functions are constant on each cell, the x one equal to a_(k // n), the y one b_(k // m)."""
    a, b = sorted(a), sorted(b)
    m, n = len(a), len(b)
    return sum(abs(a[k // n] - b[k // m]) ** p for k in range(m * n)) / (m * n)


def sliced_loop(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor, p: int) -> float:
    total = 0.0
    for theta in directions.tolist():
        px = [sum(t * v for t, v in zip(theta, row)) for row in x.tolist()]
        py = [sum(t * v for t, v in zip(theta, row)) for row in y.tolist()]
        total += wasserstein_1d_loop(px, py, p)
    return (total / len(directions)) ** (1 / p)


@pytest.mark.parametrize("m, n, p", [(6, 6, 2), (4, 7, 2), (5, 3, 1), (6, 4, 3)])
def test_sliced_wasserstein_equals_brute_force_loop(m, n, p, monkeypatch):
    x, y = randn(m, 3, seed=40), 1.0 + 2 * randn(n, 3, seed=41)
    directions = F.normalize(randn(9, 3, seed=42), dim=1)
    expected = sliced_loop(x, y, directions, p)
    assert sliced_wasserstein(x, y, p=p, directions=directions).item() == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(shift, "_BLOCK_ENTRIES", 1)  # one projection per chunk
    assert sliced_wasserstein(x, y, p=p, directions=directions).item() == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_in_one_dimension_is_exact_w1():
    # In 1-D the directions are ±1 and W_p is sign-symmetric, so SW = W exactly; scipy is
    # an independent exact W_1 for unequal sizes.
    a, b = randn(11, seed=50), 3 * randn(7, seed=51)
    ours = sliced_wasserstein(a, b, n_projections=4, p=1, generator=gen(0)).item()
    assert ours == pytest.approx(stats.wasserstein_distance(a.numpy(), b.numpy()), rel=1e-12)


def test_sliced_wasserstein_of_a_shift_matches_closed_form():
    d = 3
    c = torch.tensor([0.6, -1.2, 2.0], dtype=F64)
    x = randn(40, d, seed=60)
    # For y = x + c every projection is a shift by θᵀc: SW_2² = E(θᵀc)² = ‖c‖²/d, and
    # SW_1 = ‖c‖ E|θ_1| = ‖c‖ Γ(d/2) / (√π Γ((d+1)/2)). With 20,000 directions the Monte
    # Carlo relative std is about 0.6 % (p = 2) and 0.4 % (p = 1); tolerance 3 %.
    sw2 = sliced_wasserstein(x, x + c, n_projections=20_000, p=2, generator=gen(1)).item()
    assert sw2**2 == pytest.approx(float(c.pow(2).sum()) / d, rel=0.03)
    sw1 = sliced_wasserstein(x, x + c, n_projections=20_000, p=1, generator=gen(2)).item()
    e_abs = math.exp(special.gammaln(d / 2) - special.gammaln((d + 1) / 2)) / math.sqrt(math.pi)
    assert sw1 == pytest.approx(float(c.norm()) * e_abs, rel=0.03)
    # With given directions the shift identity is exact.
    theta = F.normalize(randn(5, d, seed=61), dim=1)
    exact = (theta @ c).pow(2).mean().sqrt().item()
    assert sliced_wasserstein(x, x + c, directions=theta).item() == pytest.approx(exact, rel=1e-12)


def test_sliced_wasserstein_of_point_masses():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64), torch.tensor([0.0, 0.0, 1.0, 2.0], dtype=F64)
    x, y = a.expand(5, 4), b.expand(8, 4)  # unequal sizes of two point masses
    theta = F.normalize(randn(6, 4, seed=70), dim=1)
    exact = (theta @ (a - b)).pow(2).mean().sqrt().item()
    assert sliced_wasserstein(x, y, directions=theta).item() == pytest.approx(exact, rel=1e-12)
    assert sliced_wasserstein(x, x, generator=gen(0)).item() == 0.0


def test_sliced_wasserstein_is_deterministic_with_a_generator():
    x, y = randn(30, 4, seed=80), randn(20, 4, seed=81)
    first = sliced_wasserstein(x, y, n_projections=16, generator=gen(5))
    assert torch.equal(first, sliced_wasserstein(x, y, n_projections=16, generator=gen(5)))
    with pytest.raises(ValueError):
        sliced_wasserstein(x, y, p=0)


# ---------------------------------------------------------------- positive_cosine_gap


def test_positive_cosine_gap_closed_form_and_loop():
    z = torch.eye(3, dtype=F64)
    # practical positives identical (cos 1), ideal positives orthogonal (cos 0): gap = 1.
    assert positive_cosine_gap((z, z.roll(1, 0)), (z, z)).item() == pytest.approx(1.0, abs=1e-15)
    ideal, practical = (randn(9, 4, seed=90), randn(9, 4, seed=91)), (randn(9, 4, seed=92), randn(9, 4, seed=93))

    def mean_cos_loop(a: torch.Tensor, b: torch.Tensor) -> float:
        cosines = [
            sum(p * q for p, q in zip(u, v)) / (math.sqrt(sum(p * p for p in u)) * math.sqrt(sum(q * q for q in v)))
            for u, v in zip(a.tolist(), b.tolist())
        ]
        return sum(cosines) / len(cosines)

    expected = mean_cos_loop(*practical) - mean_cos_loop(*ideal)
    assert positive_cosine_gap(ideal, practical).item() == pytest.approx(expected, rel=1e-12)


def test_positive_cosine_gap_zero_norm_rows_are_finite():
    z = torch.zeros(4, 3, dtype=F64)
    assert positive_cosine_gap((z, z), (z, randn(4, 3))).item() == 0.0


# ---------------------------------------------------------------- js_divergence


def test_js_divergence_is_zero_for_identical_samples():
    x = randn(500, 4, seed=100)
    assert js_divergence(x, x.clone(), generator=gen(0)).item() == pytest.approx(0.0, abs=1e-6)
    # Two samples of one distribution: only the in-sample optimism, O(D/N).
    assert js_divergence(x, randn(500, 4, seed=101), generator=gen(0)).item() < 0.01


def test_js_divergence_is_log2_for_separated_samples():
    x = randn(400, 3, seed=110)
    y = randn(400, 3, seed=111) + torch.tensor([8.0, 0.0, 0.0], dtype=F64)
    value = js_divergence(x, y, generator=gen(0)).item()
    assert LOG2 - 0.02 < value <= LOG2


def js_gaussians(m: float) -> float:
    """JS(N(−m, 1), N(m, 1)) by quadrature: ½KL(P‖M) + ½KL(Q‖M), M = (P + Q)/2."""
    p, q = stats.norm(-m, 1).pdf, stats.norm(m, 1).pdf

    def integrand(t: float) -> float:
        a, b = p(t), q(t)
        mix = 0.5 * (a + b)
        return 0.5 * (special.xlogy(a, a / mix) + special.xlogy(b, b / mix))

    return integrate.quad(integrand, -m - 12, m + 12, limit=200)[0]


def test_js_divergence_matches_gaussian_closed_form():
    # log p/q is affine for equal-variance Gaussians, so the linear D is Bayes-optimal and
    # the proxy estimates JS itself; the sampling error at n = 20,000 per side is ~0.003.
    m, n = 0.75, 20_000
    x = -m + randn(n, seed=120)
    y = m + randn(n, seed=121)
    value = js_divergence(x, y, generator=gen(0)).item()
    assert value == pytest.approx(js_gaussians(m), abs=0.01)


def test_js_divergence_equals_independently_fitted_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = randn(300, 2, seed=130), 0.7 + randn(200, 2, seed=131)
    features = torch.cat([x, y]).numpy()
    labels = np.r_[np.ones(300), np.zeros(200)]
    # class_weight="balanced" reproduces the ½ per-class weighting of L_D.
    clf = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-12, max_iter=10_000).fit(features, labels)
    prob = clf.predict_proba(features)[:, 1]
    loss_d = 0.5 * (-np.log(prob[:300]).mean() - np.log1p(-prob[300:]).mean())
    ours = js_divergence(x, y, generator=gen(0)).item()
    assert ours == pytest.approx(LOG2 - loss_d, abs=1e-8)


def test_js_divergence_held_out_removes_in_sample_optimism():
    # Two samples of ONE distribution with D comparable to N: the in-sample fit separates
    # them and the proxy is far above the true JS = 0; scored on held-out rows it is ~0.
    x, y = randn(128, 128, seed=150), randn(128, 128, seed=151)
    assert js_divergence(x, y, generator=gen(0)).item() > 0.3
    assert js_divergence(x, y, generator=gen(0), holdout=0.5, weight_decay=0.1).item() < 0.02


def test_js_divergence_held_out_still_detects_a_real_shift():
    x = randn(400, 3, seed=160)
    y = randn(400, 3, seed=161) + torch.tensor([8.0, 0.0, 0.0], dtype=F64)
    assert js_divergence(x, y, generator=gen(0), holdout=0.5, weight_decay=1e-3).item() > LOG2 - 0.05


def test_js_divergence_held_out_equals_ridge_logistic_regression_on_the_same_split():
    from sklearn.linear_model import LogisticRegression

    x, y, lam, g = randn(300, 3, seed=170), 0.5 + randn(200, 3, seed=171), 0.05, gen(4)
    px, py = torch.randperm(300, generator=g), torch.randperm(200, generator=g)  # the split js_divergence draws first
    xs, xf, ys, yf = x[px[:150]], x[px[150:]], y[py[:100]], y[py[100:]]
    fit = torch.cat([xf, yf])
    mean, std = fit.mean(0), fit.std(0, unbiased=False)
    labels = np.r_[np.ones(150), np.zeros(100)]
    # ½(mean_x + mean_y) + ½λ‖w‖² is sklearn's C·Σ balanced-weighted loss + ½‖w‖² divided by C·n, so C = 1/(λn).
    clf = LogisticRegression(C=1 / (lam * 250), class_weight="balanced", tol=1e-12, max_iter=10_000)
    clf.fit(((fit - mean) / std).numpy(), labels)
    px_s = clf.predict_proba(((xs - mean) / std).numpy())[:, 1]
    py_s = clf.predict_proba(((ys - mean) / std).numpy())[:, 1]
    expected = LOG2 - 0.5 * (-np.log(px_s).mean() - np.log1p(-py_s).mean())
    ours = js_divergence(x, y, generator=gen(4), holdout=0.5, weight_decay=lam).item()
    assert ours == pytest.approx(max(expected, 0.0), abs=1e-7)


@pytest.mark.parametrize("kwargs", [{"holdout": 1.0}, {"holdout": -0.1}, {"weight_decay": -1.0}, {"holdout": 0.01}])
def test_js_divergence_rejects_bad_holdout_and_weight_decay(kwargs):
    with pytest.raises(ValueError, match="holdout|weight_decay"):
        js_divergence(randn(10, 2, seed=0), randn(10, 2, seed=1), generator=gen(0), **kwargs)


def test_js_divergence_is_deterministic_and_in_range():
    x, y = randn(100, 5, seed=140), randn(80, 5, seed=141) + 0.3
    a = js_divergence(x, y, steps=50, generator=gen(3))
    b = js_divergence(x, y, steps=50, generator=gen(3))
    assert torch.equal(a, b) and 0.0 <= a.item() <= LOG2
    assert a.dtype == F64 and not a.requires_grad
    constant = torch.zeros(10, 2, dtype=F64)
    assert js_divergence(constant, constant, generator=gen(0)).item() == pytest.approx(0.0, abs=1e-6)


def test_sliced_wasserstein_keeps_every_tensor_on_the_input_device():
    # The quantile coupling is built in float64 on the CPU; every piece of it must follow the
    # inputs to their device (a CPU weight once broke the CUDA path). The meta device catches
    # a stray CPU tensor on a machine without a GPU.
    x, y = torch.randn(6, 3, device="meta"), torch.randn(4, 3, device="meta")
    assert sliced_wasserstein(x, y, generator=gen(0)).device.type == "meta"
    assert mmd2(x, y, bandwidth=1.0).device.type == "meta"
