"""Tests for theory.sharpness: closed forms on quadratics, brute force on a tiny MLP, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from torch import nn

from clbounds.theory.sharpness import average_sharpness, hessian_top_eigenvalue, hessian_trace, sharpness

F64 = torch.float64


class Quadratic(nn.Module):
    """L(θ) = ½(θ−θ*)ᵀA(θ−θ*) + bᵀθ: gradient A(θ−θ*) + b, Hessian A."""

    def __init__(self, theta: torch.Tensor, A: torch.Tensor, theta_star: torch.Tensor, b: torch.Tensor | None = None):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())
        self.register_buffer("A", A)
        self.register_buffer("theta_star", theta_star)
        self.register_buffer("b", torch.zeros_like(theta) if b is None else b)

    def forward(self) -> torch.Tensor:
        d = self.theta - self.theta_star
        return 0.5 * d @ self.A @ d + self.b @ self.theta


# Two batches whose weights average to 1: the mean over batches is exactly the quadratic.
BATCHES = [0.5, 1.5]


def quad_loss(model: nn.Module, weight: float) -> torch.Tensor:
    return weight * model()


def sym(eigenvalues: list[float], seed: int) -> torch.Tensor:
    """Q diag(λ) Qᵀ with a random orthogonal Q, so A is not diagonal."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=F64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def gradient(m: Quadratic) -> torch.Tensor:
    return (m.A @ (m.theta - m.theta_star) + m.b).detach()


def trust_region_max(g: torch.Tensor, A: torch.Tensor, rho: float) -> float:
    """Exact max of gᵀε + ½εᵀAε over ‖ε‖ ≤ ρ for convex A, g ≠ 0: ε = (μI − A)⁻¹g, μ > λ_max."""
    lam, q = torch.linalg.eigh(A)
    c = q.T @ g

    def excess(mu: float) -> float:
        return float((c / (mu - lam)).norm()) - rho

    top = float(lam[-1])
    mu = brentq(excess, top + 1e-12, top + float(g.norm()) / rho + 1.0, xtol=1e-15, rtol=1e-15)
    eps = q @ (c / (mu - lam))
    return float(g @ eps + 0.5 * eps @ A @ eps)


# --------------------------------------------------------------------------- Hessian, closed forms

SPD = [5.0, 3.0, 2.0, 1.0, 0.5, 0.1]
INDEFINITE = [2.0, 1.0, 0.5, -1.0, -6.0]  # |λ_min| > λ_max: power and Lanczos disagree


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_hessian_top_eigenvalue_spd_quadratic(method: str) -> None:
    A = sym(SPD, seed=1)
    m = Quadratic(randn(6, seed=2), A, randn(6, seed=3), randn(6, seed=4))
    lam = hessian_top_eigenvalue(m, quad_loss, BATCHES, iters=500, method=method)
    assert lam == pytest.approx(5.0, rel=1e-6)


def test_hessian_top_eigenvalue_indefinite_lanczos_vs_power() -> None:
    A = sym(INDEFINITE, seed=5)
    m = Quadratic(randn(5, seed=6), A, randn(5, seed=7))
    # Lanczos returns the largest algebraic eigenvalue, power iteration the largest in magnitude.
    assert hessian_top_eigenvalue(m, quad_loss, BATCHES, method="lanczos") == pytest.approx(2.0, rel=1e-6)
    assert hessian_top_eigenvalue(m, quad_loss, BATCHES, iters=500, method="power") == pytest.approx(-6.0, rel=1e-6)


def test_hessian_trace_exact_for_diagonal_hessian() -> None:
    # vᵀAv = Σ A_ii v_i² = tr(A) for every Rademacher v: the estimator has zero variance.
    A = torch.diag(torch.tensor([3.0, -1.0, 0.25, 7.0], dtype=F64))
    m = Quadratic(randn(4, seed=8), A, randn(4, seed=9))
    assert hessian_trace(m, quad_loss, BATCHES, samples=3) == pytest.approx(9.25, rel=1e-12)


def test_hessian_trace_non_diagonal_within_monte_carlo_error() -> None:
    A = sym([4.0, 2.0, 1.0, -0.5, 0.3], seed=10)
    m = Quadratic(randn(5, seed=11), A, randn(5, seed=12))
    samples = 500
    # Var(vᵀAv) = 2 Σ_{i≠j} A_ij² for Rademacher v; allow 5 standard errors.
    off = A - torch.diag(A.diagonal())
    tol = 5 * math.sqrt(2 * float(off.pow(2).sum()) / samples)
    est = hessian_trace(m, quad_loss, BATCHES, samples=samples, generator=torch.Generator().manual_seed(0))
    assert abs(est - float(A.trace())) < tol


# --------------------------------------------------------------------------- sharpness, closed forms


def test_sharpness_at_minimum_is_half_rho_squared_lambda_max() -> None:
    A = sym(SPD, seed=13)
    ts = randn(6, seed=14)
    m = Quadratic(ts, A, ts)  # θ = θ*, b = 0: the gradient is exactly 0
    rho = 0.3
    # The random start then converges to the top eigenvector (a power iteration).
    assert sharpness(m, quad_loss, BATCHES, rho, steps=60) == pytest.approx(rho**2 * 5.0 / 2, rel=1e-8)
    # One SAM step has no direction at a stationary point.
    assert sharpness(m, quad_loss, BATCHES, rho, steps=1) == 0.0


def test_sharpness_one_step_closed_form_and_multistep_bounds() -> None:
    A = sym(SPD, seed=15)
    m = Quadratic(randn(6, seed=16), A, randn(6, seed=17), randn(6, seed=18))
    g = gradient(m)
    gn = float(g.norm())
    for rho in (0.01, 0.2, 1.5):
        one = sharpness(m, quad_loss, BATCHES, rho, steps=1)
        assert one == pytest.approx(rho * gn + rho**2 * float(g @ A @ g) / (2 * gn**2), rel=1e-12)
        multi = sharpness(m, quad_loss, BATCHES, rho, steps=10)
        assert one <= multi <= rho * gn + rho**2 * 5.0 / 2
        # With enough steps the ascent reaches the exact trust-region maximum.
        converged = sharpness(m, quad_loss, BATCHES, rho, steps=200)
        assert converged == pytest.approx(trust_region_max(g, A, rho), rel=1e-8)


@pytest.mark.parametrize("eta", [0.0, 0.1])
def test_asam_first_step_closed_form(eta: float) -> None:
    A = torch.diag(torch.tensor([2.0, 0.5, 1.0, 3.0], dtype=F64))
    theta = torch.tensor([0.5, -2.0, 1.5, 0.1], dtype=F64)
    m = Quadratic(theta, A, torch.zeros(4, dtype=F64), torch.tensor([0.3, -0.2, 0.1, 1.0], dtype=F64))
    g = gradient(m)
    T = theta.abs() + eta
    rho = 0.4
    eps = rho * T**2 * g / (T * g).norm()  # Kwon et al. 2021: ε = ρ T²g / ‖Tg‖
    expected = float(g @ eps + 0.5 * eps @ A @ eps)
    assert sharpness(m, quad_loss, BATCHES, rho, adaptive=True, eta=eta) == pytest.approx(expected, rel=1e-12)
    # Multi-step ASAM stays in the ellipsoid ‖T⁻¹ε‖ ≤ ρ, i.e. ε = Tw with ‖w‖ ≤ ρ, so it is at most
    # the max over that ball of the linear part plus the max of the quadratic part.
    bound = rho * float((T * g).norm()) + rho**2 * float(torch.linalg.eigvalsh(T[:, None] * A * T[None, :])[-1]) / 2
    multi = sharpness(m, quad_loss, BATCHES, rho, steps=20, adaptive=True, eta=eta)
    assert expected <= multi <= bound


def test_sharpness_finds_interior_maximum_of_concave_loss() -> None:
    # L = −½‖θ‖² at θ = 0.1·u: the max over the unit ball is at ε = −θ (inside the ball),
    # worth ½‖θ‖² = 0.005. One SAM step overshoots to ε = −u (a loss decrease, clipped to 0);
    # steps of 0.05 walk back along u and land on ε = −θ after 18 steps, where g = 0.
    u = torch.tensor([2.0, -1.0, 2.0], dtype=F64) / 3
    m = Quadratic(0.1 * u, -torch.eye(3, dtype=F64), torch.zeros(3, dtype=F64))
    assert sharpness(m, quad_loss, BATCHES, 1.0, steps=1) == 0.0
    assert sharpness(m, quad_loss, BATCHES, 1.0, steps=30, step_size=0.05) == pytest.approx(0.005, rel=1e-9)


def test_only_trainable_parameters_are_perturbed() -> None:
    class WithFrozen(Quadratic):
        def __init__(self, *args: torch.Tensor):
            super().__init__(*args)
            self.phi = nn.Parameter(torch.ones(3, dtype=F64), requires_grad=False)

        def forward(self) -> torch.Tensor:
            return super().forward() + 10 * self.phi.pow(2).sum()

    A = sym([2.0, 1.0, 0.5], seed=19)
    m = WithFrozen(randn(3, seed=20), A, randn(3, seed=21))
    g = gradient(m)
    rho, gn = 0.5, float(g.norm())
    expected = rho * gn + rho**2 * float(g @ A @ g) / (2 * gn**2)
    assert sharpness(m, quad_loss, BATCHES, rho) == pytest.approx(expected, rel=1e-12)


def test_average_sharpness_is_half_sigma_squared_trace() -> None:
    A = sym([3.0, 2.0, 1.0, 0.5, 0.25], seed=22)
    sigma, samples = 0.1, 1000
    # Per antithetic pair the estimate is ½εᵀAε, with variance σ⁴ tr(A²)/2; 5 standard errors.
    tol = 5 * sigma**2 * math.sqrt(float((A @ A).trace()) / 2 / (samples // 2))
    target = sigma**2 * float(A.trace()) / 2
    ts = randn(5, seed=23)
    at_min = Quadratic(ts, A, ts)
    away = Quadratic(randn(5, seed=24), A, ts, randn(5, seed=25))  # E is σ² tr(A)/2 at every θ
    for m in (at_min, away):
        est = average_sharpness(m, quad_loss, BATCHES, sigma, samples, generator=torch.Generator().manual_seed(1))
        assert abs(est - target) < tol
    plain = average_sharpness(at_min, quad_loss, BATCHES, sigma, samples, antithetic=False)
    assert abs(plain - target) < tol * math.sqrt(2)


def test_average_sharpness_deterministic_with_generator() -> None:
    m = Quadratic(randn(4, seed=26), sym([1.0, 2.0, 3.0, 4.0], seed=27), randn(4, seed=28))
    a = average_sharpness(m, quad_loss, BATCHES, 0.2, 7, generator=torch.Generator().manual_seed(3))
    b = average_sharpness(m, quad_loss, BATCHES, 0.2, 7, generator=torch.Generator().manual_seed(3))
    c = average_sharpness(m, quad_loss, BATCHES, 0.2, 7, generator=torch.Generator().manual_seed(4))
    assert a == b and a != c


# --------------------------------------------------------------------------- brute force on a tiny MLP

SIZES = [(4, 3), (4,), (2, 4), (2,)]  # parameters of Linear(3,4) → tanh → Linear(4,2), in order


def tiny_mlp() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(F64)
    batches = [(randn(5, 3, seed=30 + i), randn(5, 2, seed=40 + i)) for i in range(2)]
    return model, batches


def mlp_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return (model(x) - y).pow(2).mean()


def reference_loss(flat: torch.Tensor, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The same MLP written out by hand from one flat vector, mean over batches."""
    parts, offset = [], 0
    for shape in SIZES:
        n = math.prod(shape)
        parts.append(flat[offset : offset + n].reshape(shape))
        offset += n
    w1, b1, w2, b2 = parts
    losses = [((torch.tanh(x @ w1.T + b1) @ w2.T + b2) - y).pow(2).mean() for x, y in batches]
    return sum(losses) / len(losses)


def reference_value_and_grad(theta: list[float], batches) -> tuple[float, list[float]]:
    flat = torch.tensor(theta, dtype=F64, requires_grad=True)
    loss = reference_loss(flat, batches)
    (grad,) = torch.autograd.grad(loss, flat)
    return float(loss.detach()), grad.tolist()


def reference_ascent(theta, batches, rho, steps, step_size, adaptive, eta):
    """Plain-loop projected normalised-gradient ascent in w = T⁻¹ε coordinates."""
    scale = [abs(t) + eta if adaptive else 1.0 for t in theta]
    loss0, g = reference_value_and_grad(theta, batches)
    gw = [s * gi for s, gi in zip(scale, g)]
    norm = math.sqrt(sum(v * v for v in gw))
    w = [rho * v / norm for v in gw]
    best = 0.0
    for k in range(steps):
        point = [t + s * wi for t, s, wi in zip(theta, scale, w)]
        loss, g = reference_value_and_grad(point, batches)
        best = max(best, loss - loss0)
        if k == steps - 1:
            break
        gw = [s * gi for s, gi in zip(scale, g)]
        norm = math.sqrt(sum(v * v for v in gw))
        w = [wi + step_size * v / norm for wi, v in zip(w, gw)]
        wn = math.sqrt(sum(v * v for v in w))
        if wn > rho:
            w = [v * rho / wn for v in w]
    return best


@pytest.mark.parametrize("adaptive", [False, True])
def test_sharpness_matches_plain_loop_reference(adaptive: bool) -> None:
    model, batches = tiny_mlp()
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()
    for rho, steps, step_size in [(0.05, 1, None), (0.3, 6, None), (0.5, 8, 0.1)]:
        ours = sharpness(model, mlp_loss, batches, rho, steps=steps, adaptive=adaptive, step_size=step_size, eta=0.01)
        ref = reference_ascent(theta, batches, rho, steps, rho if step_size is None else step_size, adaptive, 0.01)
        assert ours == pytest.approx(ref, rel=1e-10, abs=1e-14)


def test_hessian_terms_match_full_hessian_of_reference_mlp() -> None:
    model, batches = tiny_mlp()
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    H = torch.autograd.functional.hessian(lambda t: reference_loss(t, batches), theta)
    eig = torch.linalg.eigvalsh(H)
    assert hessian_top_eigenvalue(model, mlp_loss, batches, method="lanczos") == pytest.approx(float(eig[-1]), rel=1e-6)
    samples = 400
    off = H - torch.diag(H.diagonal())
    tol = 5 * math.sqrt(2 * float(off.pow(2).sum()) / samples)
    assert abs(hessian_trace(model, mlp_loss, batches, samples=samples) - float(H.trace())) < tol


# --------------------------------------------------------------------------- properties


def random_quadratic(seed: int, n: int, convex: bool) -> Quadratic:
    g = torch.Generator().manual_seed(seed)
    low = 0.0 if convex else -3.0
    eig = (low + (3.0 - low) * torch.rand(n, generator=g, dtype=F64)).tolist()
    theta = torch.randn(n, generator=g, dtype=F64)
    return Quadratic(theta, sym(eig, seed), torch.randn(n, generator=g, dtype=F64), 0.3 * torch.randn(n, generator=g, dtype=F64))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    convex=st.booleans(),
    rho=st.floats(1e-3, 3.0),
    steps=st.integers(1, 6),
    adaptive=st.booleans(),
)
def test_sharpness_nonnegative_and_at_least_one_step(seed, convex, rho, steps, adaptive) -> None:
    m = random_quadratic(seed, 4, convex)
    multi = sharpness(m, quad_loss, BATCHES, rho, steps=steps, adaptive=adaptive)
    one = sharpness(m, quad_loss, BATCHES, rho, steps=1, adaptive=adaptive)
    assert multi >= 0.0
    assert multi >= one


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rhos=st.lists(st.floats(1e-3, 3.0), min_size=2, max_size=5),
    steps=st.integers(1, 10),
    adaptive=st.booleans(),
)
def test_sharpness_monotone_in_rho_on_convex_quadratic(seed, rhos, steps, adaptive) -> None:
    m = random_quadratic(seed, 4, convex=True)
    values = [sharpness(m, quad_loss, BATCHES, r, steps=steps, adaptive=adaptive) for r in sorted(rhos)]
    for small, large in zip(values, values[1:]):
        assert large >= small * (1 - 1e-12)


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.bn = nn.BatchNorm1d(5)
        self.fc2 = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def bn_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return (model(x) - y).pow(2).mean()


def snapshot(model: nn.Module) -> dict:
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {n: (p.grad, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    return {"state": state, "grads": grads, "modes": modes, "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()}}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int64) if t.dtype == F64 else t


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model.state_dict(keep_vars=True)
    assert {k: id(v) for k, v in after.items()} == before["ids"]
    for k, v in after.items():
        assert torch.equal(bits(v.detach()), bits(before["state"][k])), k
    for n, p in model.named_parameters():
        obj, value = before["grads"][n]
        assert p.grad is obj
        if obj is not None:
            assert torch.equal(bits(p.grad), bits(value))
    assert [m.training for m in model.modules()] == before["modes"]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), train=st.booleans(), steps=st.integers(1, 3), adaptive=st.booleans())
def test_model_state_left_bitwise_unchanged(seed, train, steps, adaptive) -> None:
    torch.manual_seed(seed)
    model = BNNet().to(F64)
    model.fc2.weight.requires_grad_(False)  # frozen parameters must be untouched too
    model.fc1.weight.grad = torch.randn_like(model.fc1.weight)  # an existing .grad must survive
    model.train(train)
    model.bn.train(True)  # a mixed mode: BatchNorm in train mode inside
    batches = [(randn(8, 3, seed=seed + i), randn(8, 1, seed=seed + 50 + i)) for i in range(2)]
    before = snapshot(model)
    loss_before = [float(bn_loss(model, b).detach()) for b in batches]
    model.load_state_dict(before["state"])  # undo the running-stat update of that check
    before = snapshot(model)
    gen = torch.Generator().manual_seed(seed)
    sharpness(model, bn_loss, batches, 0.1, steps=steps, adaptive=adaptive, generator=gen)
    assert_unchanged(model, before)
    average_sharpness(model, bn_loss, batches, 0.05, samples=2, generator=gen)
    assert_unchanged(model, before)
    hessian_top_eigenvalue(model, bn_loss, batches, iters=2, method="lanczos", generator=gen)
    hessian_top_eigenvalue(model, bn_loss, batches, iters=2, method="power", generator=gen)
    assert_unchanged(model, before)
    hessian_trace(model, bn_loss, batches, samples=1, generator=gen)
    assert_unchanged(model, before)
    assert [float(bn_loss(model, b).detach()) for b in batches] == loss_before


def test_state_restored_when_loss_fn_raises() -> None:
    model, batches = tiny_mlp()
    before = snapshot(model)
    calls = []

    def failing(m: nn.Module, batch) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return mlp_loss(m, batch)

    with pytest.raises(RuntimeError, match="boom"):
        sharpness(model, failing, batches, 0.5, steps=4)
    assert_unchanged(model, before)


# --------------------------------------------------------------------------- degenerate input


def test_degenerate_inputs() -> None:
    model, batches = tiny_mlp()
    assert sharpness(model, mlp_loss, batches, 0.0, steps=3) == 0.0
    assert average_sharpness(model, mlp_loss, batches, 0.0, samples=2) == 0.0
    with pytest.raises(ValueError):
        sharpness(model, mlp_loss, [], 0.1)
    with pytest.raises(ValueError):
        sharpness(model, mlp_loss, batches, -0.1)
    with pytest.raises(ValueError):
        hessian_top_eigenvalue(model, mlp_loss, batches, method="arnoldi")
    frozen = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError):
        hessian_trace(frozen, lambda m, b: m(b).sum(), [torch.ones(1, 2)])
    # A loss that is linear in θ has a zero Hessian: every estimate is exactly 0, never NaN.
    linear = nn.Linear(2, 1).to(F64)
    lin_loss = lambda m, b: m(b).sum()  # noqa: E731
    data = [torch.ones(3, 2, dtype=F64)]
    assert hessian_top_eigenvalue(linear, lin_loss, data, method="lanczos") == 0.0
    assert hessian_top_eigenvalue(linear, lin_loss, data, method="power") == 0.0
    assert hessian_trace(linear, lin_loss, data, samples=2) == 0.0
    # ASAM with η = 0 at θ = 0 has an empty ball: sharpness 0.
    zero = Quadratic(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64), torch.ones(3, dtype=F64))
    assert sharpness(zero, quad_loss, BATCHES, 0.5, steps=3, adaptive=True) == 0.0
