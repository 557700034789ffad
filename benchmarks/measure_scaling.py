"""What `clbounds measure` costs: every term group against N on a CIFAR-shaped run, and one
paper-preset measure, priced (issue #18).

    python -m benchmarks.measure_scaling                  # writes measure_scaling.json / .md here
    python -m benchmarks.measure_scaling --sizes 500 1000 --skip-paper
    python -m benchmarks.measure_scaling --only lipschitz --out /tmp/after   # re-time groups after a change
    python -m benchmarks.measure_scaling --reanalyse      # redo the tables of the stored run from its records

Three parts, in one process, each written to ``measure_scaling.json`` as soon as it exists:

1. **Scaling.** A ResNet-18 at 32×32 (width ``--width``) is trained for one epoch on generated
   images written in the CIFAR-10 file format, so the real reader loads them. Every default
   term group, then every control group, runs in measure's own order at N = ``--sizes`` test
   inputs, with the paper preset's measure settings (batch 512, 8 views, PGD-20, ...). Per
   group it records the wall time, the peak resident memory above the group's start, and the
   images the group sends through the backbone, by kind of pass (:class:`PassCounter`):
   forward, backward (attacks, sharpness, gradients) and Hessian-vector product (Lanczos,
   Hutchinson). The growth exponent of a group is the least-squares slope of log time on
   log N, and likewise for memory.
2. **Cost model.** A group's time is Σ over the kinds of its backbone images × the backbone's
   per-image cost of that kind, plus the rest (augmentation, pairwise terms, solvers, probes,
   the projection head). The passes depend on N,
   n_train and the measure settings, never on the architecture. So the rest is measured with
   a stand-in encoder whose passes cost almost nothing (a 16-unit MLP backbone), on the same
   sizes. The model predicts each group of the scaling run from the stand-in and the per-image
   costs of the scaling width. Prediction against measurement is the agreement check.
3. **The paper preset.** The stand-in runs at the paper preset's sizes: N = 2,000 of 10,000
   test images, n_train = 50,000 (CIFAR-10), every group and control. The cost of one paper
   measure is then the stand-in's rest, plus its passes × the per-image costs of the width-1
   ResNet-18 timed on this machine, plus the certified Lipschitz product bound of the width-1
   ResNet-18, timed directly since it depends on the weights' shapes and not on the passes.

Why the width is reduced: a width-1 ResNet-18 forwards about 57 images/s on two cores, so the
PGD attacks at N = 5,000 alone would take about 8 hours. The growth in N does not depend on
the width, since every group makes a fixed number of passes per input, and the cost model
carries the measured scaling to width 1.

Measured differences from the theorem-level quantities: none; this file only times measure.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import gc
import json
import math
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clbounds.experiments.config import Config
from clbounds.experiments.training.runs import load_encoder
from clbounds.experiments.measurement import context as measure_context_module
from clbounds.experiments.measurement.context import Context, make_context
from clbounds.experiments.measurement.measure import measure_context
from clbounds.experiments.measurement.registry import GROUP_NAMES, default_groups
from clbounds.experiments.store.db import Store
from clbounds.experiments.training.loop import train
from clbounds.experiments.training.runs import load_run_data
from clbounds.experiments.pipeline.verify import grid_items, load_preset
from clbounds.theory import geometry, sharpness

HERE = Path(__file__).resolve().parent
SIZES = (500, 1000, 2000, 5000)
WIDTH, N_TRAIN = 0.0625, 1000  # the scaling run's ResNet-18 width and generated training images
PAPER_N, PAPER_N_TRAIN, PAPER_N_TEST = 2000, 50_000, 10_000
STAND_IN = ["encoder.arch=mlp", "encoder.width=0.03125"]  # a 16-unit MLP backbone: passes that cost almost nothing
#: A group is "superlinear beyond N²" when its time exponent exceeds this, "quadratic memory" beyond the other.
TIME_EXPONENT_LIMIT, MEMORY_EXPONENT_LIMIT = 2.2, 1.5
#: Below this wall time at the largest N a group's exponent is timer noise, not growth.
MIN_SECONDS_FOR_EXPONENT = 1.0


# ---- generated CIFAR-10 files -------------------------------------------------------------


def write_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random 32×32 images with balanced labels in the official CIFAR-10 python layout
    (five training batches and ``test_batch``, pickled dicts of uint8 rows); returns ``root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {f"data_batch_{i + 1}": n for i, n in enumerate(np.diff(np.linspace(0, n_train, 6).round().astype(int)))} | {"test_batch": n_test}
    for name, n in splits.items():
        rows = rng.integers(0, 256, size=(int(n), 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(int(n)) % 10)]
        (folder / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"data": rows, b"labels": labels}, protocol=2))
    return root


def paper_config(root: Path, overrides: list[str]) -> Config:
    """The paper preset's first run on the files under ``root``, trained for one epoch on the CPU."""
    base = [f"data.root={root}", "device=cpu", "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=256"]
    return grid_items(load_preset("paper"), [*base, *overrides])[0].config


def with_n_samples(cfg: Config, n: int) -> Config:
    return dataclasses.replace(cfg, measure=dataclasses.replace(cfg.measure, n_samples=n))


# ---- instruments ---------------------------------------------------------------------------


class PassCounter:
    """Counts the images that go through the backbones it watches, by kind of pass:

    - ``forward``: every forward pass, with or without autograd;
    - ``backward``: a backward pass through the backbone (the gradient reached its output);
    - ``hvp``: a Hessian-vector product by double backward through a kept gradient graph
      (``theory.sharpness._hvp_operator``, wrapped while the counter is open), which no module
      hook sees.
    """

    KINDS = ("forward_images", "backward_images", "hvp_images")

    def __init__(self, modules: list[nn.Module]) -> None:
        self.counts = dict.fromkeys(self.KINDS, 0)
        self._in_hvp = False  # a double backward also reaches the backbone's output: not a backward pass of its own
        self._handles = [m.register_forward_hook(self._hook) for m in modules]
        self._operator = sharpness._hvp_operator
        sharpness._hvp_operator = self._counting_operator

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        n = int(inputs[0].shape[0])
        self.counts["forward_images"] += n
        if torch.is_tensor(output) and output.requires_grad:
            output.register_hook(lambda grad: None if self._in_hvp else self._add("backward_images", n))

    def _add(self, kind: str, n: int) -> None:
        self.counts[kind] += n

    def _counting_operator(self, model, loss_fn, batches, params):  # noqa: ANN001, ANN202
        op = self._operator(model, loss_fn, batches, params)
        images = sum(_images(b) for b in batches)

        def counted(v: torch.Tensor) -> torch.Tensor:
            self._add("hvp_images", images)
            if len(batches) > 1:  # the graph is rebuilt per product (theory.sharpness._hvp): a backward each time too
                self._add("backward_images", images)
            self._in_hvp = True
            try:
                return op(v)
            finally:
                self._in_hvp = False

        return counted

    def take(self) -> dict[str, int]:
        """The counts since the last call."""
        counts, self.counts = self.counts, dict.fromkeys(self.KINDS, 0)
        return counts

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        sharpness._hvp_operator = self._operator


def _images(batch: Any) -> int:
    if torch.is_tensor(batch):
        return int(batch.shape[0])
    return sum(_images(b) for b in batch) if isinstance(batch, (tuple, list)) else 0


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc ``malloc_trim``), so that the
    resident size at a group's start is what is alive, not what earlier groups freed."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the start may include freed pages (a lower peak)
        pass


@contextmanager
def peak_memory() -> Iterator[dict[str, float | None]]:
    """Peak resident memory during the block (MiB): ``peak_mib`` above the block's start, and
    ``peak_rss_mib`` in all. The kernel's high-water mark is reset at entry
    (``/proc/self/clear_refs``, Linux), after free pages were handed back; ``None`` where that
    is not available."""
    out: dict[str, float | None] = {"peak_mib": None, "peak_rss_mib": None}
    _release_free_memory()
    start = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        resettable = start is not None
    except OSError:
        resettable = False
    yield out
    peak = _status_kib("VmHWM")
    if resettable and peak is not None:
        out["peak_mib"], out["peak_rss_mib"] = max(0.0, (peak - start) / 1024), peak / 1024


def per_image_seconds(model: nn.Module, batch: int = 256, repeats: int = 2) -> dict[str, float]:
    """The backbone's cost per image on this machine, at a batch of ``batch`` 32×32 images in
    eval mode, the median of ``repeats``: a forward pass (``forward_s``), the backward pass to
    weights and input that may follow it (``backward_s``: forward + backward less forward), and
    one Hessian-vector product through a kept gradient graph (``hvp_s``)."""
    model = copy.deepcopy(model).eval()
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    x = torch.rand(batch, 3, 32, 32)
    fwd, grad, hvp = [], [], []
    with torch.no_grad():
        model.backbone(x[:8])
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.backbone(x)
        fwd.append(time.perf_counter() - t0)
        xg = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        model.backbone(xg).pow(2).mean().backward()
        grad.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        g = torch.autograd.grad(model.backbone(x).pow(2).mean(), params, create_graph=True)
        v = [torch.randn_like(p) for p in params]
        t0 = time.perf_counter()
        torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        hvp.append(time.perf_counter() - t0)
        del g
    f, fb = statistics.median(fwd) / batch, statistics.median(grad) / batch
    return {"forward_s": f, "backward_s": max(fb - f, 0.0), "hvp_s": statistics.median(hvp) / batch, "batch": batch}


def lipschitz_upper_seconds(model: nn.Module) -> float:
    """Wall time of the certified product bound of the backbone (the lipschitz group's part that
    depends on the weights' shapes, not on the passes)."""
    t0 = time.perf_counter()
    try:
        geometry.lipschitz_upper(model.backbone, input_shape=(3, 32, 32), certified=True)
    except (ValueError, TypeError):
        pass
    return time.perf_counter() - t0


# ---- one measure, timed group by group -----------------------------------------------------


def trained_encoders(cfg: Config, store_root: Path) -> tuple[nn.Module, nn.Module]:
    """(trained, initial) encoder of ``cfg``'s run, trained here for its one epoch."""
    record = train(cfg, Store(store_root), progress=False)
    shape = (3, 32, 32)
    return load_encoder(record, shape).eval(), load_encoder(record, shape, random_init=True).eval()


def timed_measure(cfg: Config, data, model: nn.Module, init_model: nn.Module, label: dict[str, Any], log: Callable[[str], None] = print,
                  only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every default group and control group of ``cfg`` on one encoder, in measure's order: one
    record per group (``group`` "context" is building the views and δ). ``only``: just these
    groups of the encoder itself, no controls."""
    counter = PassCounter([model.backbone, init_model.backbone])
    records = []
    measure_context_module._REFERENCE_CACHE.clear()  # every measure pays for its δ, as the first of a process does

    def record(control: str, group: str, fn: Callable[[], Any]) -> Any:
        counter.take()
        with peak_memory() as mem:
            t0 = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - t0
        passes = counter.take()
        records.append({**label, "control": control, "group": group, "wall_s": wall, **mem, **passes})
        log(f"  N={label['n']} {control + '/' if control else ''}{group}: {wall:.1f} s, images {passes}, peak {mem['peak_mib'] or 0:.0f} MiB")
        return out

    if only is not None:  # the encoder's own groups only: no controls
        cfg = dataclasses.replace(cfg, measure=dataclasses.replace(cfg.measure, controls=False))
    try:
        ctx: Context = record("", "context", lambda: make_context(cfg, data, model, init_model, torch.device("cpu")))
        names = [n for n in default_groups(cfg) if only is None or n in only]
        measure_context(ctx, names, write=lambda rows: None, run_group=record)  # measure's own order, skips and controls
    finally:
        counter.close()
    return records


# ---- analysis ------------------------------------------------------------------------------


def growth_exponent(sizes: list[float], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(size); None with fewer than two usable points."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v is not None and v > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return r["control"], r["group"]


def scaling_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (control, group): time and memory at each N, their growth exponents and the flags."""
    out = []
    for key in dict.fromkeys(_key(r) for r in records):
        rows = sorted((r for r in records if _key(r) == key), key=lambda r: r["n"])
        sizes = [r["n"] for r in rows]
        times, mems = [r["wall_s"] for r in rows], [r["peak_mib"] for r in rows]
        t_exp = growth_exponent(sizes, times) if max(times) >= MIN_SECONDS_FOR_EXPONENT else None
        # memory below 16 MiB is allocator noise; the exponent is of what the group holds at once
        m_exp = growth_exponent(sizes, mems) if all(m is not None for m in mems) and max(mems) >= 16 else None
        flags = []
        if t_exp is not None and t_exp > TIME_EXPONENT_LIMIT:
            flags.append(f"time grows as N^{t_exp:.2f}, faster than N^2")
        if m_exp is not None and m_exp > MEMORY_EXPONENT_LIMIT:
            flags.append(f"memory grows as N^{m_exp:.2f}: not bounded by chunking")
        out.append({"control": key[0], "group": key[1], "sizes": sizes, "wall_s": times, "peak_mib": mems,
                    **{kind: [r[kind] for r in rows] for kind in PassCounter.KINDS},
                    "time_exponent": t_exp, "memory_exponent": m_exp, "flags": flags})
    return out


def predicted_seconds(stand_in: dict[str, Any], costs: dict[str, float], stand_in_costs: dict[str, float], lipschitz_s: float, stand_in_lipschitz_s: float) -> dict[str, float]:
    """A group's time on the target backbone: the stand-in's time less its own passes (the
    rest), plus the same passes at the target's per-image costs (and, for the lipschitz
    group, the target's product bound instead of the stand-in's)."""
    passes = lambda c: sum(stand_in[kind] * c[cost] for kind, cost in zip(PassCounter.KINDS, ("forward_s", "backward_s", "hvp_s")))  # noqa: E731
    bounds_lipschitz = stand_in["group"] == "lipschitz"  # the run's and the random-init control's: both bound their backbone
    rest = max(0.0, stand_in["wall_s"] - passes(stand_in_costs) - (stand_in_lipschitz_s if bounds_lipschitz else 0.0))
    upper = lipschitz_s if bounds_lipschitz else 0.0
    return {"rest_s": rest, "network_s": passes(costs), "lipschitz_upper_s": upper, "total_s": rest + passes(costs) + upper}


def _predicted(stand_in: dict[str, Any], costs: dict[str, Any], target: str) -> dict[str, float]:
    """:func:`predicted_seconds` for the backbone ``target`` of ``costs`` ("scaling" or "paper")."""
    return predicted_seconds(stand_in, costs[target], costs["stand_in"], costs[f"lipschitz_upper_{target}_s"], costs["lipschitz_upper_stand_in_s"])


def compare(stand_in: list[dict[str, Any]], measured: list[dict[str, Any]], costs: dict[str, Any], target: str) -> list[dict[str, Any]]:
    """The cost model against measured groups: per group measured on the target backbone, the
    prediction from the stand-in's record of the same group and sizes, and whether both made
    the same forward and backward passes (they must). Hessian-vector products may differ:
    Lanczos stops once it has converged (``theory.sharpness``), after at most
    ``measure.hessian_iters`` products, so their number depends on the network."""
    stand = {(r["n"], *_key(r)): r for r in stand_in}
    rows = []
    for m in measured:
        s = stand.get((m["n"], *_key(m)))
        if s is None:
            continue
        pred = _predicted(s, costs, target)
        rows.append({"control": m["control"], "group": m["group"], "measured_s": m["wall_s"], "predicted_s": pred["total_s"],
                     "ratio": pred["total_s"] / m["wall_s"] if m["wall_s"] > 0 else None,
                     "same_passes": _passes(s)[:2] == _passes(m)[:2], "hvp_images": (s["hvp_images"], m["hvp_images"])})
    return rows


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Every derived table of ``result`` from its raw records (so a stored run can be re-analysed)."""
    c = result.get("costs")
    if result.get("scaling"):
        result["scaling_summary"] = scaling_summary(result["scaling"])
    if c and result.get("scaling") and result.get("stand_in_check"):
        first = [r for r in result["scaling"] if r["n"] == result["setup"]["check_n"]]
        result["model_check"] = compare(result["stand_in_check"], first, c, "scaling")
    if c and result.get("width_one") and result.get("stand_in_check"):
        wide = [r for r in result["width_one"] if r["group"] != "context"]
        result["width_one_check"] = compare(result["stand_in_check"], wide, c, "paper")
    if c and result.get("paper_stand_in"):
        result["paper"] = paper_estimate(result["paper_stand_in"], c)
    return result


def paper_estimate(stand_in: list[dict[str, Any]], costs: dict[str, Any]) -> list[dict[str, Any]]:
    """One paper-preset measure per group on this CPU, from the stand-in at the paper's sizes."""
    rows = []
    for s in stand_in:
        pred = _predicted(s, costs, "paper")
        rows.append({"control": s["control"], "group": s["group"], **{kind: s[kind] for kind in PassCounter.KINDS}, **pred})
    return rows


# ---- report --------------------------------------------------------------------------------


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def _fmt_exp(e: float | None) -> str:
    return "–" if e is None else f"{e:.2f}"


def _passes(r: dict[str, Any]) -> tuple[int, ...]:
    return tuple(r[kind] for kind in PassCounter.KINDS)


def _passes_text(r: dict[str, Any]) -> str:
    """Backbone images as forward / backward / Hessian-vector product."""
    return " / ".join(f"{r[kind]:,}" for kind in PassCounter.KINDS)


def _same_text(c: dict[str, Any]) -> str:
    same = "yes" if c["same_passes"] else "**no**"
    stand, target = c["hvp_images"]
    return same if stand == target else f"{same}; HVP images {stand:,} vs {target:,} (Lanczos stops at convergence)"


def _check_table(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown rows of a cost-model check, measured against predicted, one group a row."""
    return ["| group | measured | predicted | predicted / measured | same passes |", "|---|---:|---:|---:|---|",
            *[f"| {_name(c)} | {_fmt_s(c['measured_s'])} | {_fmt_s(c['predicted_s'])} | {c['ratio']:.2f} | {_same_text(c)} |" for c in rows], ""]


def _name(r: dict[str, Any]) -> str:
    return f"{r['control']}/{r['group']}" if r["control"] else r["group"]


def render(result: dict[str, Any]) -> str:
    """The Markdown of ``measure_scaling.md`` (and the section of ``results.md``)."""
    host, setup = result["machine"], result["setup"]
    lines = [
        "## What `measure` costs",
        "",
        f"Measured {host['date']} on {host['cpu']} ({host['cores']} cores, {setup['threads']} torch threads), GPU: {host['gpu']}; torch {host['torch']}. "
        f"`python -m benchmarks.measure_scaling` ({setup['elapsed_s'] / 60:.0f} min).",
        "",
        *[f"Note: {note}\n" for note in result.get("notes", [])],
    ]
    scaling = result.get("scaling_summary") or []
    if scaling:
        sizes = scaling[0]["sizes"]
        lines += [
            f"### Every term group against N: {setup['scaling_model']}",
            "",
            f"Generated 32×32 images in the CIFAR-10 file format, n_train = {setup['scaling_n_train']:,}, n_test = {setup['scaling_n_test']:,}; "
            f"the paper preset's measure settings ({setup['measure']}); one epoch of training. "
            "Wall time, and the peak resident memory above the group's start (free pages handed back first); exponent = least-squares slope of log time (memory) on log N "
            f"(– where the group takes under {MIN_SECONDS_FOR_EXPONENT:g} s, or holds under 16 MiB, at every N). Backbone images = images through the backbone at the largest N, forward / backward / Hessian-vector product.",
            "",
            "| group | " + " | ".join(f"N={n:,}" for n in sizes) + " | time exp. | added MiB at largest N | memory exp. | backbone images | flag |",
            "|---|" + "---:|" * len(sizes) + "---:|---:|---:|---:|---|",
        ]
        for s in scaling:
            lines.append(f"| {_name(s)} | " + " | ".join(_fmt_s(t) for t in s["wall_s"]) + f" | {_fmt_exp(s['time_exponent'])} | "
                         f"{(s['peak_mib'][-1] or 0):.0f} | {_fmt_exp(s['memory_exponent'])} | {_passes_text({kind: s[kind][-1] for kind in PassCounter.KINDS})} | {'; '.join(s['flags']) or 'none'} |")
        totals = [sum(s["wall_s"][i] for s in scaling) for i in range(len(sizes))]
        lines += ["| **all** | " + " | ".join(f"**{_fmt_s(t)}**" for t in totals) + f" | {_fmt_exp(growth_exponent(sizes, totals))} | | | | |", ""]
        peaks = [max((r.get("peak_rss_mib") or 0.0) for r in result["scaling"] if r["n"] == n) for n in sizes]
        if any(peaks):
            lines += ["Peak resident memory of the whole process during measure (data, model, caches and the largest group): "
                      + ", ".join(f"N={n:,}: {p / 1024:.2f} GiB" for n, p in zip(sizes, peaks)) + ".", ""]
        flagged = [s for s in scaling if s["flags"]]
        lines.append("No group grows faster than N² in time or holds memory that grows faster than N^1.5." if not flagged else
                     "Flagged: " + "; ".join(f"{_name(s)}: {', '.join(s['flags'])}" for s in flagged) + ".")
        lines += ["", result.get("clique_note", ""), ""]
    check = result.get("model_check") or []
    if check:
        n = setup["check_n"]
        worst = max(abs(math.log(c["ratio"])) for c in check if c["ratio"] and c["measured_s"] >= 1.0) if any(c["measured_s"] >= 1.0 for c in check) else 0.0
        lines += [
            f"### The cost model against the scaling run at N = {n:,}",
            "",
            f"Predicted = the stand-in ({setup['stand_in']}) on the same sizes, less its own backbone passes, plus the same passes at the scaling backbone's "
            f"per-image cost ({costs_text(result['costs']['scaling'])}). Same passes = the stand-in and the ResNet send the same images forward and backward through the backbone. "
            f"Largest factor between predicted and measured, groups of 1 s or more: {math.exp(worst):.2f} (the check allows {MODEL_FACTOR:g}).",
            "",
            *_check_table(check),
        ]
    wide = result.get("width_one_check") or []
    if wide:
        lines += [
            f"### The cost model at the paper's width: ResNet-18 width {setup.get('paper_width', 1.0):g}, N = {setup['check_n']:,}",
            "",
            f"The groups {', '.join(f'`{g}`' for g in WIDTH_ONE_GROUPS)} timed on the width-{setup.get('paper_width', 1.0):g} ResNet-18 itself, against the prediction "
            "from the stand-in at the same sizes and the per-image costs of that ResNet (the costs the paper estimate below uses).",
            "",
            *_check_table(wide),
        ]
    paper = result.get("paper") or []
    if paper:
        total = sum(p["total_s"] for p in paper)
        top = sorted(paper, key=lambda p: -p["total_s"])
        lines += [
            "### One paper-preset measure, priced",
            "",
            f"The paper preset's run: ResNet-18 width {setup['paper_width']:g} at 32×32, N = {setup['paper_sizes'][0]:,} of {setup['paper_sizes'][2]:,} test inputs, n_train = {setup['paper_sizes'][1]:,}, {setup['measure']}, "
            f"every default group and every control. Passes and the rest from the stand-in at exactly these sizes ({_fmt_s(setup['paper_stand_in_s'])}); "
            f"per-image costs of that ResNet-18 on this CPU: {costs_text(result['costs']['paper'])}; its certified Lipschitz product bound: {_fmt_s(result['costs']['lipschitz_upper_paper_s'])}.",
            "",
            f"**One paper-preset measure: about {_fmt_s(total)} on this CPU** (extrapolated), "
            f"dominated by `{_name(top[0])}` ({top[0]['total_s'] / total:.0%}); on a GPU: {result.get('gpu_note', 'not measured (no GPU lent)')}.",
            "",
            "| group | backbone images (forward / backward / HVP) | network | rest | total | share |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for p in top:
            lines.append(f"| {_name(p)} | {_passes_text(p)} | {_fmt_s(p['network_s'] + p['lipschitz_upper_s'])} | {_fmt_s(p['rest_s'])} | {_fmt_s(p['total_s'])} | {p['total_s'] / total:.1%} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def costs_text(c: dict[str, float]) -> str:
    return (f"{1 / c['forward_s']:,.0f} images/s forward, {1 / c['backward_s']:,.0f} images/s backward, "
            f"{1 / c['hvp_s']:,.0f} images/s Hessian-vector product (batch {c['batch']})")


CLIQUE_NOTE = ("σ(δ) (group sigma) uses at most `measure.sigma_per_class` = {per_class} test inputs per class whatever N is, so its cost does not grow "
               "with N; its maximum-clique solver is exact (branch and bound, exponential in the worst case) for classes of at most "
               "{exact} members and switches to a greedy maximal clique, a lower bound on the clique, above that "
               "(`theory.geometry.sigma_delta(exact_max_size=64)`); at the default {per_class} per class it is always exact.")


# ---- the run -------------------------------------------------------------------------------


def run(sizes: list[int], width: float, n_train: int, out: Path, skip_paper: bool = False, measure_overrides: list[str] | None = None,
        paper_sizes: tuple[int, int, int] = (PAPER_N, PAPER_N_TRAIN, PAPER_N_TEST), paper_width: float = 1.0, threads: int = 2,
        log: Callable[[str], None] = print, only: list[str] | None = None) -> dict[str, Any]:
    """All three parts. ``measure_overrides`` (cheaper estimators), other ``paper_sizes`` and a
    ``paper_width`` other than the paper's 1.0 are for tests only; all are recorded. ``only``:
    just the scaling part, for these groups of the run itself (no controls, no pricing)."""
    from .harness import machine

    torch.set_num_threads(threads)
    start = time.perf_counter()
    extra = list(measure_overrides or [])
    n_test = max(sizes)
    result: dict[str, Any] = {"machine": machine(), "setup": {"threads": threads, "sizes": sizes, "scaling_n_train": n_train, "scaling_n_test": n_test,
                                                               "check_n": min(sizes), "stand_in": " ".join(STAND_IN), "overrides": extra,
                                                               "paper_sizes": list(paper_sizes), "paper_width": paper_width, "only": only}}

    def save() -> None:
        result["setup"]["elapsed_s"] = time.perf_counter() - start
        write_results(result, out)

    with tempfile.TemporaryDirectory(prefix="clbounds-measure-scaling-") as tmp:
        tmp = Path(tmp)
        small = write_cifar10(tmp / "small", n_train, n_test)
        cfg = paper_config(small, [f"encoder.width={width}", *extra])
        m = cfg.measure
        result["setup"]["measure"] = (f"measure batch {m.batch_size}, {m.views} views, PGD-{m.attack_steps}, {m.sharpness_steps} sharpness steps, "
                                      f"{m.hessian_iters} Lanczos iterations, {m.trace_samples} Hutchinson probes, {m.center_views} centre views, "
                                      f"{m.pac_bayes_units} PAC-Bayes units, {m.sigma_per_class} per class for σ")
        result["setup"]["scaling_model"] = f"ResNet-18 width {width:g} ({sum(p.numel() for p in load_encoder_shape(cfg).parameters()):,} parameters)"
        result["clique_note"] = CLIQUE_NOTE.format(per_class=m.sigma_per_class, exact=64)
        model, init_model = trained_encoders(cfg, tmp / "store")
        data = load_run_data(cfg)
        log(f"scaling run: {result['setup']['scaling_model']}, n_train={n_train}")

        if only is None:  # --only re-times some groups after a change: no pricing
            # per-image costs first: they are short, and every later part needs them
            stand_cfg = paper_config(small, [*STAND_IN, *extra])
            stand_model, stand_init = trained_encoders(stand_cfg, tmp / "store")
            full = load_encoder_shape(paper_config(small, [f"encoder.width={paper_width}", *extra]))
            result["costs"] = {"scaling": per_image_seconds(model), "stand_in": per_image_seconds(stand_model), "paper": per_image_seconds(full),
                               "lipschitz_upper_scaling_s": lipschitz_upper_seconds(model), "lipschitz_upper_stand_in_s": lipschitz_upper_seconds(stand_model),
                               "lipschitz_upper_paper_s": lipschitz_upper_seconds(full)}
            del full
            log(f"per-image costs: {json.dumps(result['costs'])}")

            # the cost model's check: the stand-in at the smallest scaling size
            stand_data = load_run_data(stand_cfg)
            result["stand_in_check"] = timed_measure(with_n_samples(stand_cfg, min(sizes)), stand_data, stand_model, stand_init, {"n": min(sizes), "n_train": n_train, "model": "stand-in"}, log)
            save()

            if not skip_paper:  # the stand-in at the paper preset's sizes
                n_paper, n_train_paper, n_test_paper = paper_sizes
                big = write_cifar10(tmp / "paper", n_train_paper, n_test_paper, seed=1)
                paper_cfg = with_n_samples(paper_config(big, [*STAND_IN, *extra]), n_paper)
                p_model, p_init = trained_encoders(paper_cfg, tmp / "paper-store")
                t0 = time.perf_counter()
                result["paper_stand_in"] = timed_measure(paper_cfg, load_run_data(paper_cfg), p_model, p_init, {"n": n_paper, "n_train": n_train_paper, "model": "stand-in"}, log)
                result["setup"]["paper_stand_in_s"] = time.perf_counter() - t0
                del p_model, p_init
                save()

        result["scaling"] = []
        for n in sizes:
            result["scaling"] += timed_measure(with_n_samples(cfg, n), data, model, init_model, {"n": n, "n_train": n_train, "model": "resnet18"}, log, only=only)
            save()
        if only is None:
            result["width_one"] = width_one_records(small, n_train, min(sizes), paper_width, extra, log)
            save()
    return result


#: The groups timed on the width-1 ResNet-18 itself: forward passes (losses, shift, geometry with
#: its training views) and backward passes (optimization), minutes in all on two cores.
WIDTH_ONE_GROUPS = ["losses", "geometry", "shift", "optimization"]


def width_one_records(root: Path, n_train: int, n: int, width: float = 1.0, extra: list[str] | None = None,
                      log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """``WIDTH_ONE_GROUPS`` measured on the ResNet-18 of ``width`` at N = ``n``, on its initial
    weights (a pass costs the same whatever the weights): the cost model's check at the paper's
    width, against the stand-in's records of the same sizes (:func:`analyse`)."""
    cfg = with_n_samples(paper_config(root, [f"encoder.width={width}", *(extra or [])]), n)
    model = load_encoder_shape(cfg)
    return timed_measure(cfg, load_run_data(cfg), model, copy.deepcopy(model), {"n": n, "n_train": n_train, "model": f"resnet18 width {width:g}"}, log, only=WIDTH_ONE_GROUPS)


def load_encoder_shape(cfg: Config) -> nn.Module:
    """The encoder ``cfg`` describes at its seed's initial weights (its shapes are what counts)."""
    from clbounds.experiments.training.runs import build_encoder

    torch.manual_seed(cfg.seed)
    return build_encoder(cfg, (3, 32, 32)).eval()


#: The cost model's check passes when the stand-in and the ResNet make the same backbone passes in
#: every group, and the model predicts each group of 1 s or more within this factor.
MODEL_FACTOR = 2.0


def agrees(path: Path) -> bool:
    """The agreement check of a stored run (True where no run is stored: nothing to check)."""
    if not path.is_file():
        return True
    stored = json.loads(path.read_text())
    check = stored.get("model_check", []) + stored.get("width_one_check", [])
    return all(c["same_passes"] for c in check) and all(1 / MODEL_FACTOR <= c["ratio"] <= MODEL_FACTOR for c in check if c["measured_s"] >= 1.0)


def write_results(result: dict[str, Any], out: Path) -> None:
    """Re-derive every table of ``result`` and write ``measure_scaling.json`` and ``.md`` to ``out``."""
    analyse(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "measure_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "measure_scaling.md").write_text(render(result))


def rerun_width_one_check(out: Path, threads: int = 2) -> int:
    """The width-1 check on a stored run: the same generated files (same seed), its stand-in records."""
    path = out / "measure_scaling.json"
    if not path.is_file():
        print(f"error: no stored run at {path}; run the whole benchmark first", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    result = json.loads(path.read_text())
    setup = result["setup"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clbounds-measure-scaling-") as tmp:
        small = write_cifar10(Path(tmp), setup["scaling_n_train"], setup["scaling_n_test"])
        result["width_one"] = width_one_records(small, setup["scaling_n_train"], setup["check_n"], setup.get("paper_width", 1.0), setup["overrides"])
    setup["elapsed_s"] += time.perf_counter() - start  # rerun in a second process: still part of the benchmark's time
    write_results(result, out)
    print((out / "measure_scaling.md").read_text())
    return 0 if agrees(path) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time every term group of measure against N, and price one paper-preset measure.")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="test inputs N (default: 500 1000 2000 5000)")
    p.add_argument("--width", type=float, default=WIDTH, help=f"ResNet-18 width of the scaling run (default {WIDTH:g})")
    p.add_argument("--n-train", type=int, default=N_TRAIN, help=f"generated training images of the scaling run (default {N_TRAIN})")
    p.add_argument("--skip-paper", action="store_true", help="skip the stand-in run at the paper preset's sizes")
    p.add_argument("--only", nargs="+", choices=list(GROUP_NAMES), default=None, help="only time these groups of the run (no controls, no pricing), e.g. after a change")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--width-one-check-only", action="store_true", help="only (re)run the width-1 check of the cost model on the stored measure_scaling.json")
    p.add_argument("--reanalyse", action="store_true", help="only recompute the tables of the stored measure_scaling.json from its records")
    a = p.parse_args(argv)
    if a.reanalyse:
        path = a.out / "measure_scaling.json"
        if not path.is_file():
            p.error(f"no stored run at {path}")
        write_results(json.loads(path.read_text()), a.out)
        return 0 if agrees(path) else 1
    if a.width_one_check_only:
        return rerun_width_one_check(a.out, a.threads)
    if min(a.sizes) < 8 or a.n_train < 20 or not 0 < a.width <= 4:
        p.error("sizes must be >= 8, --n-train >= 20, 0 < --width <= 4")
    run(sorted(set(a.sizes)), a.width, a.n_train, a.out, skip_paper=a.skip_paper, threads=a.threads, only=a.only)
    print((a.out / "measure_scaling.md").read_text())
    return 0 if agrees(a.out / "measure_scaling.json") else 1


if __name__ == "__main__":
    raise SystemExit(main())
