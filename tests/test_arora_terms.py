"""Tests for theory.arora: the terms of the Arora et al. 2019 mean-classifier bound (PAPERS.md §6).

Float64 throughout; closed forms, and brute-force enumeration with plain Python loops over
every (anchor, positive, negatives) tuple of tiny discrete distributions.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clbounds.theory.arora import (
    class_probabilities,
    collision_floor,
    collision_probability,
    logistic_loss,
    mean_classifier_loss,
    mean_classifier_loss_exact,
    unsupervised_loss,
    unsupervised_loss_exact,
    unsupervised_loss_practical,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- brute force: plain Python over every tuple ------------------------------------------


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _brute_terms(f: list[list[float]], y: list[int], m: int) -> dict[str, float]:
    """L_un^M, L_sup^{μ,M}, τ_M, γ_M by enumerating every tuple of the empirical distribution."""
    n = len(y)
    classes = sorted(set(y))
    members = {c: [i for i in range(n) if y[i] == c] for c in classes}
    p = {c: len(members[c]) / n for c in classes}
    mu = {c: [sum(f[i][d] for i in members[c]) / len(members[c]) for d in range(len(f[0]))] for c in classes}
    l_un = 0.0
    for i in range(n):
        for j in members[y[i]]:
            for negs in itertools.product(range(n), repeat=m):
                v = [_dot(f[i], f[j]) - _dot(f[i], f[k]) for k in negs]
                l_un += (1 / n) * (1 / len(members[y[i]])) * (1 / n) ** m * math.log(1 + sum(math.exp(-t) for t in v))
    tau = gamma = l_sup_num = 0.0
    for a in classes:
        for negs in itertools.product(classes, repeat=m):
            w = p[a] * math.prod(p[c] for c in negs)
            hits = sum(c == a for c in negs)
            if hits:
                tau += w
                gamma += w * math.log(1 + hits)
                continue
            q = set(negs)
            for i in members[a]:
                loss = math.log(1 + sum(math.exp(-(_dot(f[i], mu[a]) - _dot(f[i], mu[c]))) for c in q))
                l_sup_num += w * loss / len(members[a])
    return {"l_un": l_un, "l_sup": l_sup_num / (1 - tau), "tau": tau, "gamma": gamma}


def _tiny(seed: int, n: int = 5, k: int = 3, d: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    f = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=g)])
    return f, y


# ---- closed forms ------------------------------------------------------------------------


def test_logistic_loss_closed_form_and_stability():
    v = torch.tensor([[0.0], [1.0], [-2.0]], dtype=F64)
    expected = [math.log(2), math.log(1 + math.exp(-1)), math.log(1 + math.exp(2))]
    assert torch.allclose(logistic_loss(v), torch.tensor(expected, dtype=F64))
    assert logistic_loss(torch.zeros(3, 4, dtype=F64)).allclose(torch.full((3,), math.log(5), dtype=F64))
    big = logistic_loss(torch.tensor([[-1000.0, 1000.0]], dtype=F64))
    assert torch.isfinite(big).all() and math.isclose(big.item(), 1000.0, rel_tol=1e-12)


def test_class_probabilities_and_collision_closed_forms():
    p = class_probabilities(torch.tensor([0, 1, 1, 2, 2, 2]))
    assert p.tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert collision_probability(p, 1).item() == pytest.approx(float((p**2).sum()))
    # τ_M = Σ p_c (1 − (1 − p_c)^M), written out for M = 3
    assert collision_probability(p, 3).item() == pytest.approx(sum(q * (1 - (1 - q) ** 3) for q in p.tolist()))
    assert collision_floor(p, 1).item() == pytest.approx(math.log(2) * float((p**2).sum()))
    # multiplicity 2, M = 1: a collision gives log(1 + 2)
    assert collision_floor(p, 1, multiplicity=2).item() == pytest.approx(math.log(3) * float((p**2).sum()))


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("mult", [1, 2])
def test_collision_terms_match_enumeration_over_class_tuples(m, mult):
    p = [0.2, 0.5, 0.3]
    tau = gamma = 0.0
    for a in range(3):
        for negs in itertools.product(range(3), repeat=m):
            w = p[a] * math.prod(p[c] for c in negs)
            hits = sum(c == a for c in negs)
            tau += w * (hits > 0)
            gamma += w * math.log(1 + mult * hits)
    pt = torch.tensor(p, dtype=F64)
    assert collision_probability(pt, m).item() == pytest.approx(tau, rel=1e-12)
    assert collision_floor(pt, m, multiplicity=mult).item() == pytest.approx(gamma, rel=1e-12)


def test_collision_floor_is_finite_for_many_negatives_and_degenerate_probabilities():
    p = torch.tensor([1.0, 0.0], dtype=F64)
    assert collision_probability(p, 5).item() == 1.0
    assert collision_floor(p, 5).item() == pytest.approx(math.log(6))  # every draw collides
    big = collision_floor(torch.full((10,), 0.1, dtype=F64), 2000, multiplicity=2)
    assert math.isfinite(big.item()) and big.item() == pytest.approx(math.log(1 + 2 * 200), rel=0.01)
    with pytest.raises(ValueError):
        collision_probability(torch.tensor([0.5, 0.6]), 1)
    with pytest.raises(ValueError):
        collision_floor(torch.tensor([0.5, 0.5]), 0)


# ---- against brute force -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_one_negative_terms_match_brute_force(seed):
    f, y = _tiny(seed)
    brute = _brute_terms(f.tolist(), y.tolist(), 1)
    assert unsupervised_loss_exact(f, y).item() == pytest.approx(brute["l_un"], rel=1e-12)
    assert mean_classifier_loss_exact(f, y).item() == pytest.approx(brute["l_sup"], rel=1e-12)
    assert collision_probability(class_probabilities(y), 1).item() == pytest.approx(brute["tau"], rel=1e-12)


def test_exact_unsupervised_loss_is_independent_of_the_block_size():
    f, y = torch.randn(40, 3, generator=gen(3), dtype=F64), torch.arange(40) % 4
    assert torch.allclose(unsupervised_loss_exact(f, y, block_entries=7), unsupervised_loss_exact(f, y), rtol=1e-13)


@pytest.mark.parametrize("m", [1, 2])
def test_monte_carlo_terms_agree_with_brute_force_within_their_standard_error(m):
    f, y = _tiny(4, n=5, k=3)
    brute = _brute_terms(f.tolist(), y.tolist(), m)
    un = unsupervised_loss(f, y, m, samples=4000, generator=gen(5))
    sup = mean_classifier_loss(f, y, m, samples=4000, generator=gen(6))
    # Against the sample's own exact value only the Monte-Carlo part of the error counts.
    assert abs(un["loss"].item() - brute["l_un"]) < 5 * un["mc_stderr"].item() + 1e-12
    assert abs(sup["loss"].item() - brute["l_sup"]) < 5 * sup["mc_stderr"].item() + 1e-12
    assert 0 < un["mc_stderr"].item() < 0.05 and un["stderr"].item() >= un["mc_stderr"].item() * 0.5


def test_monte_carlo_mean_classifier_with_two_classes_is_exact():
    # With two classes the only possible negative class is the other one: no randomness left,
    # and with balanced classes the anchor-class law p_a(1 − p_a)^M/(1 − τ_M) does not depend on M.
    f, y = torch.randn(6, 3, generator=gen(7), dtype=F64), torch.tensor([0, 0, 1, 1, 1, 0])
    out = mean_classifier_loss(f, y, num_negatives=3, samples=5, generator=gen(8))
    assert out["mc_stderr"].item() == 0.0
    assert out["loss"].item() == pytest.approx(mean_classifier_loss_exact(f, y).item(), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 6), k=st.integers(2, 3), m=st.integers(1, 2), scale=st.floats(0.1, 3.0))
def test_arora_inequality_holds_exactly_on_random_tiny_distributions(seed, n, k, m, scale):
    """Arora et al.'s bound L_sup ≤ (L_un − γ)/(1 − τ), enumerated exactly (PAPERS.md §6)."""
    f, y = _tiny(seed, n=n, k=k)
    brute = _brute_terms((scale * f).tolist(), y.tolist(), m)
    assert brute["l_sup"] <= (brute["l_un"] - brute["gamma"]) / (1 - brute["tau"]) + 1e-12
    # and the library's closed forms agree with the enumeration
    p = class_probabilities(y)
    assert collision_floor(p, m).item() == pytest.approx(brute["gamma"], rel=1e-12, abs=1e-15)


# ---- degenerate input and dtype/device -----------------------------------------------------


def test_degenerate_inputs_are_finite_or_clear_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        unsupervised_loss_exact(torch.randn(4, 2, dtype=F64), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 classes"):
        mean_classifier_loss_exact(torch.randn(4, 2, dtype=F64), torch.ones(4, dtype=torch.long))
    zero = torch.zeros(6, 3, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert unsupervised_loss_exact(zero, y).item() == pytest.approx(math.log(2))  # every margin is 0
    assert mean_classifier_loss_exact(zero, y).item() == pytest.approx(math.log(2))
    # labels with gaps (class 1 absent) are compacted rather than giving an empty class
    f = torch.randn(4, 2, generator=gen(9), dtype=F64)
    assert torch.isclose(mean_classifier_loss_exact(f, torch.tensor([0, 2, 0, 2])), mean_classifier_loss_exact(f, torch.tensor([0, 1, 0, 1])))
    with pytest.raises(ValueError):
        unsupervised_loss(f, torch.tensor([0, 1, 0, 1]), num_negatives=1, samples=0)


def test_float32_input_gives_float64_result_on_the_input_device():
    f32 = torch.randn(12, 4, generator=gen(10))
    y = torch.arange(12) % 3
    out = unsupervised_loss_exact(f32, y)
    assert out.dtype == F64 and out.device == f32.device
    assert out.item() == pytest.approx(unsupervised_loss_exact(f32.double(), y).item(), rel=1e-12)
    mc = mean_classifier_loss(f32, y, 2, samples=3, generator=gen(11))
    assert mc["loss"].dtype == F64


def test_per_anchor_terms_average_to_the_losses_and_give_their_standard_errors():
    f, y = torch.randn(30, 3, generator=gen(11), dtype=F64), torch.arange(30) % 3
    for fn in (unsupervised_loss_exact, mean_classifier_loss_exact):
        anchors = fn(f, y, per_anchor=True)
        assert anchors.shape == (30,) and anchors.mean().item() == pytest.approx(fn(f, y).item(), rel=1e-13)
    v = torch.randn(30, 3, generator=gen(12), dtype=F64)
    anchors = unsupervised_loss_practical(f, v, v, per_anchor=True)
    assert anchors.mean().item() == pytest.approx(unsupervised_loss_practical(f, v, v).item(), rel=1e-13)


def test_the_anchor_standard_error_of_a_monte_carlo_term_covers_the_spread_over_samples():
    # Fresh samples of one population: the spread of the estimate across samples is what the
    # reported (anchor + draw) standard error estimates, not the draw-only part.
    centers = torch.randn(3, 4, generator=gen(13), dtype=F64)
    losses, errors = [], []
    for s in range(60):
        g = gen(100 + s)
        y = torch.arange(60) % 3
        f = centers[y] + 0.8 * torch.randn(60, 4, generator=g, dtype=F64)
        out = mean_classifier_loss(f, y, 2, samples=4, generator=g)
        losses.append(out["loss"].item())
        errors.append(out["stderr"].item())
    spread = torch.tensor(losses).std().item()
    assert 0.6 < (sum(errors) / len(errors)) / spread < 1.6


@pytest.mark.parametrize("n,k", [(17, 3), (12, 4)])
def test_leave_one_out_losses_match_recomputing_without_each_input(n, k):
    # The closed forms of the jackknife against the plain recomputation on n − 1 inputs; the
    # last input is alone in its class, so deleting it removes a class.
    a, b, q = (torch.randn(n, 3, generator=gen(30 + i), dtype=F64) for i in range(3))
    y = torch.cat([torch.arange(n - 1) % k, torch.tensor([k])])
    keep = lambda t, m: t[torch.arange(n) != m]  # noqa: E731
    cases = [
        (unsupervised_loss_practical(a, b, q, leave_one_out=True), lambda m: unsupervised_loss_practical(keep(a, m), keep(b, m), keep(q, m))),
        (unsupervised_loss_exact(a, y, leave_one_out=True, block_entries=50), lambda m: unsupervised_loss_exact(keep(a, m), keep(y, m))),
        (mean_classifier_loss_exact(a, y, leave_one_out=True), lambda m: mean_classifier_loss_exact(keep(a, m), keep(y, m))),
    ]
    for loo, brute in cases:
        assert loo.shape == (n,)
        assert torch.allclose(loo, torch.stack([brute(m) for m in range(n)]), rtol=0, atol=1e-13)


def test_the_jackknife_of_a_mean_is_its_standard_error_and_unbiased():
    from clbounds.theory.uncertainty import jackknife, stderr_of_mean

    x = torch.randn(25, generator=gen(40), dtype=F64)
    loo = (x.sum() - x) / 24
    out = jackknife(x.mean(), loo)
    assert out["stderr"].item() == pytest.approx(stderr_of_mean(x).item(), rel=1e-12)
    assert abs(out["bias"].item()) < 1e-14
    # a plug-in variance (divides by n) has bias −σ²/n, which the jackknife recovers exactly
    var = lambda v: ((v - v.mean()) ** 2).mean()  # noqa: E731
    loo_var = torch.stack([var(x[torch.arange(25) != m]) for m in range(25)])
    assert jackknife(var(x), loo_var)["bias"].item() == pytest.approx(-x.var(unbiased=True).item() / 25, rel=1e-10)
