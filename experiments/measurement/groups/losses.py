"""Term group ``losses``: the trained losses and Huang et al.'s L1/L2 splits (PAPERS §5)."""

from __future__ import annotations

import torch

from clbounds.theory.losses import barlow_twins, huang_barlow_split, huang_infonce_split, info_nce
from clbounds.theory.uncertainty import stderr_of_mean

from ...store.db import Row
from ..context import Context, scalar


def losses_terms(ctx: Context) -> list[Row]:
    """The trained losses and Huang et al.'s L1/L2 splits on augmentation pairs (PAPERS §5)."""
    v1, v2 = ctx.projections(ctx.views[0]), ctx.projections(ctx.views[1])
    tau, b = ctx.cfg.method.temperature, min(ctx.cfg.measure.batch_size, v1.shape[0])
    batches = [(v1[i : i + b], v2[i : i + b]) for i in range(0, v1.shape[0] - b + 1, b)]
    mean = lambda fn: sum(scalar(fn(a, c)) for a, c in batches) / len(batches)  # noqa: E731
    proto = f"projection, augmentation pairs ({ctx.cfg.augment}), batches of {b}, {ctx.split}"
    split = [huang_infonce_split(a, c, temperature=tau) for a, c in batches]
    bt = [huang_barlow_split(a, c) for a, c in batches]
    nce = torch.tensor([scalar(info_nce(a, c, tau)) for a, c in batches], dtype=torch.float64)
    return [
        ("info_nce", scalar(nce.mean()), f"NT-Xent tau={tau:g}, {proto}"),
        ("info_nce_stderr", scalar(stderr_of_mean(nce)), f"standard error over the {len(batches)} batches (0 for one batch), NT-Xent tau={tau:g}, {proto}"),
        ("barlow_twins", mean(lambda a, c: barlow_twins(a, c, ctx.cfg.method.lambd)), f"lambda={ctx.cfg.method.lambd:g}, {proto}"),
        ("huang_infonce_L1", sum(scalar(s["L1"]) for s in split) / len(split), f"Huang et al. split tau={tau:g}, {proto}"),
        ("huang_infonce_L2", sum(scalar(s["L2"]) for s in split) / len(split), f"Huang et al. split tau={tau:g}, {proto}"),
        ("huang_barlow_L1", sum(scalar(s["L1"]) for s in bt) / len(bt), f"Huang et al. split, {proto}"),
        ("huang_barlow_L2", sum(scalar(s["L2"]) for s in bt) / len(bt), f"Huang et al. split, {proto}"),
    ]
