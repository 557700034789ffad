"""`clbounds bounds RUN`: evaluate every applicable theorem on a run's measured terms.

The terms come from the run store (``clbounds measure``). Where one term name was measured
under several protocols (e.g. measured again with other settings), the rule of
``experiments/store/terms.py`` picks the row, as the figures do; the protocol of every term
used is kept in each check's ``details["protocols"]`` and names measured under several
protocols are listed in ``details["ambiguous_terms"]``.

Single-run theorems: ``bounds.arora2019``, ``bounds.huang2023``, ``bounds.ssa_clr``,
``bounds.robust_cl``. A theorem whose terms are missing is still reported, with
``assumptions_met`` False and ``details["missing_terms"]``. Multi-run diagnostics:
``bounds.wen2020`` (width sweeps) and ``bounds.cacr`` (a CACR run against SimCLR on the same
data), in :func:`evaluate_sweep_bounds`. A bound that a measurement violates is a finding:
``bounds.display.format_bound_table`` lists each one with its numbers under the table.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from clbounds.bounds import arora2019, cacr, huang2023, robust_cl, ssa_clr, wen2020
from clbounds.bounds.common import UNAVAILABLE_SUFFIX, BoundCheck, with_controls
from clbounds.bounds.evaluate import SINGLE_RUN_MODULES, attach_controls, evaluate_all, split_controls

from ..store.db import RunRecord, Store
from ..store.terms import pick

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
        best = pick(rows)
        terms[name], protocols[name] = float(best["value"]), best["protocol"]
        if len(rows) > 1:
            ambiguous.append(name)
    return terms, protocols, ambiguous


def evaluate_terms(terms: dict[str, float]) -> list[BoundCheck]:
    """Every single-run theorem on one mapping of terms, with the controls (``bounds.evaluate_all``)."""
    return evaluate_all(terms)


def _annotate(check: BoundCheck, run_id: str, protocols: dict[str, str], ambiguous: list[str], names: Iterable[str]) -> BoundCheck:
    used = {n: protocols[n] for n in names if n in protocols}
    details = dict(check.details, run=run_id, protocols=used)
    if ambiguous:
        details["ambiguous_terms"] = [n for n in ambiguous if n in used]
    # A missing term that measure could not compute for this encoder says why (re-measuring would not help).
    unavailable = {t: protocols[t + UNAVAILABLE_SUFFIX] for t in details.get("missing_terms", []) if t + UNAVAILABLE_SUFFIX in protocols}
    if unavailable:
        details["unavailable"] = unavailable
        details["reason"] = "not evaluated: " + "; ".join(f"{t} cannot be computed for this encoder ({why})" for t, why in unavailable.items())
    return check.replace(details=details)


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


def _compared_with(name: str) -> str | None:
    """The method whose runs on the same data a pair claim compares a run of ``name`` with."""
    from ..catalog import METHODS
    from ..training.methods import get_method

    return get_method(name).compared_with if name in METHODS else None


def _wen_setting(config: dict) -> bool:
    """Whether a run is in Wen's setting (PAPERS §3): two networks trained by full-batch GD."""
    from ..catalog import METHODS
    from ..config import config_from_dict
    from ..training.methods import get_method  # torch: only when a width sweep is evaluated

    name = config["method"].get("name")
    if name not in METHODS:
        return False
    method = get_method(name)
    return method.logs_dynamics and method.full_batch(config_from_dict({"method": config["method"]}).method)


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # the training budget too: a 10-epoch CACR run against a 3-epoch SimCLR run of a grid's
    # epochs axis compares budgets, not methods (the cpu grid paired them until 2026-12-07)
    keys = ("data", "encoder", "augment", "color_strength", "seed", "optim")
    return all(a.get(k) == b.get(k) for k in keys)


def evaluate_sweep_bounds(records: Sequence[RunRecord], store: Store) -> list[BoundCheck]:
    """Wen 2020 on every width sweep and the CACR claims on every CACR/SimCLR pair among ``records``.

    A width sweep is a set of runs whose configs differ only in ``encoder.width`` (labels,
    devices, probe and measure settings ignored), with at least two widths. A CACR run is
    paired with the SimCLR run of the same data, encoder, augmentation, training budget
    (``optim``) and seed. Each check is
    stored under every run it involves.
    """
    all_terms = {r.id: split_controls(run_terms(store, r.id)[0]) for r in records}
    terms = {run: own for run, (own, _) in all_terms.items()}
    controls = {run: ctrl for run, (_, ctrl) in all_terms.items()}
    checks: list[tuple[BoundCheck, list[str]]] = []
    sweeps: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        sweeps[_without(r.config, "encoder.width", "name", "device", "compile", "eval", "measure", "slurm")].append(r)
    for members in sweeps.values():
        if len({m.config["encoder"]["width"] for m in members}) < 2:
            continue
        # Wen's quantity is min_t ||grad L(W_t, V_t)|| along training, which two-network runs
        # log; other runs have only the gradient norm at the final weights.
        logged = all("min_gradient_norm" in terms[m.id] for m in members)
        rows = [{"width": m.config["encoder"]["width"], "run": m.id,
                 "terms": terms[m.id] | ({"gradient_norm": terms[m.id]["min_gradient_norm"]} if logged else {})} for m in members]
        # The control: the same slope at the initial weights. If the gradient norm already
        # falls with width before training, the prediction holds by the initialisation's scale.
        initial = {m.id: _initial_gradient_norm(store, m.id) for m in members}
        control_rows = [{"width": m.config["encoder"]["width"], "run": m.id, "terms": {"gradient_norm": initial[m.id]}} for m in members if initial[m.id] is not None]
        control = {"wen2020.gradient_norm_vs_width": wen2020.gradient_norm_vs_width(control_rows)} if len(control_rows) == len(members) else {}
        method = members[0].config["method"]
        in_setting = _wen_setting(members[0].config)
        setting = (in_setting, "two networks, full-batch GD" if in_setting else
                   f"{method.get('name')}{' (mini-batch)' if not method.get('full_batch') else ''}: not Wen's two networks trained by full-batch GD")
        for check in wen2020.evaluate_sweep_all(rows, setting):
            check.details["gradient_norm_source"] = "min over training steps of ||grad_(W,V) L||" if logged else "||grad L|| at the final weights (measure step)"
            if check.theorem in control and check.theorem.endswith("gradient_norm_vs_width"):
                check = with_controls(check, {"random_init": control[check.theorem]})
            checks.append((check, [m.id for m in members]))
    for c in records:
        partner = _compared_with(c.method)  # the CACR claims: a CACR run against a SimCLR run
        partners = [s for s in records if partner is not None and s.method == partner and _same_data(c.config, s.config)]
        for s in partners:
            own = cacr.evaluate_pair_all(terms[c.id], terms[s.id])
            on_controls = {name: cacr.evaluate_pair_all(terms[c.id] | controls[c.id].get(name, {}), terms[s.id] | controls[s.id].get(name, {}))
                           for name in ("random_init", "random_embedding") if name in controls[c.id]}
            for check in attach_controls(own, on_controls):
                check.details.update(cacr_run=c.id, simclr_run=s.id)
                checks.append((check, [c.id, s.id]))
    _delete_stale_multi_run_checks(records, store, {(run, c.theorem) for c, runs in checks for run in runs})
    for check, runs in checks:
        check.details["grid_runs"] = sorted(runs)  # stored on each run, counted once (bounds.common.distinct_checks)
        for run in runs:
            store.add_bound_checks(run, [check.to_row()])
    return [c for c, _ in checks]


def _delete_stale_multi_run_checks(records: Sequence[RunRecord], store: Store, kept: set[tuple[str, str]]) -> None:
    """Deletes the stored sweep and pair checks (wen2020.*, cacr.*) of ``records`` whose runs are
    all among ``records`` but which this evaluation did not make again: their runs no longer form
    a sweep or a pair (a pairing rule changed). A check that involves a run outside ``records``
    is kept: it was not re-evaluated."""
    ids = {r.id for r in records}
    for record in records:
        for c in store.bound_checks(record.id):
            runs = set(c["details"].get("grid_runs", [record.id]))
            if c["theorem"].startswith(("wen2020.", "cacr.")) and runs <= ids and (record.id, c["theorem"]) not in kept:
                store.delete_bound_check(record.id, c["theorem"])


def _initial_gradient_norm(store: Store, run_id: str) -> float | None:
    """‖∇L(W_0, V_0)‖ logged at step 0 of two-network training, if any."""
    rows = [r for r in store.measurements(run_id) if r["name"] == "train_gradient_norm" and r["protocol"].startswith("step=0 ")]
    return float(rows[-1]["value"]) if rows else None


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
