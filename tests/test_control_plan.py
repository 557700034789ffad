"""Controls where they testify (issue 31): a control measures a group again only if a check that
declares the control (bounds/<module>.CONTROLS) reads a term of that group there."""

from __future__ import annotations

import torch

from clbounds.bounds import evaluate as bounds_evaluate
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.context import make_context
from clbounds.experiments.measurement.measure import measure_context
from clbounds.experiments.measurement.registry import CONTROL_GROUPS, default_groups
from clbounds.experiments.training.runs import build_encoder, load_run_data

from conftest import tiny_raw

#: Read by a check that compares two runs (CACR's hard-negative weights, bounds_step), which
#: the single-run perturbation below cannot see.
PAIR_READ = {("random_init", "cacr_weights"), ("random_embedding", "cacr_weights")}


def _inputs_of_control_checks(terms: dict[str, float], control: str) -> dict[str, tuple]:
    """What each single-run check that declares ``control`` computes on it: both sides, its
    inputs and its assumptions (a change anywhere means the check reads the control's rows)."""
    own, controls = bounds_evaluate.split_controls(terms)
    overlay = own | controls.get(control, {})
    out = {}
    for module in bounds_evaluate.SINGLE_RUN_MODULES:
        for check in module.evaluate_all(overlay):
            if control in getattr(module, "CONTROLS", {}).get(check.theorem, ()):
                out[check.theorem] = (check.bound, check.measured, repr(check.details.get("inputs")), repr(check.details.get("assumptions")))
    return out


def test_every_control_group_is_read_by_a_check_that_declares_the_control():
    raw = tiny_raw(data__n_train=96, data__n_test=48, encoder__arch="convnet")
    raw["measure"] = {"n_samples": 32, "batch_size": 16, "views": 2, "sigma_per_class": 4, "hessian_iters": 2, "trace_samples": 1, "sharpness_steps": 1,
                      "sharpness_m": 4, "attack_steps": 1, "pac_bayes_units": 2, "center_views": 1}
    cfg = config_from_dict(raw)
    data = load_run_data(cfg)
    torch.manual_seed(0)
    model, init = build_encoder(cfg, data.image_shape).eval(), build_encoder(cfg, data.image_shape).eval()
    by_group: dict[tuple[str, str], list[str]] = {}

    def record(control, name, compute):
        rows = compute()
        by_group[(control, name)] = [term for term, _, _ in rows]
        return rows

    stored = []
    ctx = make_context(cfg, data, model, init, torch.device("cpu"))
    measure_context(ctx, default_groups(cfg), write=stored.extend, run_group=record)
    terms = {name: value for name, value, _ in stored}
    unread = []
    for control, groups in CONTROL_GROUPS.items():
        base = _inputs_of_control_checks(terms, control)
        for group in groups:
            if (control, group) in PAIR_READ:
                continue
            names = {f"{control}/{term}" for term in by_group.get((control, group), [])}
            moved = {k: (v * 1.37 + 0.11 if k in names else v) for k, v in terms.items()}
            if _inputs_of_control_checks(moved, control) == base:
                unread.append(f"{control}/{group}")
    assert unread == [], f"control groups no check reads: {unread}"
