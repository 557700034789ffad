"""Tests for bounds.robust_cl [reconstructed]: the √2-Lipschitz transfer bound, exactly on a linear
model where the sup over the attack ball is attained at a vertex, and the proxy route."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from clbounds.bounds import robust_cl as rc

TRANSFER_RHS = sp.lambdify((rc.L_clean, rc.W_norm, rc.gap), rc.LIPSCHITZ_TRANSFER.rhs, "math")
PROXY_RHS = sp.lambdify((rc.a, rc.b, rc.c, rc.const, rc.L_adv, rc.L_ben, rc.S_rho, rc.D_js), rc.ADVERSARIAL_INFONCE.rhs, "math")


def _ce(logits: np.ndarray, y: int) -> float:
    return float(logsumexp(logits) - logits[y])


@settings(max_examples=60, deadline=None)
@given(clean=st.floats(0, 10), w=st.floats(0, 50), gap=st.floats(0, 5), rob=st.floats(0, 20), adv=st.floats(0, 10), ben=st.floats(0, 10), sh=st.floats(0, 1), js=st.floats(0, 0.7))
def test_statements_match_evaluate(clean, w, gap, rob, adv, ben, sh, js):
    t = {"robust_cross_entropy": rob, "clean_cross_entropy": clean, "probe_lipschitz": w, "representation_gap": gap,
         "adversarial_info_nce": adv, "benign_info_nce": ben, "sharpness": sh, "adversarial_js": js}
    assert rc.evaluate(t).bound == pytest.approx(TRANSFER_RHS(clean, w, gap), rel=1e-12, abs=1e-12)
    assert rc.adversarial_infonce(t).bound == pytest.approx(PROXY_RHS(1, 1, 1, 0, adv, ben, sh, js), rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6), scale=st.floats(0.01, 20))
def test_cross_entropy_is_sqrt2_lipschitz_in_the_logits(seed, k, scale):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=k) * scale, rng.normal(size=k) * scale
    y = int(rng.integers(k))
    assert abs(_ce(u, y) - _ce(v, y)) <= math.sqrt(2) * np.linalg.norm(u - v) + 1e-12
    p = np.exp(u - logsumexp(u))
    assert np.linalg.norm(p - np.eye(k)[y]) <= math.sqrt(2) * (1 - p[y]) + 1e-12  # the gradient bound of the derivation


@pytest.mark.parametrize("seed", range(5))
def test_transfer_bound_holds_exactly_for_a_linear_backbone(seed):
    """h(x) = A x, logits W h + b on an L∞ ball: CE and ‖A δ‖ are convex in δ, so both sups are at
    the 2^n vertices of the ball and everything is computed exactly by enumeration."""
    rng = np.random.default_rng(seed)
    n_in, d, k, eps = 3, 4, 3, 0.3
    a_mat, w, b = rng.normal(size=(d, n_in)), rng.normal(size=(k, d)) * 2, rng.normal(size=k)
    xs, ys = rng.normal(size=(6, n_in)), rng.integers(0, k, size=6)
    vertices = [np.array(s) * eps for s in itertools.product((-1, 1), repeat=n_in)]
    clean = np.mean([_ce(w @ a_mat @ x + b, y) for x, y in zip(xs, ys)])
    robust = np.mean([max(_ce(w @ a_mat @ (x + dv) + b, y) for dv in vertices) for x, y in zip(xs, ys)])
    gap = max(np.linalg.norm(a_mat @ dv) for dv in vertices)  # the same for every x: h is linear
    t = {"robust_cross_entropy": robust, "clean_cross_entropy": clean, "probe_lipschitz": np.linalg.norm(w, 2), "representation_gap": gap}
    c = rc.evaluate(t)
    assert c.holds and c.assumptions_met and c.tightness >= 1
    assert c.details["lipschitz_part"] == pytest.approx(math.sqrt(2) * np.linalg.norm(w, 2) * gap)


def test_proxy_route_reports_its_unknown_coefficients_and_missing_terms():
    t = {"robust_cross_entropy": 2.0, "adversarial_info_nce": 5.0, "benign_info_nce": 4.0, "sharpness": 0.1, "adversarial_js": 0.3}
    c = rc.adversarial_infonce(t)
    assert not c.assumptions_met and c.failed_assumptions == ["coefficients_known"] and c.details["proxy"] is True
    assert c.bound == pytest.approx(9.4) and c.holds
    checks = {x.theorem: x for x in rc.evaluate_all(t)}
    assert checks["robust_cl.lipschitz_transfer"].details["missing_terms"] == ["clean_cross_entropy", "probe_lipschitz", "representation_gap"]
