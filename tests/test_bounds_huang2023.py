"""Tests for bounds.huang2023: statements vs numbers, a separated simplex, failing assumptions."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clbounds.bounds import huang2023 as h
from clbounds.theory import geometry

from conftest import huang_terms

F64 = torch.float64
SYMS = (h.sigma, h.R, h.p_min, h.L, h.delta, h.eps, h.r, h.Delta_mu, h.mu_inner)
# Lambdified once: sympy's lambdify and subs are slow per example.
THEOREM1_RHS = sp.lambdify((h.sigma, h.R), h.THEOREM1.rhs, "math")
CONDITION_RHS = sp.lambdify(SYMS[:-1], h.CENTER_CONDITION.rhs, "math")
CONDITION = sp.lambdify(SYMS, h.CENTER_CONDITION, "math")
RHO = sp.lambdify(SYMS[:-2], h.RHO_MAX, "math")


def _terms(**over) -> dict[str, float]:
    return huang_terms(**over)


def _c_m(m: int) -> float:
    return min(m * (m - 1) / 2, 4 * (m - 1))


finite = st.floats(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(s=finite, r_eps=finite, p=st.floats(0.01, 0.5), lip=st.floats(0, 100), dl=st.floats(0, 1), e=st.floats(0.01, 2), dmu=finite, mu=st.floats(-1, 1), err=finite)
def test_theorem1_numbers_match_the_lambdified_statement(s, r_eps, p, lip, dl, e, dmu, mu, err):
    t = _terms(sigma=s, misalignment_rate=r_eps, min_class_probability=p, lipschitz_upper=lip, feature_norm_min=1.0, sigma_delta=dl,
               misalignment_eps=e, delta_mu=dmu, center_max_inner=mu, nearest_center_error=err)
    c = h.theorem1(t)
    assert c.bound == pytest.approx(THEOREM1_RHS(s, r_eps), abs=1e-12)
    cond_rhs = CONDITION_RHS(s, r_eps, p, lip, dl, e, 1.0, dmu)
    a = c.details["assumptions"]["center_condition"]
    assert a["rhs"] == pytest.approx(cond_rhs, rel=1e-12, abs=1e-12)
    assert a["met"] == bool(CONDITION(s, r_eps, p, lip, dl, e, 1.0, dmu, mu)) or abs(a["margin"]) < 1e-12
    assert c.details["inputs"]["rho_max"] == pytest.approx(RHO(s, r_eps, p, lip, dl, e, 1.0), rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(r_eps=finite, align=st.floats(0, 4), e=st.floats(0.05, 2), m=st.integers(2, 20), l1=st.floats(-1, 1), l1b=st.floats(0, 50), s=finite)
def test_theorem2_and_corollaries_match_the_lambdified_statements(r_eps, align, e, m, l1, l1b, s):
    t = _terms(misalignment_rate=r_eps, alignment=align, misalignment_eps=e, misalignment_views=m, huang_infonce_L1_unit=l1, huang_barlow_L1=l1b, sigma=s)
    c2 = h.theorem2(t)
    assert c2.bound == pytest.approx(sp.lambdify((h.c_M, h.eps, h.L_align), h.THEOREM2.rhs, "math")(_c_m(m), e, align), rel=1e-12, abs=1e-12)
    ci = h.corollary_infonce(t)
    assert ci.bound == pytest.approx(sp.lambdify((h.sigma, h.c_M, h.eps, h.L1), h.COROLLARY_INFONCE.rhs, "math")(s, _c_m(m), e, l1), rel=1e-12)
    cb = h.corollary_barlow(t)
    f = sp.lambdify((h.sigma, h.c_M, h.eps, h.d, h.L1), h.COROLLARY_BARLOW.rhs, "math")
    assert cb.bound == pytest.approx(f(s, _c_m(m), e, 64, l1b), rel=1e-12)
    # Theorem 2 implies the paper's form R² ≤ η² L_align whenever R ≤ 1
    assert not c2.holds or r_eps**2 <= c2.bound + 1e-12


@settings(max_examples=40, deadline=None)
@given(l2=st.floats(0.5, 10), p=st.floats(0.05, 0.5), e=st.floats(0.01, 1.5), mu=st.floats(-1, 1), l2b=st.floats(0, 500), d=st.integers(8, 256), k=st.integers(2, 8))
def test_theorems_3_and_4_match_the_lambdified_statements_and_required_tau(l2, p, e, mu, l2b, d, k):
    t = _terms(huang_infonce_L2_unit=l2, min_class_probability=p, misalignment_eps=e, center_max_inner_projection=mu, huang_barlow_L2=l2b, embedding_dim=d, num_classes=k)
    c3 = h.theorem3(t)
    rhs3 = sp.lambdify((h.L2, h.tau_err, h.p_min, h.eps), h.THEOREM3.rhs, "mpmath")
    if c3.bound is not None:
        assert c3.bound == pytest.approx(float(rhs3(l2, 0.0, p, e)), rel=1e-9, abs=1e-9)
    # at the required τ the statement is an equality
    assert float(rhs3(l2, c3.details["required_tau"], p, e)) == pytest.approx(mu, abs=1e-7)
    c4 = h.theorem4(t)
    rhs4 = sp.lambdify((h.L2, h.tau_err, h.p_min, h.d, h.K), h.THEOREM4.rhs, "math")
    arg = 2 / p**2 * (l2b - (d - k) / 2)
    if arg >= 0:
        # sympy expands the argument, so compare squares with a tolerance for that cancellation
        assert c4.bound**2 == pytest.approx(rhs4(l2b, 0.0, p, d, k) ** 2, rel=1e-9, abs=1e-12 * d / p**2)
    else:
        assert c4.bound is None and c4.holds is None and not c4.assumptions_met and "square root" in c4.details["reason"]
    if mu > 0 and mu**2 > 1e-12 * d / p**2:  # below that, rounding can make the root's argument negative
        # compared squared: the square root amplifies rounding when μ is tiny
        assert rhs4(l2b, c4.details["required_tau"], p, d, k) ** 2 == pytest.approx(mu**2, rel=1e-9, abs=1e-12 * d / p**2)


def test_separated_simplex_satisfies_theorem_1_and_the_bound_holds():
    """K unit simplex centres, views within ε of their centre, σ = 1, tiny Lδ: all hypotheses hold."""
    k, m, per = 4, 3, 5
    centers = torch.eye(k, dtype=F64) - 1 / k
    centers = centers / centers.norm(dim=1, keepdim=True)  # regular simplex: μ_kᵀμ_l = −1/(K−1)
    y = torch.arange(k).repeat_interleave(per)
    g = torch.Generator().manual_seed(0)
    views = torch.stack([torch.nn.functional.normalize(centers[y] + 0.01 * torch.randn(len(y), k, generator=g, dtype=F64), dim=1) for _ in range(m)])
    z = views[0]
    mu = geometry.class_centers(z, y, k)
    sep = geometry.center_separation(mu)
    eps = 0.1
    t = _terms(
        nearest_center_error=geometry.nearest_center_error(z, y, mu).item(), sigma=1.0, misalignment_rate=geometry.misalignment_rate(views, eps).item(),
        min_class_probability=1 / k, lipschitz_upper=1.0, feature_norm_min=1.0, sigma_delta=0.001, misalignment_eps=eps,
        center_max_inner=sep["max_inner"].item(), delta_mu=sep["delta_mu"].item(), alignment=geometry.alignment(views[0], views[1]).item(), misalignment_views=m,
    )
    assert t["center_max_inner"] == pytest.approx(-1 / (k - 1), abs=0.02) and t["misalignment_rate"] == 0.0
    c = h.evaluate(t)
    assert c.assumptions_met and c.holds and c.measured == 0.0 and c.bound == 0.0
    assert c.details["assumptions"]["center_condition"]["margin"] > 0.4
    c2 = h.theorem2(t)
    assert c2.holds and c2.assumptions_met


def test_failing_centre_condition_says_which_and_by_how_much():
    c = h.evaluate(_terms(center_max_inner=0.9, lipschitz_upper=1000.0))
    a = c.details["assumptions"]["center_condition"]
    assert not c.assumptions_met and c.failed_assumptions == ["center_condition"]
    assert a["margin"] < 0 and a["lhs"] == 0.9 and a["margin"] == pytest.approx(a["rhs"] - 0.9)
    assert a["margin_if_L_were_0"] > a["margin"]  # how much of the failure is the Lipschitz term
    assert c.holds is not None  # the inequality is still evaluated and reported


def test_pairwise_markov_is_exact_on_the_sample():
    g = torch.Generator().manual_seed(1)
    dist = torch.rand(200, generator=g, dtype=F64) * 1.5
    eps = 0.7
    t = _terms(misalignment_rate_pairwise=(dist > eps).double().mean().item(), alignment=dist.pow(2).mean().item(), misalignment_eps=eps)
    assert h.theorem2(t).details["pairwise"]["holds"] is True


def test_both_spaces_and_missing_terms_are_reported():
    checks = {c.theorem: c for c in h.evaluate_all(_terms())}
    assert set(checks) == set(h.THEOREMS)
    assert checks["huang2023.theorem1[projection]"].details["inputs"]["L"] == pytest.approx(50.0 * 3.0 / 1.5)
    assert checks["huang2023.theorem1"].details["inputs"]["L"] == pytest.approx(50.0 / 2.0)
    partial = {k: v for k, v in _terms().items() if k != "lipschitz_upper_projector"}
    missing = {c.theorem: c for c in h.evaluate_all(partial)}
    assert missing["huang2023.theorem1[projection]"].details["missing_terms"] == ["lipschitz_upper_projector"]
    assert missing["huang2023.theorem1"].assumptions_met is not None and "missing_terms" not in missing["huang2023.theorem1"].details
