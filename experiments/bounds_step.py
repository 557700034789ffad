"""`clbounds bounds RUN`: evaluate every applicable theorem on a run's measured terms.

The terms come from the run store (``clbounds measure``). Where one term name was measured
under several protocols (e.g. measured again with other settings), the row whose protocol
says ``final-epoch`` is preferred, then the most recently written one; the protocol of every
term used is kept in each check's ``details["protocols"]`` and names measured under several
protocols are listed in ``details["ambiguous_terms"]``.

Single-run theorems: ``bounds.arora2019``, ``bounds.huang2023``, ``bounds.ssa_clr``,
``bounds.robust_cl``. A theorem whose terms are missing is still reported, with
``assumptions_met`` False and ``details["missing_terms"]``. Multi-run diagnostics:
``bounds.wen2020`` (width sweeps) and ``bounds.cacr`` (a CACR run against SimCLR on the same
data), in :func:`evaluate_sweep_bounds`. A bound that a measurement violates is a finding:
:func:`format_bound_table` lists each one with its numbers under the table.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from clbounds.bounds import arora2019, cacr, huang2023, robust_cl, ssa_clr, wen2020
from clbounds.bounds.common import BoundCheck

from .store import RunRecord, Store

SINGLE_RUN_MODULES = (arora2019, huang2023, ssa_clr, robust_cl)


def run_terms(store: Store, run_id: str) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(terms, protocol of each term, names measured under several protocols) of one run.

    Example:
        >>> import tempfile
        >>> s = Store(tempfile.mkdtemp())
        >>> s.add_measurements("r", [("sigma", 0.8, "old"), ("sigma", 0.9, "final-epoch")])
        >>> run_terms(s, "r")[0]
        {'sigma': 0.9}
    """
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.measurements(run_id):
        if row["value"] is not None and math.isfinite(row["value"]):
            by_name[row["name"]].append(row)
    terms, protocols, ambiguous = {}, {}, []
    for name, rows in sorted(by_name.items()):
        best = max(rows, key=lambda r: ("final-epoch" in r["protocol"], r["created"], r["protocol"]))
        terms[name], protocols[name] = float(best["value"]), best["protocol"]
        if len(rows) > 1:
            ambiguous.append(name)
    return terms, protocols, ambiguous


def evaluate_terms(terms: dict[str, float]) -> list[BoundCheck]:
    """Every single-run theorem of every module on one mapping of terms."""
    return [check for module in SINGLE_RUN_MODULES for check in module.evaluate_all(terms)]


def _annotate(check: BoundCheck, run_id: str, protocols: dict[str, str], ambiguous: list[str], names: Iterable[str]) -> BoundCheck:
    used = {n: protocols[n] for n in names if n in protocols}
    details = dict(check.details, run=run_id, protocols=used)
    if ambiguous:
        details["ambiguous_terms"] = [n for n in ambiguous if n in used]
    return BoundCheck(check.theorem, check.bound, check.measured, check.holds, check.tightness, check.assumptions_met, check.statement, details)


def evaluate_bounds(record: RunRecord, store: Store) -> list[BoundCheck]:
    """Evaluates every single-run theorem on ``record``'s measurements, stores and returns the checks."""
    terms, protocols, ambiguous = run_terms(store, record.id)
    if not terms:
        raise ValueError(f"run {record.id} has no measurements; run `clbounds measure {record.id}` first")
    modules = {m.__name__.rsplit(".", 1)[-1]: m for m in SINGLE_RUN_MODULES}
    checks = []
    for check in evaluate_terms(terms):
        module = modules[check.theorem.split(".", 1)[0]]
        checks.append(_annotate(check, record.id, protocols, ambiguous, module.REQUIRED_TERMS + list(check.details.get("missing_terms", []))))
    store.add_bound_checks(record.id, [c.to_row() for c in checks])
    return checks


# ---- several runs ------------------------------------------------------------------------


def _without(config: dict[str, Any], *paths: str) -> str:
    c = json.loads(json.dumps(config))
    for path in paths:
        node = c
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return json.dumps(c, sort_keys=True)


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("data", "encoder", "augment", "color_strength", "seed")
    return all(a.get(k) == b.get(k) for k in keys)


def evaluate_sweep_bounds(records: Sequence[RunRecord], store: Store) -> list[BoundCheck]:
    """Wen 2020 on every width sweep and the CACR claims on every CACR/SimCLR pair among ``records``.

    A width sweep is a set of runs whose configs differ only in ``encoder.width`` (labels,
    devices, probe and measure settings ignored), with at least two widths. A CACR run is
    paired with the SimCLR run of the same data, encoder, augmentation and seed. Each check is
    stored under every run it involves.
    """
    terms = {r.id: run_terms(store, r.id)[0] for r in records}
    checks: list[tuple[BoundCheck, list[str]]] = []
    sweeps: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        sweeps[_without(r.config, "encoder.width", "name", "device", "compile", "eval", "measure")].append(r)
    for members in sweeps.values():
        if len({m.config["encoder"]["width"] for m in members}) < 2:
            continue
        # Wen's quantity is min_t ||grad L(W_t, V_t)|| along training, which two-network runs
        # log; other runs have only the gradient norm at the final weights.
        logged = all("min_gradient_norm" in terms[m.id] for m in members)
        rows = [{"width": m.config["encoder"]["width"], "run": m.id,
                 "terms": terms[m.id] | ({"gradient_norm": terms[m.id]["min_gradient_norm"]} if logged else {})} for m in members]
        for check in wen2020.evaluate_sweep_all(rows):
            check.details["gradient_norm_source"] = "min over training steps of ||grad_(W,V) L||" if logged else "||grad L|| at the final weights (measure step)"
            checks.append((check, [m.id for m in members]))
    for c in (r for r in records if r.method == "cacr"):
        partners = [s for s in records if s.method == "simclr" and _same_data(c.config, s.config)]
        for s in partners:
            check = cacr.evaluate_pair(terms[c.id], terms[s.id])
            check.details.update(cacr_run=c.id, simclr_run=s.id)
            checks.append((check, [c.id, s.id]))
    for check, runs in checks:
        for run in runs:
            store.add_bound_checks(run, [check.to_row()])
    return [c for c, _ in checks]


# ---- report ------------------------------------------------------------------------------


def theorem_registry() -> list[tuple[str, Any, str]]:
    """(theorem, sympy statement, label) of every theorem, hypothesis and diagnostic in bounds/."""
    items = [(name, statement, label) for module in SINGLE_RUN_MODULES for name, (statement, label, _) in module.THEOREMS.items()]
    items.insert(2, ("huang2023.theorem1 (centre condition)", huang2023.CENTER_CONDITION, "paper"))
    items += [
        ("wen2020.width_sweep", wen2020.STATEMENT, "diagnostic"),
        ("cacr.claims", cacr.STATEMENT, "paper"),
    ]
    return items


def theorem_statements() -> list[Any]:
    """Every statement rendered for the report (``figures.report.Statement``: LaTeX, Unicode, PNG)."""
    from clbounds.figures.report import render_statement

    return [render_statement(name, statement, label) for name, statement, label in theorem_registry()]



def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _assumption_cell(check: BoundCheck) -> str:
    if check.assumptions_met:
        return "met"
    parts = []
    for name, a in check.details.get("assumptions", {}).items():
        if not a.get("met", True):
            margin = a.get("margin")
            parts.append(f"{name} ({'margin ' + _num(margin) if margin is not None else a.get('note', 'failed')})")
    if check.details.get("missing_terms"):
        parts.append("missing terms: " + ", ".join(check.details["missing_terms"]))
    return "failed: " + "; ".join(parts) if parts else "failed"


def _holds_cell(check: BoundCheck) -> str:
    if check.holds is None:
        return "n/a" if check.bound is None and check.measured is None else "undefined"
    return "yes" if check.holds else "**VIOLATED**"


def format_bound_table(checks: Sequence[BoundCheck]) -> str:
    """A Markdown table of the checks, then every violated bound as a finding with its numbers.

    Example:
        >>> import sympy as sp
        >>> from clbounds.bounds.common import make_check
        >>> x = sp.Symbol("x")
        >>> print(format_bound_table([make_check("demo", sp.Le(x, 1), 1.0, 2.0, "paper")]).splitlines()[2])
        | demo | paper | 1 | 2 | **VIOLATED** | 0.5 | met |
    """
    lines = ["| theorem | label | bound | measured | holds | tightness | assumptions |", "|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.theorem} | {c.label} | {_num(c.bound)} | {_num(c.measured)} | {_holds_cell(c)} | {_num(c.tightness)} | {_assumption_cell(c)} |")
    violated = [c for c in checks if c.holds is False]
    if violated:
        lines += ["", "Findings (a measurement violates the bound):"]
        for c in violated:
            cond = "with its assumptions met" if c.assumptions_met else f"assumptions not met ({_assumption_cell(c)}), so the theorem does not apply"
            lines.append(f"- {c.theorem} [{c.label}]: measured {c.measured:.6g} > bound {c.bound:.6g} (excess {c.measured - c.bound:.4g}), {cond}; inputs {json.dumps(c.details.get('inputs', {}), default=str)}")
    return "\n".join(lines)
