"""The measure-scaling benchmark (benchmarks/measure_scaling.py): its instruments, its analysis,
and one tiny end-to-end run. Nothing here asserts a time."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure_scaling as ms  # noqa: E402
from clbounds.experiments.data import load_dataset  # noqa: E402


def test_generated_cifar_files_are_read_by_the_real_reader(tmp_path):
    ms.write_cifar10(tmp_path, n_train=53, n_test=17)
    data = load_dataset("cifar10", root=tmp_path)
    assert tuple(data.x_train.shape) == (53, 3, 32, 32) and tuple(data.x_test.shape) == (17, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and set(data.y_train.tolist()) <= set(range(10))


def test_growth_exponent_recovers_a_power_law_and_ignores_unusable_points():
    sizes = [500, 1000, 2000, 5000]
    assert ms.growth_exponent(sizes, [3e-6 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert ms.growth_exponent(sizes, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert ms.growth_exponent(sizes, [None, 0.0, 2.0, None]) is None  # one usable point


def _records(group: str, times, mems, control: str = "") -> list[dict]:
    return [{"n": n, "control": control, "group": group, "wall_s": t, "peak_mib": m, "forward_images": n, "backward_images": 0, "hvp_images": 0}
            for n, t, m in zip([500, 1000, 2000, 5000], times, mems)]


def test_scaling_summary_flags_superquadratic_time_and_quadratic_memory_only():
    sizes = [500, 1000, 2000, 5000]
    records = (_records("cubic", [1e-9 * n**3 for n in sizes], [20.0 * n / 500 for n in sizes])
               + _records("linear", [1e-3 * n for n in sizes], [20.0 * n / 500 for n in sizes])
               + _records("square_memory", [1e-3 * n for n in sizes], [20.0 * (n / 500) ** 2 for n in sizes], control="random_init")
               + _records("tiny", [1e-3, 2e-3, 8e-3, 0.1], [1.0, 1.0, 2.0, 3.0]))
    summary = {(s["control"], s["group"]): s for s in ms.scaling_summary(records)}
    assert summary[("", "cubic")]["flags"] == ["time grows as N^3.00, faster than N^2"]
    assert summary[("", "linear")]["flags"] == [] and summary[("", "linear")]["time_exponent"] == pytest.approx(1.0)
    assert summary[("random_init", "square_memory")]["flags"] == ["memory grows as N^2.00: not bounded by chunking"]
    tiny = summary[("", "tiny")]  # too fast and too small to fit: no exponent, no flag
    assert (tiny["time_exponent"], tiny["memory_exponent"], tiny["flags"]) == (None, None, [])


def test_the_cost_model_swaps_per_image_costs_and_the_lipschitz_product_bound():
    stand_in = {"control": "", "group": "adversarial", "wall_s": 10.0, "forward_images": 1000, "backward_images": 500, "hvp_images": 100}
    cheap = {"forward_s": 1e-3, "backward_s": 3e-3, "hvp_s": 5e-3}
    dear = {"forward_s": 1e-2, "backward_s": 2e-2, "hvp_s": 4e-2}
    pred = ms.predicted_seconds(stand_in, dear, cheap, 50.0, 0.5)
    assert pred["rest_s"] == pytest.approx(10.0 - 1.0 - 1.5 - 0.5)
    assert pred["network_s"] == pytest.approx(10.0 + 10.0 + 4.0)
    assert pred["lipschitz_upper_s"] == 0.0 and pred["total_s"] == pytest.approx(7.0 + 24.0)
    lip = ms.predicted_seconds({**stand_in, "group": "lipschitz", "control": "random_init"}, dear, cheap, 50.0, 0.5)
    assert lip["rest_s"] == pytest.approx(6.5) and lip["lipschitz_upper_s"] == 50.0  # the control bounds its backbone too


def test_pass_counter_counts_forward_backward_and_hessian_vector_products():
    from clbounds.theory import sharpness

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    original = sharpness._hvp_operator
    counter = ms.PassCounter([net])
    with torch.no_grad():
        net(torch.zeros(7, 4))
    net(torch.zeros(3, 4)).sum()  # a forward under autograd that no backward follows
    net(torch.zeros(5, 4)).sum().backward()
    assert counter.take() == {"forward_images": 15, "backward_images": 5, "hvp_images": 0}
    x = torch.randn(6, 4)
    loss_fn = lambda model, batch: model(batch).pow(2).mean()  # noqa: E731
    sharpness.hessian_top_eigenvalue(net, loss_fn, [x], iters=3)
    counts = counter.take()
    assert counts["hvp_images"] >= 3 * 6 and counts["hvp_images"] % 6 == 0  # one product per Lanczos iteration, at least
    assert counts["forward_images"] == 6 and counts["backward_images"] == 6  # the kept graph: one forward, one backward
    counter.close()
    assert sharpness._hvp_operator is original
    net(torch.zeros(5, 4)).sum().backward()
    assert counter.take() == {"forward_images": 0, "backward_images": 0, "hvp_images": 0}  # removed hooks count nothing


def test_peak_memory_sees_a_block_that_allocates_and_frees():
    if ms._status_kib("VmHWM") is None:
        pytest.skip("no /proc/self/status here")
    with ms.peak_memory() as small:
        pass
    with ms.peak_memory() as big:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so that it is resident
        del block
    if big["peak_mib"] is None:
        pytest.skip("the kernel does not let this process reset its high-water mark")
    assert big["peak_mib"] >= 60 and small["peak_mib"] < 16


CHEAP = {"batch_size": 16, "views": 2, "sigma_per_class": 4, "hessian_iters": 2, "trace_samples": 1, "sharpness_steps": 1,
         "attack_steps": 1, "pac_bayes_units": 2, "center_views": 1}


@pytest.mark.slow
def test_a_tiny_run_times_every_group_and_control_and_prices_the_paper_measure(tmp_path):
    lines = []
    result = ms.run([40, 80], 0.0625, 60, tmp_path, measure_overrides=[f"measure.{k}={v}" for k, v in CHEAP.items()],
                    paper_sizes=(40, 100, 60), paper_width=0.0625, log=lines.append)
    groups = {(r["control"], r["group"]) for r in result["scaling"] if r["n"] == 80}
    assert {("", "adversarial"), ("", "bounds"), ("random_init", "adversarial"), ("shuffled_labels", "sigma"), ("random_embedding", "cacr_weights")} <= groups
    by = {(r["n"], r["control"], r["group"]): r for r in result["scaling"]}
    # the attacks make a whole number of passes per test input: the passes grow by a multiple of the added 40 inputs
    g40, g80 = by[(40, "", "adversarial")]["backward_images"], by[(80, "", "adversarial")]["backward_images"]
    assert g80 > g40 > 0 and (g80 - g40) % 40 == 0
    assert all(c["same_passes"] for c in result["model_check"])  # the stand-in and the ResNet make the same passes
    assert {(p["control"], p["group"]) for p in result["paper"]} == groups  # every group and control priced
    assert all(p["total_s"] >= p["network_s"] >= 0 for p in result["paper"])
    assert by[(80, "", "sharpness")]["hvp_images"] > 0 and by[(80, "random_init", "sharpness")]["hvp_images"] == 0  # Lanczos and Hutchinson on the run only
    stored = json.loads((tmp_path / "measure_scaling.json").read_text())
    assert stored["setup"]["paper_sizes"] == [40, 100, 60] and stored["setup"]["overrides"]
    md = (tmp_path / "measure_scaling.md").read_text()
    assert "### One paper-preset measure, priced" in md and "dominated by" in md and "N=80" in md
    assert all(math.isfinite(s["wall_s"][-1]) for s in result["scaling_summary"])


def test_the_agreement_check_needs_equal_passes_and_predictions_within_the_factor(tmp_path):
    path = tmp_path / "measure_scaling.json"
    assert ms.agrees(path)  # nothing stored, nothing to check
    good = {"control": "", "group": "adversarial", "measured_s": 10.0, "predicted_s": 12.0, "ratio": 1.2, "same_passes": True}
    fast = {**good, "group": "losses", "measured_s": 0.2, "ratio": 5.0}  # under 1 s: timer noise, not judged
    for check, ok in (([good, fast], True), ([{**good, "ratio": 2.5}], False), ([{**good, "same_passes": False}], False)):
        path.write_text(json.dumps({"model_check": check[:1], "width_one_check": check[1:]}))
        assert ms.agrees(path) is ok


def test_make_bench_quotes_the_stored_scaling_section_when_it_is_not_rerun(tmp_path):
    from benchmarks.run import scaling_section

    assert "Not measured" in scaling_section(tmp_path, rerun=False, threads=2)
    (tmp_path / "measure_scaling.md").write_text("## What `measure` costs\n\nMeasured 2026-11-30 ...\n")
    quoted = scaling_section(tmp_path, rerun=False, threads=2)
    assert "not rerun by this run" in quoted and "Measured 2026-11-30" in quoted


def test_usage_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys):
    for argv in (["--sizes", "4"], ["--n-train", "3"], ["--width", "0"], ["--reanalyse", "--out", str(tmp_path)], ["--only", "no_such_group"]):
        with pytest.raises(SystemExit) as exit_info:
            ms.main(argv)
        assert exit_info.value.code == 2, argv
        assert "error:" in capsys.readouterr().err.strip().splitlines()[-1], argv
    assert ms.main(["--width-one-check-only", "--out", str(tmp_path)]) == 2
    assert "no stored run" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written
