"""Tests for experiments/pipeline/bounds_step.py: every bound on a measured run, stored and reported."""

from __future__ import annotations

import time

import pytest
import sympy as sp

from clbounds.bounds import arora2019, huang2023, robust_cl, ssa_clr
from clbounds.bounds.common import verdict
from clbounds.bounds.display import format_bound_table
from clbounds.experiments.pipeline.bounds_step import evaluate_bounds, evaluate_sweep_bounds, evaluate_terms, run_terms, theorem_registry, theorem_statements
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.store.db import Store

from conftest import tiny_raw, trained_tiny

# Every group but the slow sharpness/Hessian group and the multi-run ones (optimization, information).
GROUPS = ["losses", "geometry", "sigma", "lipschitz", "shift", "adversarial", "bounds"]
ALL_THEOREMS = [name for module in (arora2019, huang2023, ssa_clr, robust_cl) for name in module.THEOREMS]


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    record = trained_tiny(store)
    measure(record, store, GROUPS)
    return record, store, evaluate_bounds(record, store)


def test_every_theorem_is_evaluated_with_all_its_terms(bounded):
    record, _, checks = bounded
    assert [c.theorem for c in checks] == ALL_THEOREMS
    missing = {c.theorem: c.details["missing_terms"] for c in checks if c.details.get("missing_terms")}
    assert missing == {"robust_cl.adversarial_infonce": ["sharpness"]}  # only the skipped group's term
    by_name = {c.theorem: c for c in checks}
    assert by_name["arora2019.one_negative"].holds  # exact on the sample: must hold
    for c in checks:
        assert c.details["run"] == record.id and c.details["protocols"]
        assert c.bound is None or c.holds is not None


def test_stored_rows_round_trip(bounded):
    record, store, checks = bounded
    stored = {r["theorem"]: r for r in store.bound_checks(record.id)}
    assert set(stored) == set(ALL_THEOREMS)
    for c in checks:
        row, back = c.to_row(), stored[c.theorem]
        for key in ("bound", "measured", "tightness"):
            assert back[key] == pytest.approx(row[key]) if row[key] is not None else back[key] is None
        assert back["holds"] == row["holds"] and back["assumptions_met"] == row["assumptions_met"]
        assert back["details"]["label"] == c.label and back["details"]["statement"] == c.latex()


def test_table_lists_every_theorem_and_each_violation_as_a_finding(bounded):
    _, _, checks = bounded
    table = format_bound_table(checks)
    for c in checks:
        assert f"| {c.theorem} | {c.label} |" in table
    violated = [c for c in checks if c.holds is False and c.resolved is not False]  # a failure inside its margin is not a finding
    assert ("Findings" in table) == bool(violated)
    for c in violated:
        assert f"- {c.theorem} [" in table


def test_term_selection_prefers_final_epoch_then_the_latest(store):
    store.add_measurements("r", [("a", 1.0, "x final-epoch"), ("a", 2.0, "y random-init")])
    time.sleep(0.01)
    store.add_measurements("r", [("b", 1.0, "old")])
    time.sleep(0.01)
    store.add_measurements("r", [("b", 5.0, "new")])
    terms, protocols, ambiguous = run_terms(store, "r")
    assert terms == {"a": 1.0, "b": 5.0} and protocols["b"] == "new" and ambiguous == ["a", "b"]


def test_a_run_without_measurements_is_a_clear_error(store, tiny_config):
    store.upsert_run("abc", tiny_config.to_dict(), status="done")
    with pytest.raises(ValueError, match="clbounds measure"):
        evaluate_bounds(store.get_run("abc"), store)


def _fake_run(store: Store, run_id: str, terms: dict, **over) -> None:
    store.upsert_run(run_id, config_from_dict(tiny_raw(**over)).to_dict(), status="done")
    store.add_measurements(run_id, [(n, v, "final-epoch test") for n, v in terms.items()])


def test_sweeps_and_cacr_pairs(store):
    for i, w in enumerate((0.125, 0.25, 0.5)):
        _fake_run(store, f"w{i}", {"gradient_norm": 1.0 / w, "weight_movement": 0.1 / w**0.5, "alignment": 0.5, "mi_query_negative": 0.05}, encoder__width=w)
    _fake_run(store, "other", {"gradient_norm": 1.0, "weight_movement": 0.1}, seed=3)  # a different config: not in the sweep
    checks = evaluate_sweep_bounds(store.runs(), store)
    names = sorted(c.theorem for c in checks)
    assert names == ["wen2020.gradient_norm_vs_width", "wen2020.weight_movement_vs_width", "wen2020.width_sweep"]
    sweep = next(c for c in checks if c.theorem == "wen2020.width_sweep")
    assert sweep.holds and sorted(sweep.details["runs"]) == ["w0", "w1", "w2"]
    assert not sweep.assumptions_met and "not Wen's" in sweep.details["assumptions"]["wen_setting"]["note"]  # SimCLR, mini-batch SGD
    assert {r["theorem"] for r in store.bound_checks("w1")} >= set(names) and not store.bound_checks("other")


def test_width_sweep_uses_the_minimum_gradient_norm_logged_during_training(store):
    # Wen's quantity is min_t ||grad L|| along training; where training logged it, the final-
    # weights gradient norm (here rising with width) must not decide the check.
    for i, w in enumerate((0.25, 0.5, 1.0)):
        _fake_run(store, f"w{i}", {"gradient_norm": w, "min_gradient_norm": 1.0 / w, "weight_movement": 0.1 / w}, encoder__width=w)
    sweep = next(c for c in evaluate_sweep_bounds(store.runs(), store) if c.theorem == "wen2020.width_sweep")
    assert sweep.holds and sweep.details["slopes"]["gradient_norm"]["slope"] == pytest.approx(-1.0)
    assert sweep.details["gradient_norm_source"].startswith("min over training steps")


def test_cacr_run_is_paired_with_simclr_on_the_same_data(store):
    _fake_run(store, "simclr", {"alignment": 0.5, "mi_query_negative": 0.05})
    raw = tiny_raw()
    raw["method"] = {"name": "cacr"}
    store.upsert_run("cacr", config_from_dict(raw).to_dict(), status="done")
    store.add_measurements("cacr", [("alignment", 0.3, "t"), ("mi_query_negative", 0.01, "t")])
    check, *claims = evaluate_sweep_bounds(store.runs(), store)
    assert check.theorem == "cacr.claims" and check.holds and not check.assumptions_met  # the weight claim was not measured
    assert check.details["cacr_run"] == "cacr" and check.details["simclr_run"] == "simclr"
    assert [c.theorem for c in claims] == ["cacr.alignment", "cacr.mutual_information", "cacr.hard_negative_weights"]
    assert {c["theorem"] for c in store.bound_checks("cacr")} == {"cacr.claims", "cacr.alignment", "cacr.mutual_information", "cacr.hard_negative_weights"}


def test_cacr_run_is_not_paired_with_a_simclr_run_of_another_training_budget(store):
    _fake_run(store, "simclr", {"alignment": 0.5, "mi_query_negative": 0.05})
    _fake_run(store, "simclr-1-epoch", {"alignment": 0.2, "mi_query_negative": 0.05}, optim__epochs=1)  # an epochs axis of a grid
    raw = tiny_raw()
    raw["method"] = {"name": "cacr"}
    store.upsert_run("cacr", config_from_dict(raw).to_dict(), status="done")
    store.add_measurements("cacr", [("alignment", 0.3, "t"), ("mi_query_negative", 0.01, "t")])
    checks = evaluate_sweep_bounds(store.runs(), store)
    assert {c.details["simclr_run"] for c in checks if c.theorem.startswith("cacr.")} == {"simclr"}
    # a check stored under the old pairing rule is deleted when the runs are evaluated again
    stale = dict(next(c for c in store.bound_checks("cacr") if c["theorem"] == "cacr.alignment"), theorem="cacr.alignment")
    stale["details"] = dict(stale["details"], simclr_run="simclr-1-epoch", grid_runs=["cacr", "simclr-1-epoch"])
    store.add_bound_checks("simclr-1-epoch", [stale])
    evaluate_sweep_bounds(store.runs(), store)
    assert not [c for c in store.bound_checks("simclr-1-epoch") if c["theorem"].startswith("cacr.")]
    evaluate_sweep_bounds([store.get_run("simclr-1-epoch")], store)  # alone: the pair's CACR run is not re-evaluated, nothing deleted
    assert {c["theorem"] for c in store.bound_checks("cacr")} >= {"cacr.claims", "cacr.alignment"}


def test_cacr_claims_on_the_controls_separate_learned_from_by_construction(store):
    """The weight-distance correlation is just as negative on random embeddings: by
    construction. A comparison has no structure-free control (at random init one seed gives
    both runs the same weights), and one pair of runs is one seed: the direction it saw is
    kept, the verdict is 'not resolved'. An MI difference within KSG's resolution is not a
    verdict."""
    _fake_run(store, "simclr", {"alignment": 0.5, "mi_query_negative": 0.05, "mi_resolution": 3.0, "random_init/alignment": 0.9, "random_init/mi_query_negative": 0.0})
    raw = tiny_raw()
    raw["method"] = {"name": "cacr"}
    store.upsert_run("cacr", config_from_dict(raw).to_dict(), status="done")
    store.add_measurements("cacr", [("alignment", 0.3, "t"), ("mi_query_negative", 0.01, "t"), ("mi_resolution", 3.0, "t"), ("cacr_weight_distance_corr", -0.9, "t"),
                                    ("random_init/alignment", 0.9, "c"), ("random_init/mi_query_negative", 0.0, "c"), ("random_init/cacr_weight_distance_corr", -0.95, "c"),
                                    ("random_embedding/cacr_weight_distance_corr", -0.95, "c")])
    checks = {c.theorem: c for c in evaluate_sweep_bounds(store.runs(), store)}
    alignment, weights, mi = checks["cacr.alignment"], checks["cacr.hard_negative_weights"], checks["cacr.mutual_information"]
    assert alignment.holds and alignment.informative is None and verdict(alignment) == "not resolved" and "controls" not in alignment.details
    assert "one pair of runs" in alignment.details["reason"] and checks["cacr.claims"].resolved is False
    assert weights.holds and weights.informative is False and verdict(weights) == "by construction"
    assert set(weights.details["controls"]) == {"random_init", "random_embedding"}
    assert mi.holds is None and "not measurable at this size" in mi.details["reason"]


def test_single_run_checks_are_evaluated_on_the_controls(store):
    """Arora's one-negative bound on the sample is Jensen: it holds on the controls too."""
    own = {"arora_unsupervised_loss": 1.0, "arora_mean_classifier_loss": 0.4, "arora_collision": 0.1, "loss_temperature": 0.5}
    controls = {f"{c}/{k}": v for c in ("random_init", "shuffled_labels") for k, v in {"arora_unsupervised_loss": 0.9, "arora_mean_classifier_loss": 0.7}.items()}
    check = next(c for c in evaluate_terms(own | controls) if c.theorem == "arora2019.one_negative")
    assert check.holds and check.informative is False and verdict(check) == "by construction"
    assert check.details["controls"]["shuffled_labels"]["measured"] == 0.7
    # A control row for a term the check does not read leaves the check without that control.
    other = next(c for c in evaluate_terms(own | {"random_init/sigma": 0.1}) if c.theorem == "arora2019.one_negative")
    assert other.informative is None and "controls" not in other.details


def test_every_statement_is_rendered_for_the_report():
    registry = theorem_registry()
    names = [name for name, _, _ in registry]
    assert set(ALL_THEOREMS) <= set(names) and "wen2020.width_sweep" in names and "cacr.claims" in names
    statements = theorem_statements()
    assert [s.theorem for s in statements] == names
    for s, (_, expr, label) in zip(statements, registry):
        assert s.label == label and s.sympy_latex == sp.latex(expr) and s.latex and s.pretty
