"""Tests for bounds.arora2019: statement vs numbers, exact cases, brute force, assumption failures."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clbounds.bounds import arora2019
from clbounds.bounds.arora2019 import L_sup, L_un, gamma, tau
from test_arora_terms import _brute_terms
from clbounds.theory.arora import class_probabilities, collision_floor, collision_probability, mean_classifier_loss_exact, unsupervised_loss_exact

F64 = torch.float64


def _terms_one(l_un: float, l_sup: float, col: float) -> dict[str, float]:
    return {"arora_unsupervised_loss": l_un, "arora_mean_classifier_loss": l_sup, "arora_collision": col}


def _terms_m(l_un: float, l_sup: float, col: float, floor: float, m: int = 3) -> dict[str, float]:
    return {"arora_unsupervised_loss_M": l_un, "arora_mean_classifier_loss_M": l_sup, "arora_collision_M": col, "arora_collision_floor_M": floor, "arora_negatives": m}


RHS_ONE = sp.lambdify((L_un, tau), arora2019.STATEMENT_ONE.rhs, "math")
HOLDS_ONE = sp.lambdify((L_sup, L_un, tau), arora2019.STATEMENT_ONE, "math")
RHS_M = sp.lambdify((L_un, tau, gamma), arora2019.STATEMENT_M.rhs, "math")


@settings(max_examples=60, deadline=None)
@given(l_un=st.floats(0, 20), l_sup=st.floats(0, 20), col=st.floats(0, 0.99), floor=st.floats(0, 5))
def test_lambdified_statements_match_evaluate(l_un, l_sup, col, floor):
    c = arora2019.evaluate(_terms_one(l_un, l_sup, col))
    assert c.bound == pytest.approx(RHS_ONE(l_un, col), rel=1e-12, abs=1e-12)
    if abs(c.bound - l_sup) > 1e-9 * max(1, abs(c.bound)):
        assert c.holds == bool(HOLDS_ONE(l_sup, l_un, col))
    cm = arora2019.m_negative(_terms_m(l_un, l_sup, col, floor))
    assert cm.bound == pytest.approx(RHS_M(l_un, col, floor), rel=1e-12, abs=1e-12)
    assert cm.statement == arora2019.STATEMENT_M and "\\gamma" in cm.latex()


def test_collapsed_simplex_classes_make_the_bound_exactly_tight():
    """Every class collapsed onto one simplex vertex: Jensen is an equality, so bound = measured."""
    s = 2.0  # squared norm of each vertex
    vertices = torch.tensor([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]], dtype=F64) * math.sqrt(s)
    y = torch.arange(3).repeat_interleave(4)
    f = vertices[y]
    l_un, l_sup = unsupervised_loss_exact(f, y).item(), mean_classifier_loss_exact(f, y).item()
    col = collision_probability(class_probabilities(y), 1).item()
    # Closed forms: a negative of another class has margin s − (−s/2) = 1.5 s.
    assert col == pytest.approx(1 / 3)
    assert l_sup == pytest.approx(math.log1p(math.exp(-1.5 * s)), rel=1e-12)
    assert l_un == pytest.approx(col * math.log(2) + (1 - col) * math.log1p(math.exp(-1.5 * s)), rel=1e-12)
    c = arora2019.evaluate(_terms_one(l_un, l_sup, col))
    assert c.holds and c.assumptions_met and c.tightness == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_bound_holds_on_exactly_computed_random_samples(seed):
    """On the empirical distribution of any sample both sides are exact, so the bound must hold."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(30, 5, generator=g, dtype=F64) * 2
    y = torch.randint(0, 4, (30,), generator=g)
    p = class_probabilities(y)
    c = arora2019.evaluate(_terms_one(unsupervised_loss_exact(f, y).item(), mean_classifier_loss_exact(f, y).item(), collision_probability(p, 1).item()))
    assert c.holds and c.assumptions_met and c.tightness >= 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 2))
def test_m_negative_bound_holds_on_brute_force_enumerations(seed, m):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(5, 2, generator=g, dtype=F64) * 1.5
    y = torch.tensor([0, 1, 2, 0, 1])
    brute = _brute_terms(f.tolist(), y.tolist(), m)
    p = class_probabilities(y)
    c = arora2019.m_negative(_terms_m(brute["l_un"], brute["l_sup"], collision_probability(p, m).item(), collision_floor(p, m).item(), m))
    assert c.holds and c.assumptions_met


def test_collision_assumption_failure_is_reported_with_its_margin():
    c = arora2019.evaluate(_terms_one(0.7, 0.5, 1.0))  # one class: every negative collides
    assert not c.assumptions_met and c.bound is None and c.holds is None
    a = c.details["assumptions"]["collision_below_one"]
    assert a["met"] is False and a["margin"] == 0.0 and a["lhs"] == 1.0
    cm = arora2019.m_negative(_terms_m(2.0, 1.0, 1.0, 1.0))
    assert cm.failed_assumptions == ["collision_below_one"]


def test_missing_terms_and_evaluate_all():
    checks = arora2019.evaluate_all(_terms_one(0.9, 0.5, 0.25))
    assert [c.theorem for c in checks] == ["arora2019.one_negative", "arora2019.m_negative", "arora2019.one_negative_practical"]
    assert checks[0].holds and checks[1].details["missing_terms"] == arora2019.TERMS_M
    assert checks[2].details["missing_terms"] == ["arora_unsupervised_loss_practical"]
    m = arora2019.m_negative({**_terms_m(2.0, 1.0, 0.5, 0.3), "arora_unsupervised_loss_M_stderr": 0.01, "arora_mean_classifier_loss_M_stderr": 0.02})
    assert m.details["monte_carlo_stderr"] == pytest.approx(math.hypot(0.02, 0.02)) and m.details["slack_in_stderr"] > 0
