"""Have the estimators settled? Each estimate against its budget on one trained run.

    python -m benchmarks.studies.convergence --out docs/estimators.md

trains ``quick-simclr-synthetic`` into the store (or reuses it), then measures six estimates
at a ladder of budgets, each with everything else fixed:

| estimate | budget | tolerance |
|---|---|---|
| σ(δ) (Huang et al.) | inputs per class | 0.05 absolute |
| R_ε (Huang et al.) | views M per input | 0.02 absolute |
| Hessian trace (Hutchinson) | Rademacher probes | 10% relative |
| Hessian λ_max (Lanczos) | iterations | 2% relative |
| sharpness S_ρ (projected ascent) | batches of view pairs | 10% relative |
| I(query; negative) (KSG) | samples N | 0.05 nats absolute |

The *settled budget* is the smallest budget from which every estimate up the ladder stays
within the tolerance of the estimate at the largest budget. R_ε is swept at every ε of the
measured grid; its settled M (``SETTLED["views"]``) is the largest over the ε where it is
neither saturated (stuck at 0 or 1, which says nothing) nor unsettled. It is a property of this run and
this ladder, not a guarantee: an estimate that still drifts at the top of the ladder (R_ε
grows with M, a lower estimate of a sup) is reported as not settled. The `cpu` preset
measures at the settled budgets, and every protocol of a `quick` measurement below them says
so (``experiments/measurement/registry.py``, ``SETTLED``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from clbounds.theory import geometry, information, sharpness

from clbounds.experiments.measurement.groups.geometry import EPS_GRID

from clbounds.experiments.config import load_config
from clbounds.experiments.store.db import Store



@dataclasses.dataclass
class Sweep:
    name: str  # the estimate
    budget: str  # what is varied
    key: str  # the measure setting (or "mi_samples") it corresponds to
    ladder: Sequence[int]
    tolerance: float
    relative: bool
    values: list[float] = dataclasses.field(default_factory=list)
    range: tuple[float, float] | None = None  # the estimate's possible values (a rate: 0 and 1)

    def saturated(self) -> bool:
        """The estimate sits at an end of its range from the settled budget up: it settled on a
        value that says nothing (R_ε = 1 at too small an ε), not on the quantity."""
        settled = self.settled_at()
        if self.range is None or settled is None:
            return False
        top = self.values[self.ladder.index(settled):]
        return all(v in self.range for v in top)

    def settled_at(self) -> int | None:
        """The smallest budget from which every value stays within tolerance of the last."""
        if not self.values:
            return None
        last = self.values[-1]
        tol = self.tolerance * abs(last) if self.relative else self.tolerance
        settled = None
        for budget, value in zip(reversed(self.ladder), reversed(self.values)):
            if abs(value - last) > tol:
                break
            settled = budget
        # Settled only if at least two rungs agree: the top rung alone says nothing.
        return settled if settled is not None and settled < self.ladder[len(self.values) - 1] else None


SIGMA_VIEWS = 8  # d_A costs M² distance matrices: σ's ladder is over inputs at a fixed M


def _sweeps(ctx, views: torch.Tensor, log: Callable[[str], None]) -> list[Sweep]:
    from clbounds.experiments.measurement.context import augmented_distances, reference_delta

    m, k, y = ctx.cfg.measure, ctx.data.num_classes, ctx.y
    out = []

    s = Sweep(f"sigma(delta) (M={SIGMA_VIEWS} views)", "inputs per class", "sigma_per_class", (4, 8, 12, 20, 30, 40), 0.05, relative=False)
    cfg_m = dataclasses.replace(ctx.cfg, measure=dataclasses.replace(m, views=SIGMA_VIEWS))
    delta = m.delta if m.delta is not None else reference_delta(cfg_m, ctx.data, ctx.device)[0]
    idx = torch.cat([torch.nonzero(y == c).flatten()[: s.ladder[-1]] for c in range(k)])
    d_a = augmented_distances(ctx.x[idx], y[idx], views[:SIGMA_VIEWS, idx], ctx.augment)
    for n in s.ladder:
        keep = torch.cat([torch.nonzero(y[idx] == c).flatten()[:n] for c in range(k)])
        s.values.append(float(geometry.sigma_delta(d_a[keep][:, keep], y[idx][keep], delta, num_classes=k)["sigma"]))
    out.append(s)
    log(f"  sigma: {s.values}")

    # R_ε at every ε of the measured grid: a rate over the pairs of M views, it grows with M, and
    # at a small ε it is 1 for every M (saturated, not settled); the grid must bracket the ε where
    # it leaves 1, and each ε has its own settled M.
    z = torch.stack([ctx.features(v) for v in views])
    for eps in sorted({m.eps, *EPS_GRID}):
        s = Sweep(f"R_eps (eps={eps:g}, features)", "views M per input", "views", (2, 4, 8, 16, 24, 32), 0.02, relative=False, range=(0.0, 1.0))
        s.values = [float(geometry.misalignment_rate(z[:mm], eps)) for mm in s.ladder]
        out.append(s)
        log(f"  R_eps at eps={eps:g}: {s.values}")

    batches = [(views[0, i * 128 : (i + 1) * 128], views[1, i * 128 : (i + 1) * 128]) for i in range(views.shape[1] // 128)]
    model = ctx.model.train()
    try:
        s = Sweep("Hessian trace (Hutchinson, 1 batch of 128 view pairs)", "Rademacher probes", "trace_samples", (1, 2, 4, 8, 16, 32), 0.10, relative=True)
        s.values = [sharpness.hessian_trace(model, ctx.ssl_loss, batches[:1], samples=p, generator=ctx.generator(3)) for p in s.ladder]
        out.append(s)
        log(f"  trace: {s.values}")
        s = Sweep("Hessian lambda_max (Lanczos, 1 batch of 128 view pairs)", "iterations", "hessian_iters", (2, 4, 6, 10, 15, 20, 30), 0.02, relative=True)
        s.values = [sharpness.hessian_top_eigenvalue(model, ctx.ssl_loss, batches[:1], iters=it, generator=ctx.generator(2)) for it in s.ladder]
        out.append(s)
        log(f"  lanczos: {s.values}")
        s = Sweep(f"sharpness (rho={m.rho:g}, {m.sharpness_steps} ascent steps)", "batches of 128 view pairs", "sharpness_batches", tuple(b for b in (1, 2, 4, 6, 8) if b <= len(batches)), 0.10, relative=True)
        s.values = [sharpness.sharpness(model, ctx.ssl_loss, batches[:b], m.rho, steps=m.sharpness_steps) for b in s.ladder]
        out.append(s)
        log(f"  sharpness: {s.values}")
    finally:
        ctx.model.eval()

    s = Sweep("I(query; CACR negative) (KSG k=3)", "samples N", "mi_samples", tuple(n for n in (64, 128, 256, 512, 768, 1024) if n <= views.shape[1]), 0.05, relative=False)
    q = F.normalize(ctx.projections(views[0]), dim=1)
    key = F.normalize(ctx.projections(views[1]), dim=1)
    g = ctx.generator(14)
    neg = torch.cat([key[i : i + 128][information.conditional_negatives(q[i : i + 128], key[i : i + 128], ctx.cfg.method.tau_neg, generator=g)] for i in range(0, q.shape[0] - 127, 128)])
    s.values = [float(information.knn_mutual_information(q[:n], neg[:n], k=3)) for n in s.ladder]
    out.append(s)
    log(f"  ksg: {s.values}")
    return out


#: (n, simulated samples) of the Arora margin study: the quick preset's n at the test's 2,000, the cpu preset's at fewer (slower).
ARORA_SIZES = ((128, 2000), (512, 300))


def render(sweeps: Sequence[Sweep], run: str, protocol: str, quick: dict[str, int], cpu: dict[str, int], seconds: float, recovery: str | None = None,
           arora_margins: str | None = None) -> str:
    lines = [
        "# Estimator convergence: each estimate against its budget",
        "",
        "Regenerate: `python -m benchmarks.studies.convergence --out docs/estimators.md` "
        f"({seconds:.0f} s on this machine). Run `{run}`: {protocol}.",
        "",
        "The settled budget is the smallest budget from which every estimate up the ladder stays within the tolerance of the estimate at the largest budget; "
        "'not settled' means the estimate still moves at the top of the ladder; 'saturated' that it sits at an end of its range (R_eps = 1), which is not a settled "
        "estimate of the quantity. R_eps grows with M (a rate over the pairs of M views), so an unsettled R_eps is too low and a bound built on it optimistic. "
        "The `cpu` preset measures at the settled budgets; a `quick` protocol below one says so.",
        "",
        "| estimate | budget | ladder | values | tolerance | settled at | quick | cpu |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sweeps:
        settled = s.settled_at()
        if s.saturated():
            settled = f"saturated at {s.values[-1]:g} from {settled}: says nothing"
        tol = f"{s.tolerance:.0%} relative" if s.relative else f"{s.tolerance:g} absolute"
        values = ", ".join(f"{v:.4g}" for v in s.values)
        lines.append(f"| {s.name} | {s.budget} | {', '.join(map(str, s.ladder[: len(s.values)]))} | {values} | {tol} | {settled if settled is not None else 'not settled'} "
                     f"| {quick.get(s.key, '–')} | {cpu.get(s.key, '–')} |")
    if recovery:
        lines += ["", "## Sigma-hat against a known sigma", "",
                  "The synthetic generator knows which inputs lie in their class's main part. At the generator's own δ (the largest d̂_A between "
                  "two main-part members of one class) σ(δ) is its `main_fraction` unless the augmentation brings an outlier within δ of the "
                  "whole main part. Each row measures a sample whose classes hold exactly that fraction of main-part members with the sigma group "
                  "itself (`benchmarks/studies/sigma_recovery.py`; `tests/test_verdicts.py` asserts the error is at most 0.05). The error "
                  "column is σ̂(δ) minus that fraction. Beyond δ the main part takes in outliers: at 2δ σ̂ exceeds `main_fraction` under both "
                  "augmentations, as the definition expects of a larger δ. A data set draws each sample's membership, so there σ̂, a minimum over "
                  "classes of binomial fractions, is also biased low by sampling (the safe side for Theorem 1); `sigma_stderr` is its "
                  "binomial standard error.", "", recovery]
    if arora_margins:
        lines += ["", "## The Arora margins against a known population", "",
                  "The one-negative Arora checks compare a bound from L_un (ideal or practical positives) with L_sup^μ, all exact on one sample "
                  "of n inputs. Their margin covers the population difference only if each term's error sees every way an input enters it: "
                  "as anchor, positive, negative and through its class mean. Embeddings drawn from a generator whose population values are "
                  "known (`benchmarks/studies/arora_margin.py`: near-constant like an untrained encoder, near-constant with the views' noise "
                  "above the class signal, and structured like a trained one); a miss is |d − d_pop| above the margin. 'per-anchor' is the "
                  "standard error over anchors with class means held fixed (the tool before), 'jackknife' the delete-one jackknife's standard "
                  "error plus its bias estimate (the tool now). The M-negative check's terms are Monte-Carlo estimates: 'anchors and draws' is "
                  "their error over both (before), 'grouped jackknife' the delete-a-group jackknife of 10 groups with its bias (now). "
                  "`tests/test_arora_margin.py` asserts each current margin misses at most 0.05 plus two Monte-Carlo standard errors at "
                  "n = 128.", "", arora_margins]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from clbounds.experiments.measurement.context import build_context
    from clbounds.experiments.training.loop import train
    from clbounds.experiments.pipeline.verify import grid_items, load_preset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="quick-simclr-synthetic")
    parser.add_argument("--store", type=Path, default=Path("runs/estimators"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    store = Store(args.store)
    cfg = load_config(args.config, ["measure.n_samples=1024", "measure.views=32", "measure.sigma_per_class=40"])
    record = train(cfg, store, progress=False)
    ctx = build_context(record)
    print(f"run {record.id}: sweeping on {ctx.x.shape[0]} test inputs with {ctx.views.shape[0]} views")
    sweeps = _sweeps(ctx, ctx.views, print)

    def budgets(preset: str) -> dict[str, int]:
        m = grid_items(load_preset(preset))[0].config.measure
        return {"sigma_per_class": m.sigma_per_class, "views": m.views, "trace_samples": m.trace_samples, "hessian_iters": m.hessian_iters,
                "sharpness_batches": m.sharpness_batches, "mi_samples": m.n_samples}

    protocol = f"{cfg.data.name} {cfg.data.image_size}x{cfg.data.image_size}, {cfg.encoder.arch} x{cfg.encoder.width:g}, {cfg.method.name}, {cfg.optim.epochs} epochs, seed {cfg.seed}, delta={ctx.delta:.4g}"
    from .sigma_recovery import recovery_table

    recovery = recovery_table()
    from . import arora_margin

    margins = arora_margin.markdown(arora_margin.study(ARORA_SIZES))
    text = render(sweeps, record.id, protocol, budgets("quick"), budgets("cpu"), time.perf_counter() - t0, recovery, margins)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(math.isfinite(v) for s in sweeps for v in s.values) else 1


if __name__ == "__main__":
    raise SystemExit(main())
