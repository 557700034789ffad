"""Run every benchmark and write ``benchmarks/results.json`` and ``benchmarks/results.md``.

    python -m benchmarks.run                  # what `make bench` runs
    python -m benchmarks.run --only knn hessian --repeats 3

Torch and the BLAS behind numpy / scikit-learn are limited to the same number of threads
(``--threads``, default 2), so neither side gets more cores than the other. The SimCLR
training throughput is measured on CUDA when there is a GPU; otherwise the same code path
is run briefly on the CPU and the GPU figure is reported as not measured.

The measure-scaling section (``benchmarks/measure_scaling.py``: every term group against N on a
CIFAR-shaped ResNet-18, and one paper-preset measure priced) takes about an hour on two
cores; ``--no-measure-scaling`` skips it and quotes the stored ``measure_scaling.md`` instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import ModuleType

import torch

from . import (
    measure_scaling, bench_hessian, bench_info_nce, bench_info_nce_lightly, bench_knn, bench_linear_probe, bench_pgd, bench_sharpness, bench_train_step, cli_startup, make_run, pass_cache, sequential_stopping,
)
from .gpu_throughput import measure_throughput
from .harness import Result, machine, markdown_table, measure

HERE = Path(__file__).resolve().parent

# name → (module, interleaved repeats); the slow peers get fewer repeats.
BENCHMARKS: dict[str, tuple[ModuleType, int]] = {
    "info_nce": (bench_info_nce, 3),
    "info_nce_lightly": (bench_info_nce_lightly, 7),
    "knn": (bench_knn, 2),
    "linear_probe": (bench_linear_probe, 2),
    "hessian": (bench_hessian, 3),
    "pgd": (bench_pgd, 2),
    "sharpness": (bench_sharpness, 7),
    "train_step": (bench_train_step, 3),
}


def throughput_section(cuda_steps: int = 50) -> tuple[str, dict]:
    """SimCLR ResNet-18 views/s: the full run on CUDA, a short same-code CPU run otherwise."""
    if torch.cuda.is_available():
        r = measure_throughput(batch_size=512, steps=cuda_steps, warmup=10, device="cuda")
        text = (
            f"SimCLR ResNet-18 training on {r['device']}: **{r['views_per_s']:,.0f} views/s** "
            f"(batch 512, 32×32, augment abcde, bf16 autocast, channels-last, no compile; target ≥ 40,000)."
        )
    else:
        r = measure_throughput(batch_size=16, steps=1, warmup=1, device="cpu")
        text = (
            "SimCLR ResNet-18 training on a GPU: not measured by this run (no CUDA device on this machine; the H100 figures from `benchmarks/gpu_session.sh` are in `benchmarks/gpu/` and the README). "
            f"The same code path on this CPU: {r['views_per_s']:,.1f} views/s (batch 16, 32×32, float32)."
        )
    return text, r


def run_all(names: list[str], size: str = "full", repeats: int | None = None, log=print) -> list[Result]:
    results = []
    for name in names:
        module, default_repeats = BENCHMARKS[name]
        t0 = time.perf_counter()
        result = measure(module.case(size), repeats or default_repeats)
        log(f"{name}: ours {result.ours_s:.4g} s, peer {result.peer_s:.4g} s, ratio {result.ratio:.2f} "
            f"(target ≤ {result.target:g}), agree={result.agree} [{result.detail}] ({time.perf_counter() - t0:.0f} s)")
        results.append(result)
    return results


def scaling_section(out: Path, rerun: bool, threads: int) -> str:
    """The measure-scaling section of results.md: run now, or the stored one (marked as such)."""
    if rerun:
        return measure_scaling.render(measure_scaling.run(list(measure_scaling.SIZES), measure_scaling.WIDTH, measure_scaling.N_TRAIN, out, threads=threads))
    stored = out / "measure_scaling.md"
    if not stored.is_file():
        return "## What `measure` costs\n\nNot measured: run without `--no-measure-scaling`.\n"
    return stored.read_text().replace("## What `measure` costs\n", "## What `measure` costs\n\n(Quoted from the stored `measure_scaling.md`; not rerun by this run.)\n", 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the clbounds benchmarks against their peers.")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats per benchmark (default: per benchmark)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-throughput", action="store_true", help="skip the SimCLR throughput run")
    p.add_argument("--no-startup", action="store_true", help="skip the CLI start-up timing")
    p.add_argument("--no-make-run", action="store_true", help="skip timing the main job against import torch (about 2 min)")
    p.add_argument("--no-sequential", action="store_true", help="skip the sequential-stopping and pass-cache comparisons on the quick grid (about 6 min)")
    p.add_argument("--no-measure-scaling", action="store_true", help="skip the measure-scaling run (about an hour) and quote the stored measure_scaling.md")
    p.add_argument("--out", type=Path, default=HERE, help="folder for results.json and results.md")
    a = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(a.threads)
    with threadpool_limits(a.threads):
        results = run_all(a.only, repeats=a.repeats)
        host = machine()
        table = markdown_table(results, host)
        if not a.no_throughput:
            text, raw = throughput_section()
            table += "\n## Training throughput\n\n" + text + "\n"
            (a.out / "throughput.json").write_text(json.dumps(raw, indent=2) + "\n")
    if not a.no_startup:  # outside the thread limit: each command is its own process
        times = cli_startup.measure_startup()
        table += "\n" + cli_startup.startup_section(times, f"Measured on the machine above, Python {host['python']}, torch {host['torch']}", 7)
    if not a.no_make_run:  # outside the thread limit: the main job is its own process, as `make run` starts it
        timing = make_run.measure()
        (a.out / "make_run.json").write_text(json.dumps(timing, indent=2) + "\n")
        table += "\n" + make_run.markdown(timing)
    if not a.no_sequential:  # the bounds group with and without sequential stopping, every verdict compared
        # one quick grid for both side-by-side comparisons: sequential stopping and the pass cache
        table += "\n" + sequential_stopping.quick_grid_section(a.out / "sequential_stopping.md",
                                                               also=lambda store: pass_cache.store_section(store, a.out / "pass_cache.md")).replace("# Sequential", "## Sequential", 1)
    (a.out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False) + "\n")
    (a.out / "results.md").write_text(table)  # kept if the hour-long scaling run below fails
    with threadpool_limits(a.threads):
        table += "\n" + scaling_section(a.out, rerun=not a.no_measure_scaling, threads=a.threads)
    (a.out / "results.md").write_text(table)
    print()
    print(table)
    return 0 if all(r.agree for r in results) and measure_scaling.agrees(a.out / "measure_scaling.json") else 1


if __name__ == "__main__":
    raise SystemExit(main())
