r"""Zixin Wen, "Convergence of End-to-End Training in Deep Unsupervised Contrastive Learning"
(arXiv 2002.06979; PAPERS.md §3). A *diagnostic*, not a numeric bound [reconstructed
consequences].

Wen proves that gradient descent on two over-parameterised networks reaches an
ε-approximate stationary point, min_{t≤T} ‖∇L̂(W_t, V_t)‖_F² ≤ ε, once the width m is
polynomially large. Measurable consequences on a width sweep (all else fixed):

1. at fixed T the gradient norm shrinks as the width grows: slope β_g < 0 of
   log ‖∇L̂‖ against log m;
2. the relative weight movement ‖W_T − W_0‖_F/‖W_0‖_F shrinks as the width grows (lazy /
   NTK regime): slope β_w < 0.

Statement: β_g < 0 ∧ β_w < 0. The slopes are least-squares fits of log y on log m with a
two-sided Student-t 95% interval on n − 2 degrees of freedom (the same estimator as
``theory.optimization.loglog_slope``, re-implemented in numpy because bounds/ imports no
torch; a test checks the two agree). ``holds`` uses the point estimates;
``details["significant"]`` says whether each whole interval lies below 0, and a slope whose
interval lies above 0 contradicts the prediction.

Measured (``measure`` group "optimization"): ``gradient_norm`` is ‖∇L̂‖ at the *final* weights
on fixed batches, an upper estimate of min_{t≤T}‖∇L̂‖ (the sign of a log-log slope is the
same for the norm and its square); ``weight_movement`` is over all parameters. Wen's setting
is two networks without weight sharing trained by (large-batch) GD; SimCLR shares one
network, so the sweep tests the consequences, not the exact hypotheses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy as sp
from scipy import stats

from .common import BoundCheck

beta_g, beta_w = sp.symbols(r"\beta_{\nabla} \beta_{W}", real=True)
STATEMENT_GRADIENT = sp.StrictLessThan(beta_g, 0)
STATEMENT_MOVEMENT = sp.StrictLessThan(beta_w, 0)
STATEMENT = sp.And(STATEMENT_GRADIENT, STATEMENT_MOVEMENT)
REQUIRED_TERMS = ["gradient_norm", "weight_movement"]
ASSUMPTIONS = {"three_widths": "at least 3 distinct widths with positive values (a slope with an interval)",
               "wen_setting": "Wen's setting: two networks without weight sharing, trained by full-batch gradient descent"}


def loglog_slope(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Least-squares fit log y = a + β·log x with a Student-t interval for β (natural logs).

    Examples:
        >>> fit = loglog_slope([1, 2, 4, 8], [3.0, 1.5, 0.75, 0.375])
        >>> round(fit["slope"], 12), round(fit["low"], 12), round(fit["high"], 12)
        (-1.0, -1.0, -1.0)
    """
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    n = lx.size
    if n < 3:  # n − 2 degrees of freedom for the interval
        raise ValueError(f"a slope with a confidence interval needs at least 3 points, got {n}")
    if np.all(lx == lx[0]):  # the mean of equal values may round, so compare the values
        raise ValueError("x values are all equal: the slope is undefined")
    dx, dy = lx - lx.mean(), ly - ly.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ dy) / sxx
    resid = ly - (ly.mean() + slope * dx)
    stderr = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * stderr
    return {"slope": slope, "low": slope - half, "high": slope + half, "n": n}


def _rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, Mapping[str, float], Any]]:
    """(width, terms, run) per row; a row is {"width", "terms", "run"?} or a flat dict of terms with "width"."""
    out = []
    for row in rows:
        terms = row.get("terms", row)
        out.append((float(row["width"]), terms, row.get("run")))
    return out


def _fit(rows: Sequence[Mapping[str, Any]], term: str) -> tuple[dict[str, Any] | None, str]:
    pts = [(w, float(t[term])) for w, t, _ in _rows(rows) if t.get(term) is not None]
    widths = sorted({w for w, _ in pts})
    if len(widths) < 3:
        return None, f"{term}: {len(widths)} distinct width(s) measured, a slope with an interval needs 3"
    if any(w <= 0 or v <= 0 for w, v in pts):
        return None, f"{term}: widths and values must be > 0 for a log-log fit"
    fit = loglog_slope([w for w, _ in pts], [v for _, v in pts])
    fit.update({"widths": [w for w, _ in pts], "values": [v for _, v in pts], "significant": fit["high"] < 0, "contradicted": fit["low"] > 0})
    return fit, ""


def _check(theorem: str, statement: sp.Basic, fits: dict[str, tuple[dict | None, str]], runs: list, setting: tuple[bool, str] | None = None) -> BoundCheck:
    reasons = [why for _, why in fits.values() if why]
    ok = not reasons
    slopes = {name: fit for name, (fit, _) in fits.items() if fit is not None}
    holds = all(f["slope"] < 0 for f in slopes.values()) if ok else None
    worst = max((f["slope"] for f in slopes.values()), default=None)
    assumptions = {"three_widths": {"met": ok, "note": "; ".join(reasons) or "ok"}}
    if setting is not None:  # a sweep outside Wen's setting tests the consequences, not the theorem: a failure is no violation
        assumptions["wen_setting"] = {"met": setting[0], "note": setting[1]}
    details = {
        "label": "diagnostic",
        "assumptions": assumptions,
        "inputs": {name: f["slope"] for name, f in slopes.items()},
        "slopes": slopes,
        "significant": all(f["significant"] for f in slopes.values()) if ok else None,
        "contradicted": any(f["contradicted"] for f in slopes.values()),
        "predicted": "slope < 0",
        "runs": runs,
    }
    met = ok and all(a["met"] for a in assumptions.values())
    return BoundCheck(theorem, 0.0 if ok else None, worst if ok else None, holds, None, met, statement, details)


def gradient_norm_vs_width(rows: Sequence[Mapping[str, Any]], setting: tuple[bool, str] | None = None) -> BoundCheck:
    """Prediction 1: log ‖∇L̂‖ falls with log width."""
    return _check("wen2020.gradient_norm_vs_width", STATEMENT_GRADIENT, {"gradient_norm": _fit(rows, "gradient_norm")}, [r for _, _, r in _rows(rows)], setting)


def weight_movement_vs_width(rows: Sequence[Mapping[str, Any]], setting: tuple[bool, str] | None = None) -> BoundCheck:
    """Prediction 2: log relative weight movement falls with log width."""
    return _check("wen2020.weight_movement_vs_width", STATEMENT_MOVEMENT, {"weight_movement": _fit(rows, "weight_movement")}, [r for _, _, r in _rows(rows)], setting)


def evaluate_sweep(rows: Sequence[Mapping[str, Any]], setting: tuple[bool, str] | None = None) -> BoundCheck:
    """Both predictions at once; ``measured`` is the larger slope (0 is the predicted ceiling).
    ``setting`` = (met, note) says whether the sweep's runs are in Wen's setting (two
    networks, full-batch GD); outside it a failed prediction is "hypothesis not met".

    Examples:
        >>> rows = [{"width": w, "terms": {"gradient_norm": 1 / w, "weight_movement": w**-0.5}} for w in (1, 2, 4)]
        >>> c = evaluate_sweep(rows)
        >>> c.holds, round(c.measured, 6)
        (True, -0.5)
    """
    fits = {"gradient_norm": _fit(rows, "gradient_norm"), "weight_movement": _fit(rows, "weight_movement")}
    return _check("wen2020.width_sweep", STATEMENT, fits, [r for _, _, r in _rows(rows)], setting)


def evaluate_sweep_all(rows: Sequence[Mapping[str, Any]], setting: tuple[bool, str] | None = None) -> list[BoundCheck]:
    """The width sweep's three checks: the bound sweep, min_t ‖∇L‖ against width, and the relative weight movement against width."""
    return [evaluate_sweep(rows, setting), gradient_norm_vs_width(rows, setting), weight_movement_vs_width(rows, setting)]
