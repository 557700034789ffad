"""Term group ``shift``: ideal against practical positive pairs (SSA-CLR, PAPERS §2): MMD, JS and the loss gap."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clbounds.theory import shift

from clbounds.theory.uncertainty import stderr_of_mean

from ...store.db import Row
from ..context import Context, scalar


def shift_terms(ctx: Context) -> list[Row]:
    """Ideal vs practical positive pairs (SSA-CLR, PAPERS §2) that differ only in the positive.

    Both batches share their anchors, view 1 of each test input x_i (``ctx.views[0]``). The
    *practical* positive is a second augmentation of x_i (``ctx.views[1]``); the *ideal*
    positive is an augmentation, by the same pipeline, of x'_i, an independent draw of x_i's
    class (a fresh generator sample on synthetic data; another test input of the class
    otherwise). The negatives of either loss are the other rows of its batch: the shared
    anchors and the positives, whose marginal law is the same in both (x' has the class law of
    x). So only the conditional law of the positive given the anchor differs, which is the
    shift SSA-CLR's bound is about; when augmenting one input already looks like drawing
    another of its class, every term here is 0 in expectation.
    """
    n, tau = ctx.x.shape[0], ctx.cfg.method.temperature
    g = ctx.generator(4)
    if ctx.data.generator is not None:
        partner = ctx.data.generator.sample(ctx.y.cpu(), g).x.to(ctx.device)
        source = "synthetic generator: an independent draw of the anchor's class"
    else:
        partner = ctx.x[same_class_partner(ctx.y.cpu(), g).to(ctx.y.device)]
        source = "labels: another test input of the anchor's class"
    anchors = ctx.projections(ctx.views[0])
    ideal = (anchors, ctx.projections(ctx.augment(partner, g)))
    practical = (anchors, ctx.projections(ctx.views[1]))
    b = min(ctx.cfg.measure.batch_size, n)
    gaps = [scalar(shift.positive_pair_loss_gap((ideal[0][i : i + b], ideal[1][i : i + b]), (practical[0][i : i + b], practical[1][i : i + b]), tau)) for i in range(0, n - b + 1, b)]
    low, high = shift.infonce_range(2 * b - 2, tau)
    joint = lambda pair: torch.cat([F.normalize(pair[0], dim=1), F.normalize(pair[1], dim=1)], dim=1)  # noqa: E731
    ji, jp = joint(ideal), joint(practical)
    proto = (f"projection, shared anchors = view 1 ({ctx.cfg.augment}); practical positive = view 2 of the anchor's input; "
             f"ideal positive = a view ({ctx.cfg.augment}) of {source}; {ctx.split}")
    return [
        ("shift_loss_gap", sum(gaps) / len(gaps), f"InfoNCE(ideal) - InfoNCE(practical), tau={tau:g}, batches of {b}, {proto}"),
        ("shift_loss_gap_stderr", scalar(stderr_of_mean(torch.tensor(gaps))), f"standard error over the {len(gaps)} batches (0 for one batch), tau={tau:g}, batches of {b}"),
        ("infonce_range", high - low, f"width of [log(1+M e^(-2/tau)), log(1+M e^(2/tau))], M={2 * b - 2}, tau={tau:g}"),
        ("shift_mmd2", scalar(shift.mmd2(ji, jp, paired=True)), f"unbiased RBF MMD^2 (paired U-statistic: the anchors are shared), median bandwidth, joint (z, z+) normalised, {proto}"),
        ("shift_sliced_wasserstein", scalar(shift.sliced_wasserstein(ji, jp, generator=ctx.generator(5))), f"SW_2, 128 directions, joint (z, z+), between the two empirical laws (> 0 even for one law), {proto}"),
        ("shift_cosine_gap", scalar(shift.positive_cosine_gap(ideal, practical)), f"mean cos(practical) - mean cos(ideal), {proto}"),
        # Held out: fitted in-sample on n ~ D rows, the discriminator separates any two samples.
        ("shift_js", scalar(shift.js_divergence(ji, jp, generator=ctx.generator(6), holdout=0.5, weight_decay=0.1)), f"log 2 - L_D, ridge-logistic discriminator (lambda=0.1) fitted on half, scored on the held-out half (lower bound on JS), joint (z, z+), {proto}"),
    ]


def same_class_partner(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each i a random j ≠ i with y_j = y_i (i itself when its class has one member)."""
    partner = torch.arange(y.numel())
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        if idx.numel() > 1:  # a random derangement within the class: a cyclic shift of a permutation
            perm = idx[torch.randperm(idx.numel(), generator=g)]
            partner[perm] = perm.roll(1)
    return partner
