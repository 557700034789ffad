"""`clbounds reproduce TARGET`: one paper figure or table, on the embedded default or CIFAR.

A target is a list of labelled override sets (its grid), the term groups it needs, and an
analysis function from `figures/` that draws the figure, writes the table and says in one
sentence whether the paper's claimed direction was reproduced. The grid is applied on top
of a preset's base (``quick`` by default, ``paper`` for CIFAR on a GPU).
"""

from __future__ import annotations

import shlex

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, load_config
from ..names import slug
from ..store.db import Store
from .executors import Executor
from .grid import GridItem, run_grid
from .verify import load_preset

HUANG_AUGMENTS = ["a", "ab", "abc", "abcd", "abcde"]
HUANG_COLORS = [1.0, 0.5, 0.25, 0.125]
WEN_WIDTHS = [0.25, 0.5, 1.0, 2.0]

# Method settings of the bundled quick-*-synthetic configs, as overrides: a target's grid sits
# on the preset's base (SimCLR), so each method states its own hyperparameters.
SSA_CLR = ["method.name=ssa_clr", "method.rho=0.05", "method.adaptive=false", "method.fourier_eta=0.5"]
ADVERSARIAL = ["method.eps=0.03137254901960784", "method.alpha=0.011764705882352941", "method.steps=3"]  # PGD-3 views, 8/255, 3/255
ROCL = ["method.name=rocl", *ADVERSARIAL]
ROBUST_CL = ["method.name=robust_cl", "encoder.dual_bn=true", *ADVERSARIAL, "method.benign_w=2.0", "method.d_w=0.1", "method.disc_lr=0.2",
             "method.use_sam=true", "method.adaptive=true", "method.rho=1.0"]
CACR = ["method.name=cacr", "method.positives=4", "method.tau_pos=1.0", "method.tau_neg=0.9"]
# Wen (PAPERS §3): two networks, Gaussian init, full-batch GD on fixed views. 256 training
# images and T = 25 steps keep the width-2 run (two ConvNets x2) within about a minute on 2 CPU cores.
TWO_NETWORK = ["method.name=two_network", "method.full_batch=true", "method.fixed_views=true", "augment=ae", "optim.lr=0.5",
               "optim.momentum=0.0", "optim.weight_decay=0.0", "data.n_train=256", "optim.epochs=25"]


@dataclass
class Target:
    description: str
    runs: list[tuple[str, list[str]]]
    analysis: str  # name of the function in figures.reproductions
    terms: list[str] | None = None  # term groups to measure (None: all)
    extra_common: list[str] = field(default_factory=list)  # on every run, after the preset's common overrides
    measure: list[str] = field(default_factory=list)  # measure settings, after the preset's (stored runs are re-measured)
    seeds: int = 5  # seeds per variant by default (a target with paired claims: enough for the exact test to pass Holm's first step)


def _targets() -> dict[str, Target]:
    return {
        "huang-table1": Target(
            "Huang et al. Table 1 / Figure 3: augmentation subsets a..abcde x {SimCLR, Barlow Twins}; kNN accuracy, 1-sigma, R_eps, centre max_inner",
            [(f"{m}-{aug}", [f"method.name={m}", f"augment={aug}"]) for m in ("simclr", "barlow_twins") for aug in HUANG_AUGMENTS],
            "huang_table1", ["losses", "geometry", "sigma"],
        ),
        "huang-color": Target(
            "Huang et al.: SimCLR colour-strength sweep 1, 1/2, 1/4, 1/8",
            [(f"color-{c:g}", [f"color_strength={c}"]) for c in HUANG_COLORS],
            "huang_color", ["losses", "geometry", "sigma"],
        ),
        "terms-vs-accuracy": Target(
            "Every term against downstream and robust error over the quick grid, with Kendall tau and granulated tau",
            [], "terms_vs_accuracy",
        ),
        "bound-tightness": Target(
            "Bound against measured quantity for every theorem over the quick grid, log axes with y = x",
            [], "bound_tightness",
        ),
        "ssa-clr": Target(
            "SSA-CLR (Tran et al. 2023): SimCLR vs +SAM, +Fourier and both; kNN/linear accuracy, sharpness, ideal-vs-practical shift gap",
            [
                ("simclr", ["method.name=simclr"]),
                ("sam", [*SSA_CLR, "method.use_sam=true", "method.use_fourier=false"]),
                ("fourier", [*SSA_CLR, "method.use_sam=false", "method.use_fourier=true"]),
                ("sam-fourier", [*SSA_CLR, "method.use_sam=true", "method.use_fourier=true"]),
            ],
            "ssa_clr", ["sharpness", "shift"], seeds=9,  # 9 claims, 18 one-sided tests: 2^-9 x 18 < 0.05
        ),
        "robust-cl": Target(
            "Robust CL (Tran et al. 2023): SimCLR vs RoCL-style vs robust CL; clean, PGD-20 Linf, PGD-20 L2 and AutoAttack robust accuracy, the terms of the reconstructed bound",
            [("simclr", ["method.name=simclr"]), ("rocl", ROCL), ("robust-cl", ROBUST_CL)],
            "robust_cl", ["adversarial", "autoattack", "sharpness", "bounds"], measure=["measure.attack_steps=20", "measure.autoattack=true"],
            seeds=8,  # up to 6 claims with the unseen attacks, 12 one-sided tests: 2^-8 x 12 < 0.05
        ),
        "wen-width": Target(
            "Wen (2020): width sweep of two-network full-batch GD; gradient norm per step, min gradient norm and weight movement against width (log-log slopes)",
            [(f"width-{w:g}", [f"encoder.width={w}"]) for w in WEN_WIDTHS],
            "wen_width", ["optimization"], extra_common=TWO_NETWORK,
        ),
        "cacr": Target(
            "CACR (Zheng et al. 2023) vs SimCLR, balanced and imbalanced data; weight vs distance, alignment, uniformity, query-negative MI, the claim checks",
            [
                ("simclr", ["method.name=simclr"]),
                ("cacr", CACR),
                ("simclr-imbalanced", ["method.name=simclr", "data.imbalanced=true"]),
                ("cacr-imbalanced", [*CACR, "data.imbalanced=true"]),
            ],
            "cacr", ["geometry", "information", "cacr_weights"], seeds=8,  # 6 paired claims, 12 one-sided tests
        ),
    }


TARGETS = _targets()


def reproduce(target_name: str, store: Store, preset_name: str = "quick", executor: Executor | None = None, log: Callable[[str], None] = print,
              seeds: int | None = None, extra: list[str] | None = None) -> Path:
    """Trains what the target needs (skipping stored runs), then writes its figure and report.
    ``extra``: overrides applied last to every run (the CLI passes only ``slurm.*`` ones).

    A target with its own grid runs ``seeds`` seeds per variant (default the target's own:
    enough seeds for its paired claims to be decidable by the exact sign-flip test after Holm's
    correction; seeds 0..n−1); the targets that analyse the preset's own grid use the preset's seeds.
    """
    from clbounds.figures import reproductions

    from .bounds_step import evaluate_sweep_bounds

    if target_name not in TARGETS:
        raise ConfigError(f"unknown target {target_name!r}; choose one of {', '.join(TARGETS)}")
    target = TARGETS[target_name]
    preset = load_preset(preset_name)
    if target.runs:
        runs = [{"label": label, "overrides": overrides} for label, overrides in target.runs]
        terms = target.terms
    else:  # the target analyses the preset's own grid
        runs, terms = preset.runs, None
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if seeds is not None and not target.runs:
        raise ConfigError(f"--seeds applies to the targets with their own grid; {target_name} analyses preset {preset.name}'s grid and its seeds {preset.seeds}")
    seed_list = list(range(seeds if seeds is not None else target.seeds)) if target.runs else preset.seeds
    items = []
    for seed in seed_list:
        for run in runs:
            overrides = [*preset.common, *target.extra_common, *run["overrides"], *preset.measure, *target.measure, f"seed={seed}", f"name={target_name}-{run['label']}",
                         *(extra or [])]
            items.append(GridItem(run["label"] if len(seed_list) == 1 else f"{run['label']}/seed{seed}", load_config(preset.base, overrides)))
    log(f"reproduce {target_name} ({target.description}) on preset {preset.name}: {len(items)} runs")
    results = run_grid(items, store, executor, terms=terms, log=log)
    done = [r for r in results if r.status == "done"]
    if not done:
        raise RuntimeError(f"reproduce {target_name}: every run failed; see `clbounds runs`")
    evaluate_sweep_bounds([store.get_run(r.run_id) for r in done], store)  # Wen width sweeps, CACR vs SimCLR pairs (as verify does)
    out_dir = store.root / "reproduce" / slug(f"{target_name}-{preset.name}")
    command = shlex.join(["clbounds", "--store", str(store.root), "reproduce", target_name, *(["--preset", str(preset_name)] if preset_name != "quick" else []),
                          *(["--seeds", str(len(seed_list))] if target.runs and len(seed_list) != target.seeds else [])])
    report = getattr(reproductions, target.analysis)(store.root, [r.run_id for r in done], {r.run_id: r.label for r in done}, out_dir, command)
    log(f"verdict: {reproductions.report_verdict(report)}")  # the command line prints the report's path after it
    return report


def target_names() -> Sequence[str]:
    return list(TARGETS)
