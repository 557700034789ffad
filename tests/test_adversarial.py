"""Tests for theory.adversarial (PAPERS.md §1): PGD against closed forms on linear models,
a per-sample brute-force PGD, and the side-effect guarantees. All in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from clbounds.theory.adversarial import (
    EVAL_ALPHA,
    EVAL_EPS,
    EVAL_STEPS,
    TRAIN_ALPHA,
    TRAIN_EPS,
    TRAIN_STEPS,
    contrastive_attack,
    nearest_center_logits,
    pgd,
    representation_attack,
    robust_accuracy,
)
from clbounds.theory.losses import info_nce

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TwoClassLinear(nn.Module):
    """Logits [0, wᵀx + b]: class 1 iff the margin wᵀx + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin(x)
        return torch.stack([torch.zeros_like(m), m], dim=1)


def linear_problem(n: int = 12, dim: int = 8, seed: int = 0):
    g = gen(seed)
    w = torch.randn(dim, generator=g, dtype=F64)
    model = TwoClassLinear(w, b=0.1)
    x = 0.4 + 0.2 * torch.rand(n, 2, dim // 2, generator=g, dtype=F64)  # interior of [0, 1]
    y = torch.randint(0, 2, (n,), generator=g)
    return model, x, y


def mlp(in_dim: int, out_dim: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 16), nn.Tanh(), nn.Linear(16, out_dim)).to(F64)


def test_defaults_follow_papers_section_1():
    assert (TRAIN_EPS, TRAIN_ALPHA, TRAIN_STEPS) == (8 / 255, 2 / 255, 7)
    assert (EVAL_EPS, EVAL_ALPHA, EVAL_STEPS) == (8 / 255, 0.8 / 255, 20)


# ---------------------------------------------------------------- pgd: closed forms


def test_pgd_linf_on_linear_model_reaches_worst_case_margin():
    model, x, y = linear_problem()
    eps = 0.05
    x_adv = pgd(model, x, y, eps=eps, alpha=0.02, steps=10, norm="linf", generator=gen(1))
    w = model.w.detach()
    direction = torch.where(y == 1, -1.0, 1.0).to(F64)  # CE grows as the margin moves against y
    expected = model.margin(x) + direction * eps * w.abs().sum()
    torch.testing.assert_close(model.margin(x_adv), expected.detach(), rtol=1e-12, atol=1e-12)
    # The maximiser is the corner δ = ±ε·sign(w).
    torch.testing.assert_close((x_adv - x).flatten(1), direction[:, None] * eps * w.sign(), rtol=0, atol=1e-12)


def test_pgd_l2_on_linear_model_reaches_worst_case_margin():
    model, x, y = linear_problem(seed=3)
    eps = 0.1
    x_adv = pgd(model, x, y, eps=eps, alpha=0.05, steps=60, norm="l2", generator=gen(2))
    w = model.w.detach()
    direction = torch.where(y == 1, -1.0, 1.0).to(F64)
    expected = model.margin(x) + direction * eps * w.norm()
    # Projected ascent from a random start converges geometrically to δ = ±ε·w/‖w‖.
    torch.testing.assert_close(model.margin(x_adv), expected.detach(), rtol=1e-9, atol=1e-9)


def test_pgd_without_random_start_is_deterministic_fgsm_like():
    model, x, y = linear_problem(seed=4)
    first = pgd(model, x, y, eps=0.03, alpha=0.03, steps=1, random_start=False)
    # One full step from x under L∞ is the FGSM point x ± ε·sign(w).
    direction = torch.where(y == 1, -1.0, 1.0).to(F64)
    torch.testing.assert_close((first - x).flatten(1), direction[:, None] * 0.03 * model.w.detach().sign(), rtol=0, atol=1e-15)


# ---------------------------------------------------------------- pgd: brute force


def pgd_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, eps: float, alpha: float, steps: int, norm: str) -> torch.Tensor:
    """PGD one sample at a time, projection by plain loops over coordinates."""
    model.eval()
    out = []
    for i in range(x.shape[0]):
        xi, cur = x[i].flatten().tolist(), start[i].flatten().tolist()
        for _ in range(steps):
            t = torch.tensor(cur, dtype=F64).view(1, *x.shape[1:]).requires_grad_()
            loss = F.cross_entropy(model(t), y[i : i + 1])
            (grad,) = torch.autograd.grad(loss, t)
            g = grad.flatten().tolist()
            if norm == "linf":
                cur = [c + alpha * math.copysign(1.0, gj) if gj != 0 else c for c, gj in zip(cur, g)]
                cur = [min(max(c, a - eps), a + eps) for c, a in zip(cur, xi)]
            else:
                gnorm = math.sqrt(sum(gj * gj for gj in g))
                cur = [c + alpha * gj / gnorm for c, gj in zip(cur, g)] if gnorm > 0 else cur
                dnorm = math.sqrt(sum((c - a) ** 2 for c, a in zip(cur, xi)))
                scale = min(1.0, eps / dnorm) if dnorm > 0 else 1.0
                cur = [a + (c - a) * scale for c, a in zip(cur, xi)]
            cur = [min(max(c, 0.0), 1.0) for c in cur]
        out.append(torch.tensor(cur, dtype=F64).view(x.shape[1:]))
    return torch.stack(out)


@pytest.mark.parametrize("norm, eps, alpha", [("linf", 8 / 255, 2 / 255), ("l2", 0.5, 0.1)])
def test_batched_pgd_equals_per_sample_loop(norm, eps, alpha):
    model = mlp(12, 3, seed=5)
    x = torch.rand(6, 3, 2, 2, generator=gen(6), dtype=F64)
    y = torch.randint(0, 3, (6,), generator=gen(7))
    # steps=0 returns the (projected) random start; the same seed gives the same start.
    start = pgd(model, x, y, eps=eps, alpha=alpha, steps=0, norm=norm, generator=gen(8))
    batched = pgd(model, x, y, eps=eps, alpha=alpha, steps=5, norm=norm, generator=gen(8))
    torch.testing.assert_close(batched, pgd_loop(model, x, y, start, eps, alpha, 5, norm), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- pgd: constraints


@settings(max_examples=40, deadline=None)
@given(
    eps=st.floats(0.0, 0.5),
    alpha_ratio=st.floats(0.1, 1.5),
    steps=st.integers(0, 4),
    batch=st.integers(1, 4),
    channels=st.integers(1, 3),
    side=st.integers(1, 3),
    norm=st.sampled_from(["linf", "l2"]),
    seed=st.integers(0, 1000),
)
def test_pgd_output_in_box_and_ball(eps, alpha_ratio, steps, batch, channels, side, norm, seed):
    dim = channels * side * side
    model = mlp(dim, 3, seed=seed)
    g = gen(seed)
    # Include exact 0s and 1s, where the box clamp binds.
    x = torch.rand(batch, channels, side, side, generator=g, dtype=F64).mul(1.4).sub(0.2).clamp(0, 1)
    y = torch.randint(0, 3, (batch,), generator=g)
    x_adv = pgd(model, x, y, eps=eps, alpha=alpha_ratio * eps, steps=steps, norm=norm, generator=g)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-12
    else:
        assert (delta.norm(dim=1) <= eps * (1 + 1e-9) + 1e-15).all()


def test_pgd_restores_modes_and_leaves_no_gradients():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).to(F64)
    model.train()
    model[3].eval()  # a mixed state must come back exactly
    model[1].bias.requires_grad_(False)
    running_mean = model[2].running_mean.clone()
    x, y = torch.rand(5, 3, 2, 2, generator=gen(10), dtype=F64), torch.tensor([0, 1, 2, 0, 1])
    pgd(model, x, y, steps=3, generator=gen(11))
    assert model.training and model[2].training and not model[3].training
    assert all(p.grad is None for p in model.parameters())
    assert model[1].weight.requires_grad and not model[1].bias.requires_grad
    torch.testing.assert_close(model[2].running_mean, running_mean, rtol=0, atol=0)  # eval BN: no update


def test_pgd_custom_loss_and_validation():
    model, x, y = linear_problem(seed=12)

    def pull_margin_up(m: nn.Module, x_adv: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return m.margin(x_adv).sum()

    x_adv = pgd(model, x, y, eps=0.05, alpha=0.05, steps=2, loss_fn=pull_margin_up, generator=gen(0))
    expected = model.margin(x) + 0.05 * model.w.detach().abs().sum()
    torch.testing.assert_close(model.margin(x_adv), expected.detach(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        pgd(model, x, y, norm="l1")
    with pytest.raises(ValueError):
        pgd(model, x + 1.0, y)
    with pytest.raises(ValueError):
        pgd(model, x, y, eps=-0.1)


# ---------------------------------------------------------------- robust_accuracy


def test_robust_accuracy_matches_linear_closed_form():
    g = gen(13)
    w = torch.randn(8, generator=g, dtype=F64)
    model = TwoClassLinear(w, b=-0.4 * float(w.sum()))
    x = 0.3 + 0.4 * torch.rand(40, 2, 4, generator=g, dtype=F64)
    y = (model.margin(x) + 0.3 * torch.randn(40, generator=g, dtype=F64) > 0).long()
    eps = 0.02
    result = robust_accuracy(model, x, y, eps=eps, alpha=0.01, steps=6, batch_size=7, generator=gen(14))
    m = model.margin(x).detach()
    shift = eps * w.abs().sum()
    sign = torch.where(y == 1, 1.0, -1.0).to(F64)  # margin in favour of the label
    clean_ok = torch.where(y == 1, m > 0, m <= 0)  # argmax picks class 0 on a tie
    robust_ok = torch.where(y == 1, m - shift > 0, m + shift <= 0)
    # CE of logits [0, m] for label y is softplus(−sign·m); the attack lowers sign·m by ε‖w‖₁.
    robust_ce = F.softplus(-(sign * m - shift)).mean()
    assert result["n"] == 40
    assert result["clean_accuracy"] == pytest.approx(clean_ok.double().mean().item(), abs=1e-15)
    assert result["robust_accuracy"] == pytest.approx(robust_ok.double().mean().item(), abs=1e-15)
    assert result["robust_cross_entropy"] == pytest.approx(robust_ce.item(), rel=1e-10)
    assert result["clean_cross_entropy"] == pytest.approx(F.softplus(-sign * m).mean().item(), rel=1e-10)
    assert result["robust_accuracy"] < result["clean_accuracy"]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), eps=st.floats(0.0, 0.3))
def test_robust_accuracy_never_exceeds_clean(seed, eps):
    model = mlp(12, 4, seed=seed)
    x = torch.rand(20, 3, 2, 2, generator=gen(seed), dtype=F64)
    y = torch.randint(0, 4, (20,), generator=gen(seed + 1))
    r = robust_accuracy(model, x, y, eps=eps, alpha=eps / 4, steps=3, batch_size=8, generator=gen(seed))
    assert 0 <= r["robust_accuracy"] <= r["clean_accuracy"] <= 1
    assert r["robust_cross_entropy"] >= r["clean_cross_entropy"]


# ---------------------------------------------------------------- nearest_center_logits


@pytest.mark.parametrize("normalize", [True, False])
def test_nearest_center_logits_equal_negative_squared_distances(normalize):
    encoder = mlp(12, 4, seed=15)
    centers = torch.randn(3, 4, generator=gen(16), dtype=F64)
    clf = nearest_center_logits(encoder, centers, normalize=normalize)
    x = torch.rand(5, 3, 2, 2, generator=gen(17), dtype=F64)
    feats = encoder(x).detach()
    logits = clf(x).detach()
    for i in range(5):
        f = feats[i].tolist()
        if normalize:
            norm = math.sqrt(sum(v * v for v in f))
            f = [v / norm for v in f]
        for k in range(3):
            expected = -sum((a - c) ** 2 for a, c in zip(f, centers[k].tolist()))
            assert logits[i, k].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert not any(name == "centers" for name, _ in clf.named_parameters())


def test_pgd_attacks_nearest_center_classifier():
    # Identity encoder on 2 pixels, centres (0, ½) and (1, ½): logit₁ − logit₀ = 2x₁ − 1, so
    # G_f says class 1 iff x₁ > ½, and an L∞ attack of size ε moves that margin by 2ε.
    encoder = nn.Flatten()
    centers = torch.tensor([[0.0, 0.5], [1.0, 0.5]], dtype=F64)
    clf = nearest_center_logits(encoder, centers, normalize=False)
    x = torch.tensor([[0.52, 0.3], [0.60, 0.5], [0.42, 0.9], [0.47, 0.1]], dtype=F64)
    y = torch.tensor([1, 1, 0, 0])
    eps = 0.05
    r = robust_accuracy(clf, x, y, eps=eps, alpha=0.02, steps=10, batch_size=3, generator=gen(0))
    # Distances to the boundary x₁ = ½: 0.02, 0.10, 0.08, 0.03; those below ε flip.
    assert r["clean_accuracy"] == 1.0
    assert r["robust_accuracy"] == 0.5
    sign = torch.where(y == 1, 1.0, -1.0).to(F64)
    margin = sign * (2 * x[:, 0] - 1)
    assert r["robust_cross_entropy"] == pytest.approx(F.softplus(-(margin - 2 * eps)).mean().item(), rel=1e-10)


# ---------------------------------------------------------------- representation_attack


def test_representation_attack_l2_achieves_spectral_norm_times_eps():
    g = gen(18)
    weight = torch.randn(3, 6, generator=g, dtype=F64)
    encoder = nn.Linear(6, 3, bias=False).to(F64)
    with torch.no_grad():
        encoder.weight.copy_(weight)
    x = 0.4 + 0.2 * torch.rand(4, 6, generator=g, dtype=F64)
    eps = 0.05
    lipschitz = torch.linalg.matrix_norm(weight, ord=2).item()
    x_adv, gap = representation_attack(encoder, x, eps=eps, alpha=eps, steps=200, norm="l2", generator=gen(19))
    torch.testing.assert_close(gap, (encoder(x_adv) - encoder(x)).norm(dim=1).detach(), rtol=1e-12, atol=0)
    assert (gap <= lipschitz * eps * (1 + 1e-12)).all()
    # Projected ascent on ‖Wδ‖² over the ball is power iteration: it reaches ‖W‖₂·ε.
    torch.testing.assert_close(gap, torch.full_like(gap, lipschitz * eps), rtol=1e-6, atol=0)


def test_representation_attack_linf_respects_lipschitz_bound():
    g = gen(20)
    weight = torch.randn(4, 12, generator=g, dtype=F64)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, bias=False)).to(F64)
    with torch.no_grad():
        encoder[1].weight.copy_(weight)
    x = torch.rand(5, 3, 2, 2, generator=g, dtype=F64)
    eps = 8 / 255
    _, gap = representation_attack(encoder, x, eps=eps, generator=gen(21))
    # ‖Wδ‖₂ ≤ ‖W‖₂ ‖δ‖₂ ≤ ‖W‖₂ √n ‖δ‖_∞, and Σ_j ‖W_{:,j}‖ ε (triangle inequality) is tighter.
    lipschitz = torch.linalg.matrix_norm(weight, ord=2).item()
    assert (gap <= lipschitz * math.sqrt(12) * eps + 1e-12).all()
    assert (gap <= weight.norm(dim=0).sum().item() * eps + 1e-12).all()
    assert (gap > 0).all()


class _LargestBatch(nn.Module):
    """A small BatchNorm network (eval mode in the attack) that records the largest batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 4)).to(F64)
        self.largest = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, x.shape[0])
        return self.net(x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_representation_attack_in_batches_equals_one_batch_and_bounds_the_batch(norm):
    torch.manual_seed(0)
    encoder = _LargestBatch()
    encoder.net[2].running_mean.normal_()  # eval-mode BatchNorm: each input's attack is its own
    x = torch.rand(23, 3, 2, 2, generator=gen(40), dtype=F64)
    whole_adv, whole_gap = representation_attack(encoder, x, eps=0.1, alpha=0.02, steps=7, norm=norm, random_start=False, batch_size=64)
    assert encoder.largest == 23
    encoder.largest = 0
    adv, gap = representation_attack(encoder, x, eps=0.1, alpha=0.02, steps=7, norm=norm, random_start=False, batch_size=5)
    assert encoder.largest == 5  # memory bounded by the batch, not by N
    torch.testing.assert_close(adv, whole_adv, rtol=0, atol=1e-12)
    torch.testing.assert_close(gap, whole_gap, rtol=1e-10, atol=1e-12)


def test_lipschitz_lower_in_batches_equals_one_batch():
    from clbounds.theory.geometry import lipschitz_lower

    encoder = _LargestBatch()
    x1, x2 = torch.rand(23, 3, 2, 2, generator=gen(41), dtype=F64), torch.rand(23, 3, 2, 2, generator=gen(42), dtype=F64)
    whole = lipschitz_lower(encoder.eval(), x1, x2)
    encoder.largest = 0
    assert lipschitz_lower(encoder, x1, x2, batch_size=4) == whole and encoder.largest == 4


# ---------------------------------------------------------------- contrastive_attack


def test_contrastive_attack_increases_infonce_and_stays_in_ball():
    encoder = mlp(12, 5, seed=22)
    g = gen(23)
    x1 = torch.rand(8, 3, 2, 2, generator=g, dtype=F64)
    x2 = (x1 + 0.05 * torch.randn(8, 3, 2, 2, generator=g, dtype=F64)).clamp(0, 1)
    eps = 8 / 255
    x2_adv = contrastive_attack(encoder, x1, x2, eps=eps, generator=gen(24))
    with torch.no_grad():
        before = info_nce(encoder(x1), encoder(x2)).item()
        after = info_nce(encoder(x1), encoder(x2_adv)).item()
    assert after > before
    assert (x2_adv - x2).abs().max() <= eps + 1e-12 and x2_adv.min() >= 0 and x2_adv.max() <= 1
    assert all(p.grad is None for p in encoder.parameters())


def test_contrastive_attack_with_discriminator_term():
    encoder = mlp(12, 5, seed=25)
    torch.manual_seed(26)
    discriminator = nn.Linear(5, 1).to(F64)
    discriminator.train()
    g = gen(27)
    x1 = torch.rand(8, 3, 2, 2, generator=g, dtype=F64)
    x2 = torch.rand(8, 3, 2, 2, generator=g, dtype=F64)

    def bce_adv(x_adv: torch.Tensor) -> float:
        with torch.no_grad():
            logit = discriminator(F.normalize(encoder(x_adv), dim=1)).reshape(-1)
            return F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit)).item()

    plain = contrastive_attack(encoder, x1, x2, eps=0.1, alpha=0.02, steps=10, generator=gen(28))
    weighted = contrastive_attack(
        encoder, x1, x2, eps=0.1, alpha=0.02, steps=10, discriminator=discriminator, d_w=100.0, generator=gen(28)
    )
    # The −d_w·BCE(D(z), 0) term makes the attack lower that BCE.
    assert bce_adv(weighted) < bce_adv(plain)
    assert discriminator.training and all(p.grad is None for p in discriminator.parameters())
