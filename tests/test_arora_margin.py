"""The Arora checks' margins hold their level (issue 27): simulated at the tool's sample size.

``benchmarks/studies/arora_margin.py`` draws embeddings from a generator whose population
L_un, L_un^prac and L_sup^μ are known to Monte-Carlo precision. A margin that may decide a
check must cover the population difference bound − L_sup^μ in at least 95% of samples: 2,000
simulated samples of n = 128 inputs per regime, failing above 0.05 plus two Monte-Carlo
standard errors. The standard error over anchors that the tool used before missed 29–88% in
the practical check, and the error over anchors and Monte-Carlo draws 9% in the M-negative
check (the study's table in docs/estimators.md): the one-negative terms now carry the
delete-one jackknife, the Monte-Carlo ones the delete-a-group jackknife, each with its bias.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp

from clbounds.bounds.common import decide, make_check
from benchmarks.studies import arora_margin

REPS = 2000
LEVEL = 0.05 + 2 * math.sqrt(0.05 * 0.95 / REPS)


def test_a_stored_bias_widens_the_margin_by_the_change_it_makes():
    x = sp.Symbol("x")
    fn = lambda t: make_check("demo", sp.Le(x, 1), bound=2 * t["b"], measured=t["m"], label="paper")  # noqa: E731
    plain = {"b": 0.5, "m": 0.9, "b_stderr": 0.01}
    widened = decide(fn(plain | {"b_bias": 0.02}), fn, plain | {"b_bias": 0.02}).details["margin"]
    base = decide(fn(plain), fn, plain).details["margin"]
    assert base["margin"] == pytest.approx(1.96 * 0.02)
    assert widened["margin"] == pytest.approx(1.96 * 0.02 + 0.04) and widened["bias"] == pytest.approx(0.04)
    assert not decide(fn(plain | {"b_bias": 0.05}), fn, plain | {"b_bias": 0.05}).resolved  # 0.1 apart, inside 0.039 + 0.1


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(arora_margin.REGIMES))
def test_the_jackknife_margin_covers_the_population_difference(regime):
    rows = arora_margin.coverage(regime, 128, REPS, margins=("jackknife",))
    for name, row in rows.items():
        assert row["miss"] <= LEVEL, f"{regime}: {name} misses {row['miss']:.3f} of {REPS} samples"


@pytest.mark.slow
def test_the_grouped_jackknife_margin_of_the_m_negative_check_covers_the_population_difference():
    # Structured embeddings: where the error over anchors and draws missed 9% (study, 2,000 samples).
    rows = arora_margin.coverage_m("structured", 128, REPS, margins=("grouped jackknife",))
    for name, row in rows.items():
        assert row["miss"] <= LEVEL, f"{name} misses {row['miss']:.3f} of {REPS} samples"
