"""A paper's claims as paired tests across seeds, with a three-way verdict each.

A claim says one variant's value is larger (or smaller) than another's: "SAM lowers the
sharpness", "robust CL is more robust than SimCLR". Variants of a target share their seeds,
and one seed fixes the data, the initial weights and the test inputs, so the two values of a
seed are paired. Each claim is tested by the exact sign-flip permutation test on the per-seed
differences (valid whatever their distribution, when the variants' labels are exchangeable
within a seed), one-sided in the claimed direction and in the opposite one; Holm's correction
runs over both directions of every claim of the target; the verdict is "reproduced",
"contradicted", "not resolved at n seeds", or "not resolvable at n seeds" where even the most
extreme outcome of n seeds cannot pass the corrected level (:mod:`.statistics`). Each claim
also reports the difference with its t-interval, the effect size d_z, the paired t-test's
p-value as a labelled secondary, and the smallest difference the design could have detected
with 80% power at Holm's first-step level (t approximation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from . import statistics as st


@dataclass(frozen=True)
class Claim:
    """``a`` is ``direction`` ("greater" or "less") than ``b`` in ``column`` (after ``transform``)."""

    text: str
    column: str
    a: str
    b: str
    direction: str = "greater"
    transform: Callable[[float], float] | None = None


def paired_values(df: pd.DataFrame, key: str, claim: Claim, seed_col: str = "config.seed") -> tuple[list[float], list[float], list[int]]:
    """The values of ``a`` and ``b`` on the seeds both have (none when the column was never measured)."""
    if claim.column not in df or key not in df:
        return [], [], []
    sub = df[df[key].isin([claim.a, claim.b])].dropna(subset=[claim.column])
    wide = sub.pivot_table(index=seed_col, columns=key, values=claim.column, aggfunc="mean")
    if claim.a not in wide or claim.b not in wide:
        return [], [], []
    wide = wide[[claim.a, claim.b]].dropna()
    f = claim.transform or (lambda v: v)
    return [f(v) for v in wide[claim.a]], [f(v) for v in wide[claim.b]], [int(s) for s in wide.index]


def test_claims(df: pd.DataFrame, key: str, claims: Sequence[Claim], alpha: float = st.ALPHA) -> pd.DataFrame:
    """One row per claim: n seeds, the two means, the difference a − b with its interval, d_z,
    the Holm-adjusted one-sided p-value in the claimed direction, the minimum detectable
    difference (80% power at Holm's first-step level), the verdict, the test that ran and the
    number of one-sided tests Holm's correction covered."""
    results = []
    for c in claims:
        a, b, seeds = paired_values(df, key, c)
        r = st.compare(a, b, c.direction, alpha) if seeds else {"n": 0, "p_claimed": None, "p_opposite": None, "mean_difference": math.nan, "ci": (math.nan, math.nan),
                                                                 "d_z": None, "mdd": math.nan, "verdict": "not testable"}
        r.update(claim=c, mean_a=sum(a) / len(a) if a else math.nan, mean_b=sum(b) / len(b) if b else math.nan)
        results.append(r)
    tested = [r for r in results if r["n"]]
    adjusted = iter(st.adjust(tested, alpha))
    rows = []
    for r in results:
        if r["n"]:
            r = next(adjusted)
        c: Claim = r["claim"]
        rows.append({
            "claim": c.text, "seeds": r["n"], "a vs b": f"{r['mean_a']:.4g} vs {r['mean_b']:.4g}",
            "difference [95% CI]": f"{r['mean_difference']:+.4g} [{r['ci'][0]:+.4g}, {r['ci'][1]:+.4g}]" if r["n"] else "",
            "d_z": r["d_z"], "p (one-sided, Holm)": r.get("p_claimed_holm"), "p t-test (one-sided, secondary)": r.get(f"p_{c.direction}_t"),
            "detectable difference": r["mdd"], "verdict": r["verdict"],
            "test": r.get("test", ""), "holm tests": r.get("holm_tests"),
        })
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, what: str = "claims") -> str:
    """'k of n claims reproduced, …' with the method named; the number of tests is the number
    of p-values Holm's correction ran over."""
    if table.empty:
        return f"No {what} could be tested."
    verdicts = table["verdict"].tolist()
    reproduced = sum(v == "reproduced" for v in verdicts)
    contradicted = sum(v == "contradicted" for v in verdicts)
    unresolved = sum(v.startswith("not resolved") for v in verdicts)
    unresolvable = [v for v in verdicts if v.startswith("not resolvable")]
    untestable = len(verdicts) - reproduced - contradicted - unresolved - len(unresolvable)
    seeds = sorted({int(s) for s in table["seeds"] if s})
    tests = int(table["holm tests"].max()) if "holm tests" in table and table["holm tests"].notna().any() else 0
    if reproduced == contradicted == unresolved == len(unresolvable) == 0:
        return f"Not testable: none of the {len(verdicts)} {what} has paired values on two or more seeds."
    testable = len(verdicts) - untestable
    head = ("Reproduced" if reproduced == testable else "Contradicted" if contradicted == testable
            else "Not resolvable" if len(unresolvable) == testable else "Not resolved" if reproduced == contradicted == 0
            else "Partly reproduced" if contradicted == 0 else "Partly contradicted" if reproduced == 0 else "Mixed")
    n = "/".join(map(str, seeds)) or "0"
    resolvable_note = f", {len(unresolvable)} not resolvable at these seeds ({unresolvable[0].split('(', 1)[1].rstrip(')')})" if unresolvable else ""
    return (f"{head}: {reproduced} of {len(verdicts)} {what} reproduced, {contradicted} contradicted, {unresolved} not resolved at {n} seed{'s' if seeds != [1] else ''}"
            f"{resolvable_note}{f', {untestable} not testable' if untestable else ''} "
            f"(exact sign-flip permutation test on the per-seed differences, one-sided in each direction; "
            f"Holm over the target's {tests} one-sided tests, alpha = {st.ALPHA:g}"
            f"{'; one seed resolves nothing' if seeds == [1] else ''}).")


def claims_sentence(table: pd.DataFrame) -> str:
    """Each claim with its verdict and numbers, for the report's prose."""
    parts = []
    for r in table.to_dict("records"):
        d = r["difference [95% CI]"]
        parts.append(f"{r['claim']} ({r['a vs b']}): {r['verdict']}" + (f", difference {d}, detectable {r['detectable difference']:.3g}" if d else ""))
    return "; ".join(parts)


def mean_table(df: pd.DataFrame, key: str, columns: dict[str, str], order: Sequence[str], accuracy: Sequence[str] = (), n_test: int | None = None,
               split_per_seed: bool = True) -> pd.DataFrame:
    """Per variant: seeds and "mean [low, high]" of each column, the 95% Student-t interval
    over seeds, and for the ``accuracy`` columns over seeds and test inputs (``n_test``; see :func:`.statistics.accuracy_ci` for ``split_per_seed``)."""
    rows = []
    for variant in [o for o in order if o in set(df[key])] + [v for v in df[key].unique() if v not in order]:
        g = df[df[key] == variant]
        row = {key: variant, "seeds": len(g)}
        for col, label in columns.items():
            if col not in g or g[col].isna().all():
                row[label] = ""
                continue
            values = g[col].dropna().tolist()
            m, lo, hi = st.accuracy_ci(values, n_test, split_per_seed) if col in accuracy and n_test else st.mean_ci(values)
            row[label] = f"{m:.4g} [{lo:.4g}, {hi:.4g}]"
        rows.append(row)
    return pd.DataFrame(rows)


INTERVAL_NOTE = ("Intervals: 95% Student-t intervals over seeds (a percentile bootstrap of a mean of 5 covers about 83%, expanded about 92%). "
                 "Each seed draws its own data and test inputs, so the spread between seeds already holds the test inputs' part; "
                 "with one seed an accuracy's interval is the test inputs' alone (Binomial(n_test, accuracy)/n_test), and any other value's is a point.")
FIXED_TEST_NOTE = ("Intervals: 95% Student-t intervals over seeds, and for accuracies whose test size is known over seeds and test inputs "
                   "(mean ± t·√(s²/n + p(1−p)/n_test)), since every seed meets the same fixed test set.")
