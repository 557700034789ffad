"""Tests for bounds.common (BoundCheck, required terms, assumptions) and for bounds/ not importing torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import sympy as sp

from clbounds.bounds.common import BoundCheck, MissingTermError, assumption, evaluate_registry, make_check, missing_check, require

x, y = sp.symbols("x y")


def test_make_check_holds_tightness_and_row_round_trip(store):
    c = make_check("demo.t", sp.Le(x, 2 * y), bound=3.0, measured=1.5, label="paper", assumptions={"a": assumption(0.1, 0.5)}, inputs={"y": 1.5})
    assert c.holds is True and c.tightness == 2.0 and c.assumptions_met
    row = c.to_row()
    assert set(row) == {"theorem", "bound", "measured", "holds", "tightness", "assumptions_met", "vacuous", "informative", "resolved", "details"}
    assert row["details"]["statement"] == sp.latex(sp.Le(x, 2 * y)) and row["details"]["label"] == "paper"
    json.dumps(row["details"])  # JSON-able, as the store needs
    store.add_bound_checks("run1", [row])
    back = store.bound_checks("run1")[0]
    assert back["bound"] == 3.0 and back["holds"] is True and back["details"]["assumptions"]["a"]["met"] is True


def test_violation_undefined_bound_and_non_positive_measured():
    v = make_check("t", sp.Le(x, y), bound=1.0, measured=2.0, label="paper")
    assert v.holds is False and v.tightness == 0.5
    u = make_check("t", sp.Le(x, y), bound=None, measured=2.0, label="reconstructed", reason="log of a negative number")
    assert u.holds is None and u.tightness is None and u.details["reason"]
    neg = make_check("t", sp.Le(x, y), bound=0.5, measured=-0.2, label="paper")
    assert neg.holds is True and neg.tightness is None  # a ratio with a non-positive measurement means nothing
    inf = make_check("t", sp.Le(x, y), bound=math.inf, measured=1.0, label="paper")
    assert inf.holds is True and inf.to_row()["bound"] is None and inf.to_row()["tightness"] is None
    # equality up to rounding holds
    assert make_check("t", sp.Le(x, y), bound=0.1 + 0.2, measured=0.3, label="paper").holds is True
    with pytest.raises(ValueError, match="label"):
        make_check("t", sp.Le(x, y), 1.0, 1.0, label="made-up")


def test_assumption_margin_and_strictness():
    a = assumption(0.7, 0.5)
    assert not a["met"] and a["margin"] == pytest.approx(-0.2) and a["relation"] == "<="
    assert assumption(0.5, 0.5)["met"] and not assumption(0.5, 0.5, strict=True)["met"]
    c = make_check("t", sp.Le(x, y), 1.0, 0.5, "paper", assumptions={"cond": a})
    assert not c.assumptions_met and c.failed_assumptions == ["cond"]


def test_require_names_every_missing_term_and_rejects_non_finite():
    with pytest.raises(MissingTermError) as err:
        require({"a": 1.0}, ["a", "b", "c"], "mod.thm")
    assert err.value.missing == ["b", "c"] and "b, c" in str(err.value) and "mod.thm" in str(err.value)
    assert isinstance(err.value, KeyError)
    with pytest.raises(ValueError, match="not finite"):
        require({"a": float("nan")}, ["a"], "mod.thm")
    assert require({"a": 1, "b": None, "c": 2.5}, ["a", "c"], "t") == {"a": 1.0, "c": 2.5}


def test_missing_terms_become_a_reported_check_not_an_error():
    def needs_b(terms):
        require(terms, ["b"], "mod.needs_b")

    checks = evaluate_registry({"mod.needs_b": (sp.Le(x, y), "paper", needs_b)}, {"a": 1.0})
    (c,) = checks
    assert isinstance(c, BoundCheck) and not c.assumptions_met and c.holds is None
    assert c.details["missing_terms"] == ["b"] and c.failed_assumptions == ["missing terms: b"]
    assert missing_check("t", sp.Le(x, y), "paper", MissingTermError("t", ["q"])).to_row()["details"]["missing_terms"] == ["q"]


def test_a_term_outside_the_domain_is_reported_and_the_other_theorems_still_run():
    def eps_positive(terms):
        raise ValueError(f"misalignment_eps must be > 0, got {terms['eps']}")

    def fine(terms):
        return make_check("mod.fine", sp.Le(x, y), 1.0, 0.5, "paper", {}, {})

    bad, ok = evaluate_registry({"mod.eps": (sp.Le(x, y), "paper", eps_positive), "mod.fine": (sp.Le(x, y), "paper", fine)}, {"eps": 0.0})
    assert bad.theorem == "mod.eps" and bad.bound is None and bad.holds is None and not bad.assumptions_met
    assert bad.details["reason"] == "not evaluated: misalignment_eps must be > 0, got 0.0"
    assert ok.holds and ok.tightness == 2.0


def test_bounds_package_imports_no_torch():
    code = (
        "import sys\n"
        "import clbounds.bounds.common, clbounds.bounds.arora2019, clbounds.bounds.huang2023, clbounds.bounds.ssa_clr, clbounds.bounds.robust_cl, clbounds.bounds.wen2020, clbounds.bounds.cacr\n"
        "assert 'torch' not in sys.modules, 'bounds imported torch'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_distinct_checks_counts_a_grid_level_check_once_and_every_per_run_check():
    from clbounds.bounds.common import distinct_checks

    per_run = [{"run": r, "theorem": "huang2023.theorem1", "bound": 1.0, "measured": 0.5, "details": {}} for r in "ab"]
    sweep = [{"run": r, "theorem": "wen2020.width_sweep", "bound": 0.0, "measured": 0.1, "holds": False, "details": {"grid_runs": ["a", "b"]}} for r in "ab"]
    old_sweep = [{"run": r, "theorem": "wen2020.width_sweep", "bound": 0.0, "measured": 0.2, "holds": False, "details": {}} for r in "cd"]  # stored before grid_runs
    pair = [{"run": r, "theorem": "cacr.alignment", "details": {"cacr_run": "a", "simclr_run": "b"}} for r in "ab"]
    other_pair = [{"run": "c", "theorem": "cacr.alignment", "details": {"cacr_run": "c", "simclr_run": "d"}}]
    out = distinct_checks(per_run + sweep + old_sweep + pair + other_pair)
    assert [(c["run"], c["theorem"]) for c in out] == [("a", "huang2023.theorem1"), ("b", "huang2023.theorem1"), ("a", "wen2020.width_sweep"),
                                                       ("c", "wen2020.width_sweep"), ("a", "cacr.alignment"), ("c", "cacr.alignment")]
