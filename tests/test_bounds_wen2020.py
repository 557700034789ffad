"""Tests for bounds.wen2020: the log-log slope diagnostic on width sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from clbounds.bounds import wen2020
from clbounds.theory.optimization import loglog_slope as torch_side_slope

STATEMENT = sp.lambdify((wen2020.beta_g, wen2020.beta_w), wen2020.STATEMENT, "math")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 8))
def test_numpy_slope_matches_the_theory_implementation(seed, n):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.1, 10, size=n)) + np.arange(n)
    y = np.exp(rng.normal(size=n))
    ours, ref = wen2020.loglog_slope(x, y), torch_side_slope(x, y)
    for key in ("slope", "low", "high"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-10, abs=1e-12)


def _rows(grad_exp: float, move_exp: float, widths=(0.25, 0.5, 1.0, 2.0), noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"width": w, "terms": {"gradient_norm": 3 * w**grad_exp * np.exp(noise * rng.normal()), "weight_movement": 0.5 * w**move_exp * np.exp(noise * rng.normal())}, "run": f"r{i}"}
            for i, w in enumerate(widths)]


@settings(max_examples=30, deadline=None)
@given(ge=st.floats(-2, 2), me=st.floats(-2, 2))
def test_holds_matches_the_lambdified_statement_on_exact_power_laws(ge, me):
    c = wen2020.evaluate_sweep(_rows(ge, me))
    assert c.details["slopes"]["gradient_norm"]["slope"] == pytest.approx(ge, abs=1e-9)
    assert c.details["slopes"]["weight_movement"]["slope"] == pytest.approx(me, abs=1e-9)
    if min(abs(ge), abs(me)) > 1e-6:
        assert c.holds == bool(STATEMENT(ge, me))
    assert c.measured == pytest.approx(max(ge, me), abs=1e-9) and c.bound == 0.0 and c.tightness is None


def test_predicted_direction_contradicted_and_inconclusive_cases():
    good = wen2020.evaluate_sweep(_rows(-1.0, -0.5))
    assert good.holds and good.details["significant"] and good.assumptions_met and good.label == "diagnostic"
    bad = wen2020.gradient_norm_vs_width(_rows(0.8, -0.5))
    assert bad.holds is False and bad.details["contradicted"]
    noisy = wen2020.weight_movement_vs_width(_rows(-1.0, -0.05, noise=0.5, seed=3))
    assert noisy.details["significant"] is False  # a 4-point noisy fit cannot resolve a slope of -0.05


def test_too_few_widths_is_an_unmet_assumption():
    c = wen2020.evaluate_sweep(_rows(-1, -1, widths=(0.5, 1.0)))
    assert not c.assumptions_met and c.holds is None and "3" in c.details["assumptions"]["three_widths"]["note"]
    flat = [{"width": 1.0, "gradient_norm": 1.0, "weight_movement": 0.1}, {"width": 2.0, "gradient_norm": 0.5, "weight_movement": 0.05}, {"width": 4.0, "gradient_norm": 0.25, "weight_movement": 0.02}]
    assert wen2020.evaluate_sweep(flat).holds  # flat rows (terms beside the width) are accepted too
    zero = wen2020.evaluate_sweep([{"width": w, "gradient_norm": 0.0, "weight_movement": 0.1} for w in (1, 2, 4)])
    assert not zero.assumptions_met and "> 0" in zero.details["assumptions"]["three_widths"]["note"]


def test_outside_wens_setting_a_failed_prediction_is_not_a_violation():
    from clbounds.bounds.common import verdict

    rising = _rows(0.8, -0.5)
    assert verdict(wen2020.gradient_norm_vs_width(rising)) == "violated"
    assert verdict(wen2020.gradient_norm_vs_width(rising, (True, "two networks, full-batch GD"))) == "violated"
    outside = wen2020.gradient_norm_vs_width(rising, (False, "simclr (mini-batch): not Wen's setting"))
    assert outside.holds is False and not outside.assumptions_met and verdict(outside) == "hypothesis not met"
    assert outside.details["assumptions"]["wen_setting"]["note"].startswith("simclr")
