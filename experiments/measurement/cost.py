"""What a measure will cost: the images each term group sends through the backbone, in closed form.

The counts are exact for every group but the Hessian's Lanczos iterations (which may stop
early: the count is then an upper bound) and AutoAttack (data-dependent: a rough count), and
are checked against the backbone hooks of ``benchmarks/measure_scaling.py`` in
``tests/test_measure_cost.py``. Each count is (forward, backward, Hessian-vector product)
images; a backward image is also a forward one.

:func:`Estimate` turns them into seconds: a forward, a backward and an HVP cost 1, 2.5 and 9
"forward units" (the ratios measured on ResNet-18s of width 1/16 and 1 in
``benchmarks/measure_scaling.md``: 2.7 and 2.3; 9.4 and 8.2), and the seconds per unit are
those of the groups done so far, so the estimate absorbs the machine and the work outside the
backbone (augmentation, probes, solvers). Before any group is done it uses one timed forward
batch.

The test inputs and their M views go through each model's backbone once per measure, whichever
groups read them (the pass cache of ``Context._embedded``): :data:`SHARED_READS` names what each
group reads from it (the test inputs, their views and the training set's centre views), and
:func:`plan_passes` charges those images to the first group of the plan that reads them on that
model (the shuffled-labels and random-embedding controls share the encoder's model, so its
passes).

Notation of the formulas (the config's ``measure`` settings and the data's sizes): N =
min(n_samples, n_test), M = views, B = batch_size, b = min(B, N), S = attack_steps, K =
sharpness_steps, V = center_views, U = pac_bayes_units, c = ⌈N/256⌉.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from clbounds.bounds.ssa_clr import ASCENT_SKIPPED_PREFIX

from ..config import Config

#: Cost of a backward and of an HVP image, in forward images (see the module docstring).
UNIT_WEIGHTS = (1.0, 2.5, 9.0)
Passes = tuple[int, int, int]


@dataclass(frozen=True)
class Sizes:
    """The data sizes the counts depend on."""

    n_train: int
    n_test: int


@dataclass(frozen=True)
class _Counts:
    """The quantities of the formulas (module docstring), from the config and the data sizes."""

    n: int
    n_train: int
    n_test: int
    views: int
    b: int
    attack_steps: int
    sharpness_steps: int
    center_views: int
    pac_bayes_units: int
    c: int
    nb: int  # batches of the loss-based groups
    i: int  # their view-pair images
    i_m: int  # m-sharpness images (whole chunks only)
    products: int  # Lanczos + Hutchinson products; Lanczos may stop early: an upper bound


def _counts(cfg: Config, sizes: Sizes) -> _Counts:
    m = cfg.measure
    n = min(m.n_samples, sizes.n_test)
    s = min(m.batch_size, n)
    nb = min(m.sharpness_batches, max(1, n // m.batch_size))
    chunk = min(m.sharpness_m, s)
    i = 2 * nb * s
    return _Counts(n, sizes.n_train, sizes.n_test, m.views, s, m.attack_steps, m.sharpness_steps, m.center_views, m.pac_bayes_units,
                   math.ceil(n / 256), nb, i, 2 * nb * chunk * (s // chunk), (m.hessian_iters + m.trace_samples) * i)


def _sharpness(q: _Counts) -> Passes:
    k, i = q.sharpness_steps, q.i
    if q.nb == 1:
        return ((k + 16) * i + 2 * q.i_m, (k + 4) * i + q.i_m, q.products)
    return ((k + 14) * i + 2 * q.i_m + q.products, (k + 2) * i + q.i_m + q.products, q.products)  # the graph rebuilt per product


def _bounds(q: _Counts) -> Passes:
    u_train, u_test = min(q.n_train // q.b, q.pac_bayes_units), min(q.n_test // q.b, q.pac_bayes_units)
    t = 2 * q.b * u_train
    k = q.sharpness_steps
    return (2 * q.n + 2 * q.b * (u_train + u_test) + 3 * (k + 1) * t + 10 * q.b, 3 * k * t + 7 * q.b, 0)


#: Backbone images of each term group on the encoder itself, besides its :data:`SHARED_READS`
#: (every group of the registry has one: tests/test_measure_cost.py checks it, and the counts
#: against the benchmark's hooks).
GROUP_PASSES: dict[str, Callable[[_Counts], Passes]] = {
    "losses": lambda q: (0, 0, 0),
    "geometry": lambda q: (0, 0, 0),
    "sigma": lambda q: (0, 0, 0),  # pixel space
    "lipschitz": lambda q: (18 * q.n, 10 * q.n, 0),
    "sharpness": _sharpness,
    "shift": lambda q: (q.n, 0, 0),  # the same-class partners' views
    "adversarial": lambda q: (q.n_train + 5 * q.n * (q.attack_steps + 2) + 3 * q.c + 11 * q.b, 5 * q.attack_steps * q.n + 7 * q.b, 0),
    # rough: APGD-CE and APGD-T (9 targets) of about 101 steps on every input, FAB and Square left out
    "autoattack": lambda q: (5 * q.n + 1010 * q.n, q.n + 1010 * q.n, 0),
    "optimization": lambda q: (q.i, q.i, 0),
    "information": lambda q: (0, 0, 0),
    "cacr_weights": lambda q: (0, 0, 0),
    "bounds": _bounds,
}

#: Where a control runs less of a group than the encoder's own (bounds/common.CONTROLS).
CONTROL_PASSES: dict[tuple[str, str], Callable[[_Counts], Passes]] = {
    ("random_init", "sharpness"): lambda q: ((q.sharpness_steps + 10) * q.i, q.sharpness_steps * q.i, 0),  # the ascent and the average only
    # the rows of the robust-CL checks only: the probe's PGD, one representation attack, RoCL's attack
    ("random_init", "adversarial"): lambda q: (q.n_train + 2 * q.n * (q.attack_steps + 2) + q.c + 11 * q.b, 2 * q.attack_steps * q.n + 7 * q.b, 0),
    ("random_init_bn", "bounds"): lambda q: (0, 0, 0),  # the Arora and Huang terms: shared reads only
    ("shuffled_labels", "bounds"): lambda q: (0, 0, 0),  # the Arora terms: shared reads only
}


def _test_and_views(q: _Counts) -> frozenset:
    return frozenset({"x", *range(q.views)})


#: What each group embeds through the pass cache: the test inputs "x" (N images), views by index
#: (N each) and "train", the centre views of the training set (V · n_train).
SHARED_READS: dict[str, Callable[[_Counts], frozenset]] = {
    "losses": lambda q: frozenset({0, 1}),
    "geometry": lambda q: _test_and_views(q) | {"train"},
    "shift": lambda q: frozenset({0, 1}),
    "information": lambda q: frozenset({0, 1}),
    "cacr_weights": lambda q: frozenset(range(q.views)),
    "bounds": _test_and_views,
}
CONTROL_READS: dict[tuple[str, str], Callable[[_Counts], frozenset]] = {
    ("random_init", "sharpness"): lambda q: frozenset(),
    ("shuffled_labels", "bounds"): lambda q: frozenset({"x", 0, 1}),  # the Arora terms
}

#: The model each control measures: the shuffled-labels and random-embedding controls keep the
#: encoder's, so they read its cached passes.
CONTROL_MODEL = {"": "encoder", "shuffled_labels": "encoder", "random_embedding": "encoder", "random_init": "init", "random_init_bn": "init_bn"}


def _reads(name: str, control: str, q: _Counts) -> frozenset:
    formula = CONTROL_READS.get((control, name)) or SHARED_READS.get(name)
    return formula(q) if formula else frozenset()


def group_passes(name: str, cfg: Config, sizes: Sizes, control: str = "", cached: frozenset = frozenset()) -> Passes:
    """(forward, backward, HVP) images the group ``name`` sends through the backbone, on the
    encoder itself (``control`` "") or on a control (bounds/common.CONTROLS), when the pass
    cache already holds ``cached`` of its model's embeddings (:data:`SHARED_READS`: "x", view
    indices, "train").

    Examples:
        >>> from clbounds.experiments.config import config_from_dict
        >>> cfg = config_from_dict({"measure": {"n_samples": 500, "views": 8, "center_views": 4}})
        >>> group_passes("geometry", cfg, Sizes(n_train=1000, n_test=5000))  # 4 x 1000 + 500 x (1 + 8)
        (8500, 0, 0)
        >>> group_passes("geometry", cfg, Sizes(n_train=1000, n_test=5000), cached=frozenset({"x", *range(8), "train"}))
        (0, 0, 0)
    """
    formula = CONTROL_PASSES.get((control, name)) or GROUP_PASSES.get(name)
    if formula is None:
        raise ValueError(f"no cost model for term group {name!r}")
    q = _counts(cfg, sizes)
    forward, backward, hvp = formula(q)
    return (forward + sum(q.center_views * q.n_train if key == "train" else q.n for key in _reads(name, control, q) - cached), backward, hvp)


def plan_passes(plan: list[tuple[str, str]], cfg: Config, sizes: Sizes) -> dict[tuple[str, str], Passes]:
    """:func:`group_passes` of each (control, group) of ``plan``, run in that order within one
    measure: the first group that reads a tensor of the pass cache on a model pays for it."""
    q = _counts(cfg, sizes)
    cached: dict[str, frozenset] = {}
    out = {}
    for control, name in plan:
        model = CONTROL_MODEL.get(control, control)
        out[(control, name)] = group_passes(name, cfg, sizes, control, cached.get(model, frozenset()))
        cached[model] = cached.get(model, frozenset()) | _reads(name, control, q)
    return out


def units(passes: Passes) -> float:
    """A count in forward-image units (:data:`UNIT_WEIGHTS`)."""
    return sum(w * p for w, p in zip(UNIT_WEIGHTS, passes))


def forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Seconds per image of one no-grad forward of the backbone on a batch like ``x``."""
    with torch.no_grad():
        model(x[:2])  # warm-up: the first call pays for allocations
        t0 = time.perf_counter()
        model(x)
    return (time.perf_counter() - t0) / max(1, x.shape[0])


def ascent_passes(cfg: Config, sizes: Sizes) -> Passes:
    """The backbone images of SSA-CLR's ρ-ball ascent at one radius (part of ``bounds``), which
    ``measure.sequential`` skips where the verdict is already decided."""
    q = _counts(cfg, sizes)
    t = 2 * q.b * min(q.n_train // q.b, q.pac_bayes_units)
    return ((q.sharpness_steps + 1) * t, q.sharpness_steps * t, 0)


def skipped_ascents(rows: list) -> int:
    """How many radii a group's rows say were not ascended (``sharp_ascent_skipped@rho_factor=<f>`` = 1)."""
    return sum(1 for name, value, _ in rows if name.rpartition("/")[2].startswith(ASCENT_SKIPPED_PREFIX) and value == 1)


class Estimate:
    """The time left of a measure: the cost model's units of the groups to do, at the seconds
    per unit of the groups done (before any, at ``seconds_per_unit`` from one timed batch)."""

    def __init__(self, plan: list[tuple[str, str]], cfg: Config, sizes: Sizes, seconds_per_unit: float) -> None:
        self.left = {key: units(passes) for key, passes in plan_passes(plan, cfg, sizes).items()}
        self.ascent = units(ascent_passes(cfg, sizes))
        self.prior = seconds_per_unit
        self.done_units = 0.0
        self.done_seconds = 0.0

    def finished(self, control: str, name: str, seconds: float, skipped_ascents: int = 0) -> None:
        # the rate is calibrated on the passes made: a skipped ascent was not paid for
        self.done_units += max(0.0, self.left.pop((control, name), 0.0) - skipped_ascents * self.ascent)
        self.done_seconds += seconds

    def seconds_left(self) -> float:
        rate = self.done_seconds / self.done_units if self.done_units > 0 else self.prior
        return rate * sum(self.left.values())

    def text(self) -> str:
        s = self.seconds_left()
        return f"about {s / 60:.0f} min left" if s >= 90 else f"about {s:.0f} s left"
