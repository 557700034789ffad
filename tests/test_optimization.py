"""Tests for theory.optimization: closed forms, brute force, and the log-log fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from clbounds.theory.optimization import full_batch_gradient_norm, loglog_slope, relative_weight_movement

F64 = torch.float64


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


class Quadratic(nn.Module):
    """L(θ, φ) = ½(θ−θ*)ᵀA(θ−θ*) + bᵀθ + ‖φ‖²: ∇_θ = A(θ−θ*) + b, ∇_φ = 2φ."""

    def __init__(self) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(randn(5, 5, seed=0))
        self.register_buffer("A", q @ torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5, 0.1], dtype=F64)) @ q.T)
        self.register_buffer("theta_star", randn(5, seed=1))
        self.register_buffer("b", randn(5, seed=2))
        self.theta = nn.Parameter(randn(5, seed=3))
        self.phi = nn.Parameter(randn(3, seed=4))

    def forward(self) -> torch.Tensor:
        d = self.theta - self.theta_star
        return 0.5 * d @ self.A @ d + self.b @ self.theta + self.phi.pow(2).sum()


def quad_loss(model: nn.Module, weight: float) -> torch.Tensor:
    return weight * model()


BATCHES = [0.25, 1.75]  # mean weight 1: the mean over batches is the quadratic itself


def test_gradient_norm_of_quadratic_closed_form() -> None:
    m = Quadratic()
    g_theta = m.A @ (m.theta - m.theta_star).detach() + m.b
    g_phi = 2 * m.phi.detach()
    joint = math.sqrt(float(g_theta.pow(2).sum() + g_phi.pow(2).sum()))
    assert full_batch_gradient_norm(m, quad_loss, BATCHES) == pytest.approx(joint, rel=1e-12)
    assert full_batch_gradient_norm(m, quad_loss, BATCHES, squared=True) == pytest.approx(joint**2, rel=1e-12)
    # Restricted to θ, the norm is ‖A(θ−θ*) + b‖.
    only_theta = full_batch_gradient_norm(m, quad_loss, BATCHES, params=[m.theta])
    assert only_theta == pytest.approx(float(g_theta.norm()), rel=1e-12)
    # Frozen parameters are excluded by default.
    m.phi.requires_grad_(False)
    assert full_batch_gradient_norm(m, quad_loss, BATCHES) == pytest.approx(float(g_theta.norm()), rel=1e-12)
    with pytest.raises(ValueError):
        full_batch_gradient_norm(m, quad_loss, BATCHES, params=[m.phi])


def test_gradient_norm_matches_one_big_batch_and_leaves_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 2)).to(F64).eval()
    x, y = randn(12, 3, seed=5), randn(12, 2, seed=6)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (m(batch[0]) - batch[1]).pow(2).mean()

    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4)]  # equal-sized batches
    # Brute force: the gradient of the full-data mean on one batch, accumulated by a plain loop.
    grads = torch.autograd.grad(loss_fn(model, (x, y)), list(model.parameters()))
    total = 0.0
    for g in grads:
        for v in g.reshape(-1).tolist():
            total += v * v
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ours = full_batch_gradient_norm(model, loss_fn, batches, squared=True)
    assert ours == pytest.approx(total, rel=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())

    model.train()  # BatchNorm statistics move on every forward in train mode: must be restored
    full_batch_gradient_norm(model, loss_fn, batches)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_relative_weight_movement_closed_form() -> None:
    w0 = {"a": torch.tensor([3.0, 0.0], dtype=F64), "b": torch.tensor([[0.0], [4.0]], dtype=F64)}
    wt = {"a": torch.tensor([3.0, 1.0], dtype=F64), "b": torch.tensor([[2.0], [4.0]], dtype=F64)}
    # ‖Δ‖² = 1 + 4 = 5 and ‖W_0‖² = 9 + 16 = 25.
    assert relative_weight_movement(wt, w0) == pytest.approx(math.sqrt(5) / 5, rel=1e-15)
    assert relative_weight_movement(wt, w0, per_layer=True) == pytest.approx({"a": 1 / 3, "b": 2 / 4}, rel=1e-15)
    assert relative_weight_movement(w0, w0) == 0.0


def test_relative_weight_movement_modules_match_plain_loop() -> None:
    torch.manual_seed(1)
    initial = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(F64)
    current = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(F64)
    num = den = 0.0
    for (_, p0), (_, pt) in zip(initial.named_parameters(), current.named_parameters()):
        for a, b in zip(p0.reshape(-1).tolist(), pt.reshape(-1).tolist()):
            num += (b - a) ** 2
            den += a * a
    assert relative_weight_movement(current, initial) == pytest.approx(math.sqrt(num / den), rel=1e-12)
    # A module and its parameter mapping give the same answer.
    mapping = dict(initial.named_parameters())
    assert relative_weight_movement(current, mapping) == relative_weight_movement(current, initial)


def test_relative_weight_movement_degenerate() -> None:
    zero = {"w": torch.zeros(3, dtype=F64), "bias": torch.zeros(2, dtype=F64)}
    moved = {"w": torch.ones(3, dtype=F64), "bias": torch.ones(2, dtype=F64)}
    with pytest.raises(ValueError):
        relative_weight_movement(moved, zero)
    # Per layer, a zero-initialised tensor has no defined ratio and is left out.
    mixed = {"w": torch.ones(3, dtype=F64), "bias": torch.zeros(2, dtype=F64)}
    assert relative_weight_movement(moved, mixed, per_layer=True) == {"w": 0.0}
    with pytest.raises(ValueError):
        relative_weight_movement({"w": torch.ones(3)}, {"v": torch.ones(3)})
    with pytest.raises(ValueError):
        relative_weight_movement({"w": torch.ones(3)}, {"w": torch.ones(4)})


def test_loglog_slope_recovers_exact_power_law() -> None:
    x = [8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    y = [7.0 * v**-0.75 for v in x]
    fit = loglog_slope(x, y)
    assert fit["slope"] == pytest.approx(-0.75, rel=1e-12)
    assert fit["intercept"] == pytest.approx(math.log(7.0), rel=1e-12)
    assert fit["low"] == pytest.approx(-0.75, rel=1e-9) and fit["high"] == pytest.approx(-0.75, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    # Constant y: slope 0, a perfect fit.
    flat = loglog_slope([1, 2, 3], [5.0, 5.0, 5.0])
    assert flat["slope"] == 0.0 and flat["r2"] == 1.0


def test_loglog_slope_noisy_matches_brute_force_and_covers_truth() -> None:
    rng = np.random.default_rng(0)
    x = np.geomspace(16, 1024, 9)
    y = 3.0 * x**0.5 * np.exp(rng.normal(0, 0.1, x.size))
    fit = loglog_slope(x.tolist(), y.tolist(), confidence=0.95)
    assert fit["low"] < 0.5 < fit["high"]
    # Brute force: normal equations by plain loops, interval from scipy's linregress stderr.
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ly) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    sxx = sum((a - mx) ** 2 for a in lx)
    assert fit["slope"] == pytest.approx(sxy / sxx, rel=1e-12)
    assert fit["intercept"] == pytest.approx(my - sxy / sxx * mx, rel=1e-12)
    ref = stats.linregress(lx, ly)
    half = stats.t.ppf(0.975, n - 2) * ref.stderr
    assert fit["low"] == pytest.approx(ref.slope - half, rel=1e-10)
    assert fit["high"] == pytest.approx(ref.slope + half, rel=1e-10)
    assert fit["r2"] == pytest.approx(ref.rvalue**2, rel=1e-10)
    # A wider confidence level gives a wider interval.
    wide = loglog_slope(x.tolist(), y.tolist(), confidence=0.99)
    assert wide["low"] < fit["low"] and wide["high"] > fit["high"]


def test_loglog_slope_coverage_over_many_noisy_fits() -> None:
    # The t interval should cover the true slope in about 95% of repetitions.
    rng = np.random.default_rng(1)
    x = np.geomspace(1, 100, 6).tolist()
    hits = 0
    reps = 400
    for _ in range(reps):
        y = (2.0 * np.asarray(x) ** -1.3 * np.exp(rng.normal(0, 0.2, len(x)))).tolist()
        fit = loglog_slope(x, y)
        hits += fit["low"] <= -1.3 <= fit["high"]
    # Binomial(400, 0.95): standard deviation ≈ 0.011; allow about 4 of them.
    assert abs(hits / reps - 0.95) < 0.045


@pytest.mark.parametrize(
    "x, y",
    [([1, 2], [1, 2]), ([1, 2, 0], [1, 2, 3]), ([1, 2, 3], [1, -2, 3]), ([2, 2, 2], [1, 2, 3]), ([1, 2, 3], [1, 2])],
)
def test_loglog_slope_rejects_degenerate_input(x, y) -> None:
    with pytest.raises(ValueError):
        loglog_slope(x, y)
