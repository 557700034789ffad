"""Term group ``sigma``: σ(δ) of the (σ,δ)-augmentation (Huang et al., PAPERS §5), over a grid of δ."""

from __future__ import annotations

import torch

from clbounds.theory import geometry
from clbounds.theory.uncertainty import binomial_stderr

from ...store.db import Row
from ..context import Context, augmented_distances, scalar
from ..registry import below_settled


#: The δ values of σ(δ) reported next to the run's δ, as multiples of it (bounds/huang2023.py
#: takes the tightest Theorem 1 over them).
DELTA_GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def sigma_terms(ctx: Context) -> list[Row]:
    """σ(δ) of the (σ,δ)-augmentation from the augmented distance d_A (Huang et al. §5).

    δ is ``measure.delta`` or the dataset's reference δ (:func:`reference_delta`), fixed across
    the runs it compares; σ is also given on the grid ``DELTA_GRID`` × δ (rows
    ``sigma@delta_factor=<factor>``). σ depends on the data, the augmentation and the labels, not on the
    encoder.

    d_A is estimated from above (:func:`..context.augmented_distances`: M sampled views, the
    input itself and aligned crop pairs), so with an exact clique σ̂ is a lower estimate of
    σ(δ) at these inputs. The minimum over classes of per-class fractions of
    ``sigma_per_class`` inputs is also biased low by sampling; ``sigma_stderr`` is a binomial
    standard error over all the inputs, not that bias.
    """
    m, k = ctx.cfg.measure, ctx.data.num_classes
    idx = torch.cat([torch.nonzero(ctx.y == c).flatten()[: m.sigma_per_class] for c in range(k)])
    d_a = augmented_distances(ctx.x[idx], ctx.y[idx], ctx.views[:, idx], ctx.augment)
    result = geometry.sigma_delta(d_a, ctx.y[idx], ctx.delta, num_classes=k)
    methods = sorted(set(result["method"]))
    # The inputs a class really had: the measured test sample can hold fewer than sigma_per_class.
    lo, hi = int(result["class_size"].min()), int(result["class_size"].max())
    per_class = f"{lo}" if lo == hi else f"{lo}-{hi}"
    base = (f"pixel-L2 d_A: min over M={m.views} views ({ctx.cfg.augment}) and the input itself{', and aligned crop pairs' if 'a' in ctx.augment.spec else ''}, "
            f"{per_class} test inputs per class{below_settled('sigma_per_class', lo)}")
    proto = f"{base}, delta={ctx.delta:.4g} ({ctx.delta_note}), solver={'+'.join(methods)}"
    # σ̂ is the fraction of the sampled inputs in the largest cliques: its standard error is
    # taken as a binomial one over those inputs (the clique search adds no randomness).
    rows = [("sigma", scalar(result["sigma"]), proto), ("sigma_delta", ctx.delta, proto),
            ("sigma_stderr", scalar(binomial_stderr(scalar(result["sigma"]), idx.numel())), f"binomial standard error over the {idx.numel()} inputs, {base}")]
    for factor in DELTA_GRID:
        grid = geometry.sigma_delta(d_a, ctx.y[idx], ctx.delta * factor, num_classes=k)
        rows.append((f"sigma@delta_factor={factor:g}", scalar(grid["sigma"]), f"{base}, delta={factor:g} x {ctx.delta:.4g} (grid), solver={'+'.join(sorted(set(grid['method'])))}"))
    if ctx.data.generator is not None and ctx.data.train_main is not None:
        rows.append(("sigma_generator", ctx.data.generator.main_fraction, "synthetic ground truth: P(main part) of the generator"))
    return rows
