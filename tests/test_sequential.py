"""The quick grid, shrunk, trained once for two checks on real runs:

- sequential stopping (measure.sequential, the default) never changes a verdict: both paths
  measured by benchmarks/sequential_stopping.py, every bound check compared;
- the report's headline and its findings count the same violations (issue 32);
- the pass cache (one backbone pass of the test inputs and views per model) gives the same
  rows as a pass per group, with fewer backbone images (benchmarks/pass_cache.py).
"""

from __future__ import annotations

import pytest

from benchmarks import pass_cache
from benchmarks.sequential_stopping import compare
from clbounds.experiments.cli import main

from test_report import findings_count, headline_counts

SMALL = ["data.n_train=400", "data.n_test=200", "optim.epochs=1", "optim.batch_size=64", "measure.n_samples=64", "measure.batch_size=32",
         "measure.views=2", "measure.sigma_per_class=4", "measure.hessian_iters=2", "measure.trace_samples=1", "measure.sharpness_steps=2",
         "measure.attack_steps=1", "measure.pac_bayes_units=8"]


@pytest.fixture(scope="module")
def quick_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    assert main(["--store", str(root / "s"), "verify", "--preset", "quick", *SMALL]) == 0
    return root


@pytest.mark.slow
def test_sequential_stopping_never_changes_a_verdict_on_the_quick_grid(quick_grid):
    result = compare(quick_grid / "s", quick_grid / "work")
    assert result["runs"] >= 8 and result["checks"] > 100
    assert result["differ"] == [], result["differ"]
    assert result["skipped"] > 0  # the rule stopped some ascents, so the comparison tests something


@pytest.mark.slow
def test_the_quick_grid_report_counts_its_findings_as_its_headline_does(quick_grid):
    text = (quick_grid / "s" / "quick" / "report.md").read_text()
    counts = headline_counts(text)
    assert counts["informative"] + sum(v for k, v in counts.items() if k not in ("informative", "total")) == counts["total"]  # every check in one class
    assert counts.get("violated", 0) == findings_count(text)


@pytest.mark.slow
def test_the_pass_cache_gives_every_row_of_a_quick_run_with_fewer_backbone_images(quick_grid):
    result = pass_cache.compare(quick_grid / "s", limit=1)
    assert result["runs"] == 1 and result["rows"] > 200
    assert result["differ"] == [], result["differ"]
    assert result["shared"]["forward_images"] < 0.9 * result["separate"]["forward_images"], result
    assert result["shared"]["backward_images"] == result["separate"]["backward_images"]  # the cache holds no-grad passes only
    assert "Rows that differ (rel 1e-5): **0**." in pass_cache.markdown(result, quick_grid / "s")
