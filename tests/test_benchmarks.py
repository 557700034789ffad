"""The benchmarks run at a tiny size and their agreement checks pass. Nothing here is timed:
the time ratios are measured by `make bench`, never asserted in a test.

The peers (pytorch-metric-learning, lightly, PyHessian, torchattacks) are installed by `make bench`
only, so the rows that need one are skipped where it is absent.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

# `benchmarks/` is a folder of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (  # noqa: E402
    bench_hessian, bench_info_nce, bench_info_nce_lightly, bench_knn, bench_linear_probe, bench_pgd, bench_sharpness, bench_train_step,
)
from benchmarks.gpu_throughput import measure_throughput  # noqa: E402
from benchmarks.harness import Case, Result, machine, markdown_table, measure  # noqa: E402

PEERS = {
    bench_info_nce: "pytorch_metric_learning",
    bench_info_nce_lightly: "lightly",
    bench_knn: "sklearn",
    bench_linear_probe: "sklearn",
    bench_hessian: "pyhessian",
    bench_pgd: "torchattacks",
    bench_sharpness: None,
    bench_train_step: None,
}


@pytest.mark.parametrize("module", list(PEERS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_benchmark_runs_tiny_and_agrees_with_its_peer(module):
    if PEERS[module] is not None:
        pytest.importorskip(PEERS[module])
    case = module.case("tiny")
    ok, detail = case.check()
    assert ok, detail
    assert case.target > 0 and case.name and case.peer and case.size


def test_plain_sharpness_loop_restores_the_weights():
    model, x, y = bench_hessian.fitted_convnet(*bench_sharpness.SIZES["tiny"], fit_steps=2)
    before = [p.detach().clone() for p in model.parameters()]
    value = bench_sharpness.plain_sharpness(model, x, y, rho=0.05, steps=3)
    assert value >= 0
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_info_nce_falls_back_to_a_smaller_batch_when_the_peer_would_not_fit(monkeypatch):
    pytest.importorskip("pytorch_metric_learning")
    assert bench_info_nce.peer_peak_bytes(512) > 7 * bench_info_nce.peer_peak_bytes(256)  # ~B³
    monkeypatch.setattr(bench_info_nce, "available_bytes", lambda: 0)
    case = bench_info_nce.case("full")
    assert case.size.startswith("B=256") and "512" in case.note
    monkeypatch.setattr(bench_info_nce, "available_bytes", lambda: 10**15)
    case = bench_info_nce.case("full")
    assert case.size.startswith("B=512") and case.note == ""


def test_measure_interleaves_ours_and_peer_in_alternating_order():
    calls: list[str] = []
    case = Case(
        name="x", peer="y", ours=lambda: calls.append("ours") or 1, run_peer=lambda: calls.append("peer") or 1,
        agree=lambda a, p: (a == p, "equal"), target=1.0, size="s",
    )
    result = measure(case, repeats=4)
    # warm-up/check, then ours-first and peer-first rounds alternately
    assert calls == ["ours", "peer"] + ["ours", "peer", "peer", "ours"] * 2
    assert result.agree and result.detail == "equal"
    assert set(result.to_dict()) >= {"name", "ours_s", "peer", "peer_s", "ratio", "agree"}
    assert result.ratio == pytest.approx(result.ours_s / result.peer_s)
    assert result.ratio_low <= result.ratio_high and set(result.to_dict()) >= {"ratio_low", "ratio_high"}


def test_markdown_table_lists_every_row_with_the_machine():
    rows = [
        Result("fast op", 0.002, "lib A", 0.01, 0.2, True, 0.5, "identical", "n=1", ""),
        Result("slow op", 3.0, "lib B", 2.0, 1.5, True, 1.0, "|Δ| = 0", "n=2", "limited by memory bandwidth"),
        Result("wrong op", 1.0, "lib C", 2.0, 0.5, False, 1.0, "differs", "n=3", ""),
    ]
    host = machine()
    table = markdown_table(rows, host)
    lines = table.splitlines()
    assert host["torch"] in table and host["date"] in table and str(host["cores"]) in table
    assert sum(line.startswith("| ") for line in lines) == 1 + len(rows)  # header + rows
    assert "| 2.0 ms | 10.0 ms | 0.20 | ≤ 0.5 | yes (identical) | yes |" in table
    assert "| 1.50 | ≤ 1 | yes (\\|Δ\\| = 0) | **no** |" in table
    assert "**NO** (differs)" in table
    assert "- slow op: limited by memory bandwidth" in table
    spread = markdown_table([Result("noisy op", 1.0, "lib D", 1.0, 0.98, True, 1.0, "same", "n=4", "", 0.93, 1.04),
                             Result("steady op", 0.5, "lib E", 1.0, 0.5, True, 1.0, "same", "n=5", "", 0.49, 0.52)], host)
    assert "| 0.98 (0.93–1.04) | ≤ 1 | yes (same) | yes, within spread |" in spread
    assert "| 0.50 (0.49–0.52) | ≤ 1 | yes (same) | yes |" in spread


@pytest.mark.parametrize("part", ["augment", "model"])
def test_throughput_times_each_part_of_the_step_on_cpu(part):
    r = measure_throughput(batch_size=4, steps=1, warmup=0, width=0.0625, image_size=8, device="cpu", part=part)
    assert r["part"] == part and r["views"] == 8 and r["views_per_s"] > 0 and math.isfinite(r["loss"])
    with pytest.raises(ValueError, match="part"):
        measure_throughput(batch_size=4, device="cpu", part="data")


def test_throughput_runs_the_training_step_on_cpu():
    threads_before = torch.get_num_threads()
    r = measure_throughput(batch_size=4, steps=1, warmup=1, width=0.0625, image_size=16, device="cpu")
    assert r["views"] == 2 * 4 and r["views_per_s"] > 0
    assert math.isfinite(r["loss"]) and r["loss"] > 0
    assert r["device"] == "cpu" and r["channels_last"] is False and r["autocast"].startswith("off")
    assert torch.get_num_threads() == threads_before
    with pytest.raises(ValueError):
        measure_throughput(batch_size=1, device="cpu")


def test_cli_startup_section_replaces_itself_and_keeps_the_rest():
    from benchmarks.cli_startup import HEADING, replace_section, startup_section

    times = {"python -c pass": 0.02, 'python -c "import torch"': 1.0, "clbounds --help": 0.3}
    section = startup_section(times, "Measured here", 7)
    assert "| `clbounds --help` | 300 ms | 0.30 |" in section and section.startswith(HEADING)
    doc = "# Benchmarks\n\ntable\n\n## Training throughput\n\nviews/s\n"
    once = replace_section(doc, section)
    assert once.startswith(doc.rstrip("\n")) and once.endswith(section)
    again = replace_section(once.replace("300 ms", "999 ms") + "\n## Later\n\nkept\n", section)
    assert again.count(HEADING) == 1 and "999 ms" not in again and again.endswith("## Later\n\nkept\n")


def test_lightly_is_loaded_without_torchvision_and_leaves_no_placeholder_behind():
    pytest.importorskip("lightly")
    had_torchvision = "torchvision" in sys.modules
    loss_class = bench_info_nce_lightly.lightly_ntxent()
    assert ("torchvision" in sys.modules) == had_torchvision
    z1, z2 = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    from clbounds.theory.losses import info_nce

    assert float(loss_class(temperature=0.3)(z1, z2)) == pytest.approx(float(info_nce(z1, z2, 0.3)), abs=1e-12)


def test_make_run_section_states_the_ratio_its_target_and_the_verdict():
    from benchmarks.make_run import markdown

    text = markdown({"main_job_s": 120.0, "import_torch_s": 3.0, "import_torch_spread_s": [2.9, 3.2], "import_torch_runs": 10, "ratio": 40.0,
                     "target": 50.0, "headline": "verdict over the 10 runs: 0 of 213 checks are informative"})
    assert "**40×** (target ≤ 50×)" in text and "median of 10 fresh processes" in text and "over the 10 runs: 0 of 213" in text
