"""What every bound module shares: the :class:`BoundCheck` result and small helpers.

A bound module states a theorem as a sympy relation ``lhs ≤ rhs`` (``STATEMENT``), lists the
measured terms it needs (``REQUIRED_TERMS``, names as stored by ``experiments/measure.py``)
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


class MissingTermError(KeyError):
    """A term a theorem needs is not among the measured terms.

    Example:
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

    Example:
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

    Example:
        >>> assumption(0.2, 0.5)["met"], round(assumption(0.2, 0.5)["margin"], 12)
        (True, 0.3)
    """
    margin = rhs - lhs
    met = margin > 0 if strict else margin >= -_REL_TOL * max(1.0, abs(lhs), abs(rhs))
    out: dict[str, Any] = {"met": bool(met), "lhs": lhs, "rhs": rhs, "margin": margin, "relation": "<" if strict else "<="}
    if note:
        out["note"] = note
    return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class BoundCheck:
    """The result of evaluating one theorem on measured terms.

    Example:
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

    @property
    def label(self) -> str:
        return self.details.get("label", "paper")

    @property
    def failed_assumptions(self) -> list[str]:
        """Names of the hypotheses that fail, and "missing terms" when terms were absent."""
        failed = [name for name, a in self.details.get("assumptions", {}).items() if not a.get("met", True)]
        if self.details.get("missing_terms"):
            failed.append("missing terms: " + ", ".join(self.details["missing_terms"]))
        return failed

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
            "details": details,
        }


def make_check(
    theorem: str,
    statement: sp.Basic,
    bound: float | None,
    measured: float | None,
    label: str,
    assumptions: Mapping[str, Mapping[str, Any]] | None = None,
    inputs: Mapping[str, float] | None = None,
    **extra: Any,
) -> BoundCheck:
    """Builds a :class:`BoundCheck` of ``measured ≤ bound``: holds, tightness and assumptions.

    ``bound`` may be ``None`` (the theorem gives no finite bound on these terms, e.g. the log
    of a non-positive number); then ``holds`` and ``tightness`` are ``None`` and
    ``details["reason"]`` should say why. Extra keyword arguments go into ``details``.
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
    details.update(extra)
    return BoundCheck(theorem, bound, measured, holds, tightness, all(a["met"] for a in assumptions.values()), statement, details)


def missing_check(theorem: str, statement: sp.Basic, label: str, err: MissingTermError) -> BoundCheck:
    """The check of a theorem whose terms were not measured: nothing evaluated, and it says which."""
    return BoundCheck(
        theorem, None, None, None, None, False, statement,
        {"label": label, "assumptions": {}, "inputs": {}, "missing_terms": err.missing, "reason": str(err)},
    )


def evaluate_registry(
    registry: Mapping[str, tuple[sp.Basic, str, Callable[[Mapping[str, float]], BoundCheck]]],
    terms: Mapping[str, float],
) -> list[BoundCheck]:
    """Runs every evaluator of a module; a missing term gives a :func:`missing_check`, and a
    term outside the statement's domain (e.g. ε ≤ 0) a check that says so, not an error, so
    the other theorems of the run are still evaluated."""
    checks = []
    for name, (statement, label, fn) in registry.items():
        try:
            checks.append(fn(terms))
        except MissingTermError as err:
            checks.append(missing_check(name, statement, label, err))
        except ValueError as err:
            checks.append(BoundCheck(name, None, None, None, None, False, statement,
                                     {"label": label, "assumptions": {}, "inputs": {}, "reason": f"not evaluated: {err}"}))
    return checks
