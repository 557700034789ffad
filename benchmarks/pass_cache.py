"""One pass, many terms, against a pass per group, side by side on one store: every default
term group and control of each done run measured with the pass cache (the default:
``Context._embedded`` keeps the backbone features and projections of the test inputs and their
views, one pass each per model) and without it (every group embeds them again, as before issue
31). It reports the images each path sent through the backbones, the wall time, and every row
whose value differs (there must be none: rel 1e-5).

    python -m benchmarks.pass_cache --store runs          # a store with a finished grid (make run: runs/)
    python -m benchmarks.pass_cache --store runs --out benchmarks/pass_cache.md

The two paths alternate run by run, each in a fresh context (the process-wide caches of δ and
of the aligned crops emptied before each), so background load and warm caches fall on both
alike. The BatchNorm-recalibrated control's copy of the initial encoder is not watched by the
counter (it is made inside the measure); its passes are in the wall time only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from clbounds.experiments.measurement import context as context_module
from clbounds.experiments.measurement.context import Context, build_context
from clbounds.experiments.measurement.measure import measure_context
from clbounds.experiments.measurement.registry import default_groups
from clbounds.experiments.store.db import Store

from .harness import machine, store_comparison_main
from .measure_scaling import PassCounter

HERE = Path(__file__).resolve().parent


def measure_once(record, shared: bool) -> tuple[dict[str, float], dict[str, int], float]:
    """Every default group and control of one run: its rows, the backbone images by kind, the seconds."""
    context_module._REFERENCE_CACHE.clear()
    context_module._ALIGNED_CACHE.clear()
    original = Context._pass_cache
    if not shared:
        Context._pass_cache = lambda self: {}  # an empty cache at every read: every group embeds its own
    try:
        ctx = build_context(record)
        counter = PassCounter([ctx.model.backbone, ctx.init_model.backbone])
        rows: list = []
        t0 = time.perf_counter()
        try:
            measure_context(ctx, default_groups(ctx.cfg), write=rows.extend)
        finally:
            seconds = time.perf_counter() - t0
            images = counter.take()
            counter.close()
    finally:
        Context._pass_cache = original
    return {name: value for name, value, _ in rows}, images, seconds


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))


def compare(store_root: Path, limit: int | None = None) -> dict:
    """Both paths on every done run of the store (the first ``limit``), alternating which goes first."""
    runs = [r for r in Store(store_root).runs() if r.status == "done"][:limit]
    totals = {flag: {"seconds": 0.0, "forward_images": 0, "backward_images": 0, "hvp_images": 0} for flag in (True, False)}
    differ, rows_compared = [], 0
    for i, record in enumerate(runs):
        out = {}
        for flag in ((True, False) if i % 2 == 0 else (False, True)):
            out[flag] = measure_once(record, flag)
            totals[flag]["seconds"] += out[flag][2]
            for kind, n in out[flag][1].items():
                totals[flag][kind] += n
        shared, separate = out[True][0], out[False][0]
        rows_compared += len(shared)
        if shared.keys() != separate.keys():
            differ.append((record.id, "row names", sorted(shared.keys() ^ separate.keys())))
        differ += [(record.id, k, (shared[k], separate[k])) for k in shared.keys() & separate.keys() if not _same(shared[k], separate[k])]
    return {"runs": len(runs), "rows": rows_compared, "shared": totals[True], "separate": totals[False], "differ": differ}


def markdown(result: dict, store: Path, host: dict | None = None) -> str:
    s, p = result["shared"], result["separate"]
    host = host or machine()
    lines = [
        "# One pass, many terms (`python -m benchmarks.pass_cache`)",
        "",
        f"Store `{store}`: {result['runs']} done runs, every default term group and control measured with the pass cache and without it, "
        f"alternating run by run; {result['rows']} rows compared. {host['date']}, {host['cpu']}, {host['cores']} cores, "
        f"{torch.get_num_threads()} torch threads, torch {host['torch']}.",
        "",
        "| path | backbone images, forward / backward / HVP | wall time, all runs |",
        "|---|---:|---:|",
        f"| a pass per group (before) | {p['forward_images']:,} / {p['backward_images']:,} / {p['hvp_images']:,} | {p['seconds']:.1f} s |",
        f"| pass cache (default) | {s['forward_images']:,} / {s['backward_images']:,} / {s['hvp_images']:,} | {s['seconds']:.1f} s |",
        "",
        f"Forward images saved: **{1 - s['forward_images'] / max(1, p['forward_images']):.0%}**; wall-time ratio cache / before: "
        f"**{s['seconds'] / p['seconds']:.2f}**. Rows that differ (rel 1e-5): **{len(result['differ'])}**" + ("." if not result["differ"] else ":"),
    ]
    lines += [f"- {run} {name}: {values}" for run, name, values in result["differ"]]
    lines += ["", "The images of the BatchNorm-recalibrated control's copy are not counted (the counter watches the encoder and its "
              "initialisation); its passes are in the wall times."]
    return "\n".join(lines) + "\n"


def store_section(store: Path, out: Path | None = None) -> str:
    """:func:`compare` on every run of ``store`` as markdown (a level-2 heading, for ``make bench``), also written to ``out``."""
    text = markdown(compare(store), Path("the quick grid (verify --preset quick)"))
    if out is not None:
        out.write_text(text)
    return text.replace("# One pass", "## One pass", 1)


def run(argv: list[str] | None = None) -> dict:
    return store_comparison_main(__doc__, compare, markdown, argv)


if __name__ == "__main__":
    run()
