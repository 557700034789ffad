"""Sequential stopping (measure.sequential, the default) never changes a verdict: the quick grid,
shrunk, measured both ways by benchmarks/sequential_stopping.py, every bound check compared."""

from __future__ import annotations

import pytest

from benchmarks.sequential_stopping import compare
from clbounds.experiments.cli import main

SMALL = ["data.n_train=400", "data.n_test=200", "optim.epochs=1", "optim.batch_size=64", "measure.n_samples=64", "measure.batch_size=32",
         "measure.views=2", "measure.sigma_per_class=4", "measure.hessian_iters=2", "measure.trace_samples=1", "measure.sharpness_steps=2",
         "measure.attack_steps=1", "measure.pac_bayes_units=8"]


@pytest.mark.slow
def test_sequential_stopping_never_changes_a_verdict_on_the_quick_grid(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "s"), "verify", "--preset", "quick", *SMALL]) == 0
    result = compare(tmp_path / "s", tmp_path / "work")
    assert result["runs"] >= 8 and result["checks"] > 100
    assert result["differ"] == [], result["differ"]
    assert result["skipped"] > 0  # the rule stopped some ascents, so the comparison tests something
