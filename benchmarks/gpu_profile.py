"""Where a SimCLR step spends its time on a GPU: the views, the model, and the top kernels.

    python -m benchmarks.gpu_profile --batch-size 1024

Prints the throughput of the whole step, of the views alone and of the model alone on fixed
views (``measure_throughput(part=...)``), then torch.profiler's table of the CUDA kernels of
a few whole steps, sorted by device time.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from .gpu_throughput import measure_throughput


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--augment", default="abcde")
    p.add_argument("--rows", type=int, default=25)
    a = p.parse_args(argv)
    for part in ("step", "augment", "model"):
        r = measure_throughput(a.batch_size, a.steps, 5, augment=a.augment, part=part)
        print(f"{part:>8}: {r['views_per_s']:>10,.0f} views/s  ({r['device']}, batch {a.batch_size}, augment {a.augment!r})")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        measure_throughput(a.batch_size, 3, 0, augment=a.augment)
    key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=a.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
