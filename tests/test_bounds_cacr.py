"""Tests for bounds.cacr: the CACR claims against SimCLR, and the report of unmeasured claims."""

from __future__ import annotations

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from clbounds.bounds import cacr

STATEMENT = sp.lambdify((cacr.A_cacr, cacr.A_simclr, cacr.I_cacr, cacr.I_simclr, cacr.rho_w), cacr.STATEMENT, "math")
small = st.floats(0, 4)


@settings(max_examples=60, deadline=None)
@given(ac=small, as_=small, ic=small, is_=small, rho=st.floats(-1, 1))
def test_holds_matches_the_lambdified_statement(ac, as_, ic, is_, rho):
    c = cacr.evaluate_pair({"alignment": ac, "mi_query_negative": ic, "cacr_weight_distance_corr": rho}, {"alignment": as_, "mi_query_negative": is_})
    assert c.holds == bool(STATEMENT(ac, as_, ic, is_, rho)) and c.assumptions_met


def test_each_claim_reports_its_numbers():
    c = cacr.evaluate_pair(
        {"alignment": 0.5, "alignment_projection": 0.3, "mi_query_negative": 0.02, "cacr_weight_distance_corr": -0.7, "cacr_same_class_weight_ratio": 1.4},
        {"alignment": 0.4, "alignment_projection": 0.6, "mi_query_negative": 0.05},
    )
    claims = c.details["claims"]
    assert c.holds is False and claims["alignment"]["holds"] is False and claims["alignment"]["difference"] == pytest.approx(0.1)
    assert claims["alignment"]["projection"]["holds"] is True
    assert claims["mi_query_negative"]["holds"] is True and claims["hard_negative_weights"]["holds"] is True
    assert claims["hard_negative_weights"]["same_class_weight_ratio"] == {"value": 1.4, "holds": True}


def test_unmeasured_weight_claim_is_reported_not_hidden():
    c = cacr.evaluate_pair({"alignment": 0.2, "mi_query_negative": 0.01}, {"alignment": 0.3, "mi_query_negative": 0.02})
    assert not c.assumptions_met and c.holds is True  # the measured claims hold
    assert "not measured: cacr_weight_distance_corr" in c.details["assumptions"]["claims_measured"]["note"]
    none = cacr.evaluate_pair({}, {})
    assert none.holds is None and not none.assumptions_met and "SimCLR" not in none.details["claims"]["alignment"]["reason"]
