"""Tests for bounds.ssa_clr [reconstructed]: statements vs numbers, the constants of the derivation,
a Monte-Carlo case where the NT-Xent Arora piece must hold, and failing assumptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from clbounds.bounds import ssa_clr as s
from clbounds.theory.arora import class_probabilities, collision_floor, collision_probability, mean_classifier_loss
from clbounds.theory.losses import info_nce
from clbounds.theory.shift import infonce_range

PB_SYMS = (s.L_sharp, s.R_range, s.n, s.k, s.w_dist, s.rho, s.delta)
PB_RHS = sp.lambdify(PB_SYMS, s.PAC_BAYES.rhs, "math")
ASSEMBLED_RHS = sp.lambdify((*PB_SYMS, s.gap, s.gamma, s.tau), s.ASSEMBLED.rhs, "math")
ARORA_RHS = sp.lambdify((s.L_prac, s.gap, s.gamma, s.tau), s.IDEAL_ARORA.rhs, "math")


def _terms(**over) -> dict[str, float]:
    t = {
        "arora_mean_classifier_loss_ntxent": 1.2, "info_nce": 4.0, "shift_loss_gap": 0.5, "arora_collision_ntxent": 0.6, "arora_collision_floor_ntxent": 1.5,
        "infonce_range": 8.0, "ssl_loss_heldout": 4.1, "ssl_sharp_loss_train": 4.05, "ssl_loss_train": 4.0, "ssl_loss_range": 8.0, "pac_bayes_units": 100,
        "num_parameters": 1000, "weight_distance": 2.0, "sharpness_rho": 0.05, "weight_norm": 10.0, "sharpness_average": 0.01, "shift_js": 0.2,
    }
    t.update(over)
    return t


@settings(max_examples=50, deadline=None)
@given(l_sharp=st.floats(0, 10), r=st.floats(0.1, 20), n=st.integers(8, 10_000), k=st.integers(1, 10**7), w=st.floats(0, 100), rho=st.floats(1e-3, 1),
       gap=st.floats(-2, 2), gam=st.floats(0, 5), col=st.floats(0, 0.999), l_prac=st.floats(0, 10))
def test_statements_match_evaluate(l_sharp, r, n, k, w, rho, gap, gam, col, l_prac):
    t = _terms(ssl_sharp_loss_train=l_sharp, ssl_loss_range=r, pac_bayes_units=n, num_parameters=k, weight_distance=w, sharpness_rho=rho,
               shift_loss_gap=gap, arora_collision_floor_ntxent=gam, arora_collision_ntxent=col, info_nce=l_prac)
    assert s.pac_bayes(t).bound == pytest.approx(PB_RHS(l_sharp, r, n, k, w, rho, s.DELTA), rel=1e-12)
    assert s.assembled(t).bound == pytest.approx(ASSEMBLED_RHS(l_sharp, r, n, k, w, rho, s.DELTA, gap, gam, col), rel=1e-9, abs=1e-9)
    assert s.ideal_arora(t).bound == pytest.approx(ARORA_RHS(l_prac, gap, gam, col), rel=1e-12, abs=1e-12)
    tv = s.shift_tv(t)
    assert tv.bound == pytest.approx(float(s.SHIFT_TV.rhs.subs({s.R_range: t["infonce_range"], s.TV: 1}))) and tv.measured == abs(gap)


def test_pac_bayes_constants():
    # Laurent–Massart: with σ² = ρ²/(k + 2√(k ln n) + 2 ln n), P(‖ε‖ > ρ) ≤ 1/n.
    for k in (1, 10, 1000, 10**6):
        for n in (8, 100, 10**5):
            threshold = k + 2 * math.sqrt(k * math.log(n)) + 2 * math.log(n)
            assert stats.chi2.sf(threshold, k) <= 1 / n
    # KL(N(θ, σ²I) ‖ N(θ₀, σ²I)) = ‖θ − θ₀‖²/(2σ²), against the general Gaussian KL formula.
    k, n, rho, w = 7, 50, 0.3, 1.7
    var = rho**2 / (k + 2 * math.sqrt(k * math.log(n)) + 2 * math.log(n))
    general = 0.5 * (k * var / var + w**2 / var - k + k * math.log(var / var))
    c = s.pac_bayes_complexity(2.0, n, k, w, rho)
    assert c["kl"] == pytest.approx(general, rel=1e-12)
    assert c["tail"] == pytest.approx(2.0 / n)
    assert c["sample"] == pytest.approx(2.0 * math.sqrt((general + math.log(2 * math.sqrt(n) / s.DELTA)) / (2 * n)), rel=1e-12)
    assert c["complexity"] == pytest.approx(c["tail"] + c["sample"])


def test_ntxent_arora_piece_holds_on_a_monte_carlo_population():
    """Classes of noisy embeddings; ideal NT-Xent by sampling batches; the mean classifier with the
    population means (from a large sample): the multiplicity-2 collision floor must keep the bound valid."""
    g = torch.Generator().manual_seed(0)
    k, b, tau, batches = 3, 4, 0.5, 400
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    proto = torch.randn(k, 4, generator=g, dtype=torch.float64)

    def sample(y: torch.Tensor) -> torch.Tensor:
        return proto[y] + 0.7 * torch.randn(len(y), 4, generator=g, dtype=torch.float64)

    losses = []
    for _ in range(batches):
        y = torch.multinomial(p, b, replacement=True, generator=g)
        losses.append(info_nce(sample(y), sample(y), temperature=tau).item())
    l_ideal = float(np.mean(losses))
    y_big = torch.multinomial(p, 4000, replacement=True, generator=g)
    f_big = torch.nn.functional.normalize(sample(y_big), dim=1) / math.sqrt(tau)
    sup = mean_classifier_loss(f_big, y_big, b - 1, samples=8, generator=g)["loss"].item()
    p_hat = class_probabilities(y_big)
    t = _terms(info_nce=l_ideal, shift_loss_gap=0.0, arora_mean_classifier_loss_ntxent=sup,
               arora_collision_ntxent=collision_probability(p_hat, b - 1).item(), arora_collision_floor_ntxent=collision_floor(p_hat, b - 1, multiplicity=2).item())
    c = s.ideal_arora(t)
    assert c.assumptions_met and c.holds
    assert c.bound - c.measured > 10 * float(np.std(losses)) / math.sqrt(batches)  # far beyond the sampling error
    lo, hi = infonce_range(2 * b - 2, tau)
    assert lo <= l_ideal <= hi  # the range the PAC-Bayes piece assumes


def test_failing_assumptions_are_reported_with_margins():
    c = s.pac_bayes(_terms(pac_bayes_units=4, sharpness_average=-0.02))
    assert not c.assumptions_met and set(c.failed_assumptions) == {"enough_units", "gaussian_noise_does_not_help"}
    assert c.details["assumptions"]["enough_units"]["margin"] == -4.0
    assert c.details["assumptions"]["gaussian_noise_does_not_help"]["margin"] == pytest.approx(-0.02)
    one = s.pac_bayes(_terms(pac_bayes_units=1))  # ln n = 0 and n − 1 = 0: no bound, no crash
    assert one.bound is None and one.holds is None and one.details["assumptions"]["enough_units"]["margin"] == -7.0
    assert s.assembled(_terms(pac_bayes_units=0)).bound is None
    full = s.assembled(_terms(arora_collision_ntxent=1.0))
    assert full.bound is None and "collision_below_one" in full.failed_assumptions
    ok = s.evaluate(_terms())
    assert ok.assumptions_met and ok.holds and ok.details["parts"]["sharpness_part"] == pytest.approx(0.05)
    assert s.shift_tv(_terms()).details["tv_pair_lower_bound_from_js"] == pytest.approx(0.2 / math.log(2))


def test_evaluate_all_reports_missing_terms():
    checks = {c.theorem: c for c in s.evaluate_all({"shift_loss_gap": 0.1, "infonce_range": 5.0})}
    assert set(checks) == set(s.THEOREMS)
    assert checks["ssa_clr.shift_tv"].holds is True
    assert "ssl_sharp_loss_train" in checks["ssa_clr.pac_bayes"].details["missing_terms"]


# ───────────────────────── sequential stopping of the ρ-ball ascent ─────────────────────────


def test_ascent_decides_only_when_the_lower_limit_clears_the_ceiling_and_the_heldout_loss():
    assert s.ascent_decides(4.0, 900.0, 4.1, 0.01, 4.84)
    assert not s.ascent_decides(4.0, 0.5, 4.1, 0.01, 4.84)  # 4.5 is below log(2B - 1)
    assert not s.ascent_decides(4.0, 2.0, 6.0, 0.01, 4.84)  # above the ceiling, below the held-out loss
    assert not s.ascent_decides(4.0, 2.0, 5.98, 0.01, 4.84)  # 6.0 - 5.98 inside 3 standard errors
    assert s.ascent_decides(4.0, 2.0, 5.9, 0.01, 4.84)
    assert not s.ascent_decides(float("nan"), 900.0, 4.1, 0.01, 4.84) and not s.ascent_decides(4.0, float("inf"), 4.1, 0.01, 4.84)


def _stopped(terms: dict[str, float], factors=(0.5, 1.0, 2.0)) -> dict[str, float]:
    """The rows a sequential measure stores, in place of the ascended ones, when it skips the
    ascent at ``factors``: L̂ for L̂_ρ, and the flags (only those rows: the caller overlays them)."""
    out = {}
    for f in factors:
        out["ssl_sharp_loss_train" if f == 1 else f"ssl_sharp_loss_train@rho_factor={f:g}"] = terms["ssl_loss_train"]
        out[f"sharp_ascent_skipped@rho_factor={f:g}"] = 1.0
    return out


@settings(max_examples=200, deadline=None)
# one radius stopped, the other two ascended (a fresh-clone run found the helper overwriting the ascended rows)
@example(loss=1.0, heldout=1.0, se=0.0, w=0.0078125, n=45, extra=0.0, extra2=2.0, mc=1.0, mc_se=0.0, col=0.0)
# the assembled lower limit above the measured side but inside its margin (the full bound resolved): no verdict, not "not resolved"
@example(loss=4.0, heldout=1.0, se=0.0, w=0.0, n=88, extra=1.0, extra2=0.0, mc=4.0, mc_se=0.25, col=0.0)
@given(loss=st.floats(0.5, 6), heldout=st.floats(0.5, 8), se=st.floats(0, 0.3), w=st.floats(0, 50), n=st.integers(2, 256),
       extra=st.floats(0, 3), extra2=st.floats(0, 3), mc=st.floats(0.5, 6), mc_se=st.floats(0, 0.3), col=st.floats(0, 0.95))
def test_a_stopped_ascent_gives_the_verdicts_of_the_full_one(loss, heldout, se, w, n, extra, extra2, mc, mc_se, col):
    """Whatever the ascent would have found (L̂_ρ = L̂ + extra ≥ L̂), a radius the rule stops
    at has the verdict of the full ascent: pac_bayes and the tightest always, and the assembled
    bound either the same verdict or 'not evaluated' with the reason (never another verdict)."""
    from clbounds.bounds.common import verdict
    from clbounds.experiments.pipeline.bounds_step import evaluate_terms

    b = 64
    terms = _terms(ssl_loss_train=loss, ssl_loss_heldout=heldout, ssl_loss_heldout_stderr=se, weight_distance=w, pac_bayes_units=n,
                   ssl_loss_range=infonce_range(2 * b - 2, 0.5)[1] - infonce_range(2 * b - 2, 0.5)[0], ssl_loss_constant_encoder=math.log(2 * b - 1),
                   arora_mean_classifier_loss_ntxent=mc, arora_mean_classifier_loss_ntxent_stderr=mc_se, arora_collision_ntxent=col,
                   arora_constant_encoder_loss_ntxent=math.log(2))
    full = terms | {"ssl_sharp_loss_train": loss + extra, "ssl_sharp_loss_train@rho_factor=0.5": loss + extra2, "ssl_sharp_loss_train@rho_factor=2": loss + extra + extra2}
    decided = [f for f in (0.5, 1.0, 2.0) if s.ascent_decides(loss, s.pac_bayes_complexity(terms["ssl_loss_range"], n, 1000, w, 0.05 * f)["complexity"],
                                                             heldout, se, math.log(2 * b - 1))]
    stopped = {k: v for k, v in full.items()} | _stopped(terms, decided)
    by_theorem = lambda ts: {c.theorem: c for c in evaluate_terms(ts) if c.theorem.startswith("ssa_clr.")}
    a, z = by_theorem(full), by_theorem(stopped)
    if 1.0 in decided:
        assert verdict(z["ssa_clr.pac_bayes"]) == verdict(a["ssa_clr.pac_bayes"]) and z["ssa_clr.pac_bayes"].details.get("lower_limit")
        assert verdict(z["ssa_clr.assembled"]) in (verdict(a["ssa_clr.assembled"]), "not evaluated")
    if decided:
        assert verdict(z["ssa_clr.pac_bayes_tightest"]) == verdict(a["ssa_clr.pac_bayes_tightest"])


def test_the_tightest_bound_ignores_the_unavailable_rows_of_a_radius():
    terms = _terms(**{"ssl_sharp_loss_train@rho_factor=2": 4.2, "ssl_sharp_loss_train@rho_factor=0.5_unavailable": 1.0})
    check = s.pac_bayes_tightest(terms)
    assert [c["rho"] for c in check.details["grid"]] == [0.05, 0.1]
