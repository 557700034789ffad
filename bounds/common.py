"""What every bound module shares: the :class:`BoundCheck` result and small helpers.

A bound module states a theorem as a sympy relation ``lhs ≤ rhs`` (``STATEMENT``), lists the
measured terms it needs (``REQUIRED_TERMS``, names as stored by ``experiments/measurement/measure.py``)
and evaluates the relation on a mapping ``terms`` of name → float. The numbers are computed
with plain Python arithmetic; the tests check them against ``sympy.lambdify`` of the
statement, so the printed statement and the evaluated one cannot drift apart.

Conventions:
- ``bound`` is the right-hand side, ``measured`` the left-hand side, ``holds`` is
  ``measured ≤ bound`` (``None`` when either side is undefined).
- ``tightness`` = bound / measured when measured > 0 (1 is a tight bound; larger is looser),
  else ``None``.
- ``assumptions_met`` is False when a hypothesis of the theorem fails on the measured terms
  or a required term is missing; ``details["assumptions"]`` says which, with the two sides
  and the margin (how far inside, positive, or outside, negative, the hypothesis is).
- ``details["label"]`` is "paper" (the statement of the paper) or "reconstructed" (derived
  here because the paper's exact statement was not available, PAPERS.md).
- ``vacuous`` is True when the bound is at or above the measured quantity's trivial
  ceiling: what a trivial predictor attains (an error: the error of always predicting the
  most frequent class, :func:`error_ceiling`; the NT-Xent loss: a constant encoder's
  log(2B − 1)), else the value no encoder can exceed (a probability: 1; an inner product of
  unit-norm centres: r² = 1; another loss: the top of its known range). Each module declares the
  ceiling of each check (``ceiling=`` of :func:`make_check`, stored in
  ``details["ceiling"]``); ``None`` where the quantity has none (a cross-entropy).
- ``resolved`` says whether ``holds`` is decided beyond the sampling noise. Every term measured
  on a sample is stored with its standard error (``<term>_stderr``); :func:`decide` carries
  them to the difference bound − measured (each term moved by ± its standard error, the
  contributions summed, which bounds the error whatever the terms' correlation) and calls
  the check resolved only when |bound − measured| exceeds z = 1.96 of that error, and never
  below :data:`FLOAT_FLOOR` of the larger side (float32 resolution). A term that also stores
  an estimate of its plug-in bias (``<term>_bias``, e.g. a jackknife's) widens the margin by
  the change that bias makes to the difference, so a biased estimate cannot decide a check
  its bias could. Inside the margin the verdict is "not resolved"; ``details["margin"]``
  has the numbers.
- ``informative`` is False when the same check also holds on a **control** that carries no
  learned structure (the architecture at its random initialisation, with or without its
  BatchNorm statistics recalibrated on the data; the trained encoder with its class labels
  shuffled; random embeddings): such a check "holds by construction", its verdict could not
  have failed. A control testifies only where its own hypotheses are met and its verdict is
  resolved. True when the check fails on every control that testifies, ``None`` when none
  does. :func:`with_controls` sets it and keeps each control's numbers in
  ``details["controls"]``.
- :func:`verdict` turns the flags into one word for reports, and :func:`verdict_counts` gives
  the headline: informative non-vacuous checks counted apart from vacuous ones and from
  by-construction ones.

bounds/ imports no torch: it takes numbers and gives numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

LABELS = ("paper", "reconstructed", "diagnostic")

# Relative slack for "measured ≤ bound": floating-point noise must not flip an exact equality.
_REL_TOL = 1e-12

#: A check is decided only beyond z standard errors of bound − measured (two-sided 95%).
DECISION_Z = 1.96
#: The smallest margin, relative to the larger side: terms come from float32 embeddings, so a
#: difference of a few float32 ulps (2^-23 each) is never a decision, whatever the errors say.
FLOAT_FLOOR = 16 * 2.0**-23
#: The suffix of a term's standard error (``misalignment_rate_stderr``).
STDERR_SUFFIX = "_stderr"
#: The suffix of a term's estimated bias (``arora_mean_classifier_loss_bias``): E[estimate] − truth.
BIAS_SUFFIX = "_bias"
#: The suffix of the row that says a term cannot be computed for this encoder (value 1, the
#: reason in its protocol): a gap is stored and shown, never silent.
UNAVAILABLE_SUFFIX = "_unavailable"


def unavailable_row(term: str, reason: str) -> tuple[str, float, str]:
    """The stored row saying ``term`` cannot be computed for this encoder, and why.

    Examples:
        >>> unavailable_row("lipschitz_upper", "no certified bound for a block of type Foo")
        ('lipschitz_upper_unavailable', 1.0, 'no certified bound for a block of type Foo')
    """
    return (term + UNAVAILABLE_SUFFIX, 1.0, reason)


class MissingTermError(KeyError):
    """A term a theorem needs is not among the measured terms.

    Examples:
        >>> try:
        ...     require({"sigma": 0.9}, ["sigma", "misalignment_rate"], "huang2023.theorem1")
        ... except MissingTermError as err:
        ...     err.missing
        ['misalignment_rate']
    """

    def __init__(self, theorem: str, missing: list[str]) -> None:
        self.theorem = theorem
        self.missing = list(missing)
        super().__init__(f"{theorem} needs term(s) {', '.join(self.missing)}, which were not measured (run `clbounds measure`)")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.args[0]


def require(terms: Mapping[str, float], names: Iterable[str], theorem: str) -> dict[str, float]:
    """The named terms as floats; raises :class:`MissingTermError` naming every missing one.

    A term that is present but not a finite number is an error too (ValueError), since no
    bound can be evaluated on it.

    Examples:
        >>> require({"sigma": 0.9, "extra": 1}, ["sigma"], "t")
        {'sigma': 0.9}
    """
    names = list(names)
    missing = [n for n in names if n not in terms or terms[n] is None]
    if missing:
        raise MissingTermError(theorem, missing)
    out = {n: float(terms[n]) for n in names}
    bad = [n for n, v in out.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{theorem}: term(s) {', '.join(bad)} are not finite: {[out[n] for n in bad]}")
    return out


def assumption(lhs: float, rhs: float, strict: bool = False, note: str = "") -> dict[str, Any]:
    """One hypothesis ``lhs ≤ rhs`` (``lhs < rhs`` when strict), with its margin rhs − lhs.

    Examples:
        >>> assumption(0.2, 0.5)["met"], round(assumption(0.2, 0.5)["margin"], 12)
        (True, 0.3)
    """
    margin = rhs - lhs
    met = margin > 0 if strict else margin >= -_REL_TOL * max(1.0, abs(lhs), abs(rhs))
    out: dict[str, Any] = {"met": bool(met), "lhs": lhs, "rhs": rhs, "margin": margin, "relation": "<" if strict else "<="}
    if note:
        out["note"] = note
    return out


def term_gaps(details: Mapping[str, Any]) -> list[str]:
    """Why a check lacks terms, one phrase per kind: the terms measure could not compute for
    this encoder (with each reason) and the terms that were not measured.

    Examples:
        >>> term_gaps({"missing_terms": ["a", "b"], "unavailable": {"a": "no bound"}})
        ['not computable for this encoder: a (no bound)', 'missing terms: b']
    """
    unavailable = details.get("unavailable", {}) or {}
    out = ["not computable for this encoder: " + "; ".join(f"{t} ({why})" for t, why in unavailable.items())] if unavailable else []
    missing = [t for t in details.get("missing_terms", []) or [] if t not in unavailable]
    return out + (["missing terms: " + ", ".join(missing)] if missing else [])


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class BoundCheck:
    """The result of evaluating one theorem on measured terms.

    Examples:
        >>> x, y = sp.symbols("x y")
        >>> c = make_check("demo", sp.Le(x, 2 * y), bound=2.0, measured=1.0, label="paper")
        >>> c.holds, c.tightness, c.to_row()["theorem"]
        (True, 2.0, 'demo')
    """

    theorem: str
    bound: float | None
    measured: float | None
    holds: bool | None
    tightness: float | None
    assumptions_met: bool
    statement: sp.Basic
    details: dict[str, Any] = field(default_factory=dict)
    vacuous: bool | None = None
    informative: bool | None = None
    resolved: bool | None = None

    @property
    def label(self) -> str:
        return self.details.get("label", "paper")

    @property
    def failed_assumptions(self) -> list[str]:
        """Names of the hypotheses that fail, and "missing terms" when terms were absent."""
        failed = [name for name, a in self.details.get("assumptions", {}).items() if not a.get("met", True)]
        return failed + term_gaps(self.details)

    def latex(self) -> str:
        return sp.latex(self.statement)

    def to_row(self) -> dict[str, Any]:
        """The dict that ``experiments.store.Store.add_bound_checks`` takes."""
        details = dict(self.details)
        details["statement"] = self.latex()
        return {
            "theorem": self.theorem,
            "bound": _finite(self.bound),
            "measured": _finite(self.measured),
            "holds": self.holds,
            "tightness": _finite(self.tightness),
            "assumptions_met": self.assumptions_met,
            "vacuous": self.vacuous,
            "informative": self.informative,
            "resolved": self.resolved,
            "details": details,
        }

    def replace(self, **changes: Any) -> "BoundCheck":
        """A copy with some fields changed (``details`` is copied, never shared)."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields["details"] = dict(self.details)
        fields.update(changes)
        return BoundCheck(**fields)


def make_check(
    theorem: str,
    statement: sp.Basic,
    bound: float | None,
    measured: float | None,
    label: str,
    assumptions: Mapping[str, Mapping[str, Any]] | None = None,
    inputs: Mapping[str, float] | None = None,
    ceiling: float | None = None,
    ceiling_note: str = "",
    **extra: Any,
) -> BoundCheck:
    """Builds a :class:`BoundCheck` of ``measured ≤ bound``: holds, tightness, assumptions, vacuity.

    ``bound`` may be ``None`` (the theorem gives no finite bound on these terms, e.g. the log
    of a non-positive number); then ``holds``, ``tightness`` and ``vacuous`` are ``None`` and
    ``details["reason"]`` should say why. ``ceiling`` is the largest value the measured
    quantity can take for any encoder (``ceiling_note`` says why); a bound at or above it is
    vacuous. Extra keyword arguments go into ``details``.

    Examples:
        >>> x = sp.Symbol("x")
        >>> make_check("demo", sp.Le(x, 1), bound=1.7, measured=0.04, label="paper", ceiling=1.0).vacuous
        True
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    assumptions = {k: dict(v) for k, v in (assumptions or {}).items()}
    holds: bool | None = None
    tightness: float | None = None
    if bound is not None and measured is not None and math.isfinite(measured) and not math.isnan(bound):
        holds = bool(measured <= bound + _REL_TOL * max(1.0, abs(bound)))
        if measured > 0 and math.isfinite(bound):
            tightness = bound / measured
    details: dict[str, Any] = {"label": label, "assumptions": assumptions, "inputs": dict(inputs or {})}
    vacuous: bool | None = None
    if ceiling is not None:
        details["ceiling"] = {"value": float(ceiling), "note": ceiling_note}
        if bound is not None and not math.isnan(bound):
            vacuous = bool(bound >= ceiling)
    details.update(extra)
    return BoundCheck(theorem, bound, measured, holds, tightness, all(a["met"] for a in assumptions.values()), statement, details, vacuous=vacuous)


def error_ceiling(terms: Mapping[str, float]) -> tuple[float, str]:
    """The ceiling of an error rate: what the trivial predictor attains, the error of always
    predicting the most frequent training class (term ``trivial_error``, measured on the same
    test sample as the error); 1 where it was not measured.

    Examples:
        >>> error_ceiling({"trivial_error": 0.9})
        (0.9, 'the error of always predicting the most frequent training class, the trivial predictor')
    """
    trivial = terms.get("trivial_error")
    if trivial is None:
        return 1.0, "an error rate is at most 1 (the trivial predictor's error was not measured)"
    return float(trivial), "the error of always predicting the most frequent training class, the trivial predictor"


def missing_check(theorem: str, statement: sp.Basic, label: str, err: MissingTermError) -> BoundCheck:
    """The check of a theorem whose terms were not measured: nothing evaluated, and it says which."""
    return BoundCheck(
        theorem, None, None, None, None, False, statement,
        {"label": label, "assumptions": {}, "inputs": {}, "missing_terms": err.missing, "reason": str(err)},
    )


def _difference(check: BoundCheck) -> float | None:
    if check.bound is None or check.measured is None or not (math.isfinite(check.bound) and math.isfinite(check.measured)):
        return None
    return check.bound - check.measured


def decide(check: BoundCheck, evaluate: Callable[[Mapping[str, float]], BoundCheck], terms: Mapping[str, float]) -> BoundCheck:
    """``check`` with ``resolved`` set: is bound − measured decided beyond its sampling error?

    Each term ``t`` with a standard error ``t_stderr`` in ``terms`` is moved by ± its error and
    the check evaluated again; half the change of bound − measured is that term's
    contribution, and their sum is the error of the difference (a sum, not a root sum of
    squares, so it holds whatever the correlation of terms measured on one sample). The
    margin is z = :data:`DECISION_Z` of it, never below :data:`FLOAT_FLOOR` of the larger
    side; a term whose ± move leaves the bound undefined makes the margin infinite. A term with
    an estimated bias ``t_bias`` is also moved by the size of that bias, and the whole change of
    bound − measured is added to the margin (not scaled by z: a bias is not noise). A check
    without standard errors is decided beyond the float floor only, and says so. A check whose
    bound is only a lower limit (``details["lower_limit"]``, a skipped estimate) keeps a verdict
    only where that limit clears the measured side beyond the margin; otherwise it has none
    (bound None, the reason in ``details``), since the full bound could decide it either way.

    Examples:
        >>> x = sp.Symbol("x")
        >>> fn = lambda t: make_check("demo", sp.Le(x, 1), bound=t["b"], measured=t["m"], label="paper")
        >>> terms = {"b": 0.50, "m": 0.49, "m_stderr": 0.01}
        >>> decide(fn(terms), fn, terms).resolved   # a margin of 0.01 inside 1.96 standard errors
        False
    """
    d = _difference(check)
    if d is None:
        return check
    contributions, biases = _moves(terms, evaluate, STDERR_SUFFIX, (1, -1)), _moves(terms, evaluate, BIAS_SUFFIX, (0, -1))
    stderr, bias = sum(contributions.values()), sum(biases.values())
    floor = FLOAT_FLOOR * max(1.0, abs(check.bound), abs(check.measured))
    margin = max(DECISION_Z * stderr + bias, floor)
    details = dict(check.details)
    details["margin"] = {"difference": d, "stderr": stderr, "z": DECISION_Z, "margin": margin, "float_floor": floor,
                         "contributions": contributions, "decided_by": "standard errors" if DECISION_Z * stderr + bias >= floor else "float resolution only"}
    if biases:
        details["margin"] |= {"bias": bias, "bias_contributions": biases}
    if not contributions:
        details["margin"]["note"] = "no standard error stored for the terms this check reads: decided beyond float resolution only"
    if details.get("lower_limit") and not d > margin:
        # A lower limit of the bound (a skipped estimate) is below the full bound, so it decides
        # a check only where it already clears the measured side beyond the margin; inside the
        # margin the full bound could be resolved, and below it could still hold.
        details["reason"] = (f"no verdict from the bound's lower limit: it exceeds the measured side by {d:.4g}, not beyond the margin {margin:.4g}; "
                             "the full value would decide it")
        return check.replace(bound=None, holds=None, tightness=None, vacuous=None, details=details)
    return check.replace(details=details, resolved=bool(abs(d) > margin))


def _moves(terms: Mapping[str, float], evaluate: Callable[[Mapping[str, float]], BoundCheck], suffix: str, signs: tuple[int, int]) -> dict[str, float]:
    """For each term ``t`` with a positive-size row ``t<suffix>`` of size e: the change of
    bound − measured between t + signs[0]·e and t + signs[1]·e, divided by the signs' distance
    (half the ± change for a standard error, the whole shift for a bias); infinite where a move
    leaves the check undefined."""
    out: dict[str, float] = {}
    for name, size in terms.items():
        base = name[: -len(suffix)]
        if not name.endswith(suffix) or base not in terms or terms[base] is None or size is None or not abs(float(size)) > 0:
            continue
        moved = []
        for sign in signs:
            try:
                moved.append(_difference(evaluate({**terms, base: float(terms[base]) + sign * abs(float(size))})))
            except (MissingTermError, ValueError, ZeroDivisionError, OverflowError):
                moved.append(None)
        change = math.inf if None in moved else abs(moved[0] - moved[1]) / (signs[0] - signs[1])
        if change > 0:
            out[base] = change
    return out


def evaluate_registry(
    registry: Mapping[str, tuple[sp.Basic, str, Callable[[Mapping[str, float]], BoundCheck]]],
    terms: Mapping[str, float],
) -> list[BoundCheck]:
    """Runs every evaluator of a module, each check decided beyond its noise (:func:`decide`);
    a missing term gives a :func:`missing_check`, and a term outside the statement's domain
    (e.g. ε ≤ 0) a check that says so, not an error, so the other theorems of the run are
    still evaluated."""
    checks = []
    for name, (statement, label, fn) in registry.items():
        try:
            checks.append(decide(fn(terms), fn, terms))
        except MissingTermError as err:
            checks.append(missing_check(name, statement, label, err))
        except ValueError as err:
            checks.append(BoundCheck(name, None, None, None, None, False, statement,
                                     {"label": label, "assumptions": {}, "inputs": {}, "reason": f"not evaluated: {err}"}))
    return checks


# ---- controls and verdicts -----------------------------------------------------------------

#: The controls: measurements without learned structure (experiments/measurement/measure.py makes them).
CONTROLS = {
    "random_init": "the same architecture at the seed's initial weights (no training)",
    "random_init_bn": "the seed's initial weights with the BatchNorm statistics recalibrated on the training data (no training)",
    "shuffled_labels": "the trained encoder with its train and test labels randomly permuted (no class structure)",
    "random_embedding": "i.i.d. Gaussian embeddings in place of the encoder's (no structure at all)",
}


def control_summary(check: BoundCheck) -> dict[str, Any]:
    """The numbers of a check evaluated on a control, as kept in ``details["controls"]``."""
    margin = check.details.get("margin", {})
    return {"bound": _finite(check.bound), "measured": _finite(check.measured), "holds": check.holds, "vacuous": check.vacuous,
            "assumptions_met": check.assumptions_met, "tightness": _finite(check.tightness), "resolved": check.resolved,
            "margin": _finite(margin.get("margin")), "testifies": testifies(check)}


def testifies(control: BoundCheck, check: BoundCheck | None = None) -> str | None:
    """Why the same check on a control says nothing (None: it testifies).

    A control testifies only where the theorem applies to it (its hypotheses are met), where
    its verdict is decided beyond its noise, and where it does not merely hold because its
    own bound is vacuous while the run's is not (it then tests a non-vacuous check of nothing).

    Examples:
        >>> x = sp.Symbol("x")
        >>> testifies(make_check("demo", sp.Le(x, 1), 0.0, 0.7, "paper", {"h": assumption(2.0, 1.0)}))
        'its hypotheses are not met'
    """
    if control.holds is None:
        return "not evaluated"
    if not control.assumptions_met:
        return "its hypotheses are not met"
    if control.resolved is False:
        return "not resolved beyond its noise"
    if control.holds and control.vacuous and check is not None and not check.vacuous:
        return "holds only because its bound is vacuous there"
    return None


def with_controls(check: BoundCheck, controls: Mapping[str, BoundCheck]) -> BoundCheck:
    """``check`` with ``informative`` set from the same check on each control.

    Only controls that testify (:func:`testifies`) count. ``informative`` is False when the
    check also holds on one of them (it holds by construction: the standards' rule, a check
    that passes on a random-initialisation or shuffled control could not have failed), True
    when it fails on every one (it could have failed, and did without learned structure),
    None when no control testifies.

    Examples:
        >>> x = sp.Symbol("x")
        >>> trained = make_check("demo", sp.Le(x, 1), 0.5, 0.1, "paper")
        >>> control = make_check("demo", sp.Le(x, 1), 0.5, 0.4, "paper")   # holds on the control too
        >>> with_controls(trained, {"random_init": control}).informative
        False
    """
    counted = {name: c for name, c in controls.items() if testifies(c, check) is None}
    informative = None if not counted else all(c.holds is False for c in counted.values())
    details = dict(check.details)
    details["controls"] = {name: control_summary(c) | ({"why_not": why} if (why := testifies(c, check)) else {}) for name, c in controls.items()}
    return check.replace(details=details, informative=informative)


#: Verdict classes, in the order reports list them.
VERDICTS = ("informative", "vacuous", "by construction", "hypothesis not met", "no control", "not resolved", "violated", "not evaluated")


def _get(check: Any, name: str) -> Any:
    return check.get(name) if isinstance(check, Mapping) else getattr(check, name)


def verdict(check: BoundCheck | Mapping[str, Any]) -> str:
    """One of :data:`VERDICTS` for a check (a :class:`BoundCheck` or a stored row).

    - "not resolved": the hypotheses hold and bound − measured is inside its margin
      (:func:`decide`): the sampling noise could make it hold or fail;
    - "violated": the measurement exceeds the bound beyond its margin, with the hypotheses
      met (a finding);
    - "vacuous": it holds, but the bound is at or above the trivial ceiling;
    - "by construction": it holds, non-vacuously, and also holds on every control;
    - "hypothesis not met": the theorem's hypotheses fail on the measured terms, so it does
      not apply (whether or not the inequality held, and unless it is vacuous anyway);
    - "no control": it holds and is not vacuous, and no control was evaluated;
    - "informative": it holds, is not vacuous, the hypotheses hold, and it fails on a control;
    - "not evaluated": no bound (missing terms, undefined statement).

    Examples:
        >>> verdict({"holds": True, "vacuous": True, "informative": True, "assumptions_met": True})
        'vacuous'
    """
    holds = _get(check, "holds")
    if holds is None:
        return "not evaluated"
    if _get(check, "resolved") is False and _get(check, "assumptions_met"):
        return "not resolved"
    if holds is False:
        # A failed hypothesis means the theorem does not apply: not a finding against it.
        return "violated" if _get(check, "assumptions_met") else "hypothesis not met"
    if _get(check, "vacuous"):
        return "vacuous"
    if _get(check, "informative") is False:
        return "by construction"
    if not _get(check, "assumptions_met"):
        return "hypothesis not met"
    if _get(check, "informative") is None:
        return "no control"
    return "informative"


def verdict_counts(checks: Iterable[BoundCheck | Mapping[str, Any]]) -> dict[str, int]:
    """How many checks fall in each verdict class (every class present, zeros included).

    Examples:
        >>> verdict_counts([{"holds": True, "vacuous": False, "informative": True, "assumptions_met": True},
        ...                 {"holds": True, "vacuous": True}])["informative"]
        1
    """
    counts = dict.fromkeys(VERDICTS, 0)
    for c in checks:
        counts[verdict(c)] += 1
    return counts


def distinct_checks(checks: Iterable[BoundCheck | Mapping[str, Any]]) -> list[BoundCheck | Mapping[str, Any]]:
    """Each check once: a grid-level check (a Wen width sweep, a CACR/SimCLR pair) is stored on
    every run it involves, and counts once in a headline, a table or the findings.

    A grid-level check names its runs in ``details["grid_runs"]`` (older stores: the CACR pair
    in ``cacr_run``/``simclr_run``; a Wen sweep by its theorem and both sides).

    Examples:
        >>> sweep = {"run": "a", "theorem": "wen2020.width_sweep", "bound": 1.0, "measured": 0.5, "details": {"grid_runs": ["a", "b"]}}
        >>> len(distinct_checks([sweep, sweep | {"run": "b"}, {"run": "a", "theorem": "huang2023.theorem1", "details": {}}]))
        2
    """
    seen, out = set(), []
    for i, c in enumerate(checks):
        details = _get(c, "details") or {}
        theorem = _get(c, "theorem")
        if details.get("grid_runs"):
            key = (theorem, tuple(details["grid_runs"]))
        elif details.get("cacr_run"):
            key = (theorem, details["cacr_run"], details.get("simclr_run"))
        elif str(theorem).startswith("wen2020."):  # stored before grid_runs: its sides identify the sweep (NaN as None: NaN != NaN)
            key = (theorem, *(None if isinstance(v, float) and v != v else v for v in (_get(c, "bound"), _get(c, "measured"), _get(c, "holds"))))
        else:
            key = (i,)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def headline(checks: Iterable[BoundCheck | Mapping[str, Any]]) -> str:
    """The one-line summary every report leads with: informative non-vacuous checks first.

    Examples:
        >>> headline([{"holds": True, "vacuous": True}, {"holds": False, "assumptions_met": True}, {"holds": True, "assumptions_met": True, "resolved": False}])
        '0 of 3 checks are informative and non-vacuous; 1 vacuous, 0 hold by construction, 1 not resolved, 1 violated'
    """
    checks = list(checks)
    c = verdict_counts(checks)
    parts = [f"{c['vacuous']} vacuous", f"{c['by construction']} hold by construction"]
    parts += [f"{c[k]} {k}" for k in ("hypothesis not met", "no control", "not resolved", "violated", "not evaluated") if c[k]]
    return f"{c['informative']} of {len(checks)} checks are informative and non-vacuous; " + ", ".join(parts)
