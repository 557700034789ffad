"""Term group ``sharpness``: sharpness and curvature of the training loss at the trained weights (SSA-CLR, PAPERS §2)."""

from __future__ import annotations

from collections.abc import Callable

from clbounds.theory import sharpness

from ...store.db import Row
from ..context import Context
from ..registry import below_settled


def sharpness_terms(ctx: Context, only: tuple[str, ...] | None = None) -> list[Row]:
    """Sharpness of the training loss at the trained weights (SSA-CLR, PAPERS §2).

    ``only`` limits the rows to the named terms (the controls need two of the six).
    """
    m = ctx.cfg.measure
    batches = ctx.ssl_batches()
    model = ctx.model.train()  # the loss as training saw it: BatchNorm on batch statistics
    proto = f"{ctx.loss_name} loss, {len(batches)} fixed batches{below_settled('sharpness_batches', len(batches))} of {batches[0][0].shape[0]} view pairs, BN train mode"
    terms: dict[str, tuple[Callable[[], float], str]] = {
        "sharpness_sam": (lambda: sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=1), f"fixed-rho one-step SAM rho={m.rho:g}, {proto}"),
        "sharpness": (lambda: sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=m.sharpness_steps), f"fixed-rho (SAM ball) projected ascent steps={m.sharpness_steps} rho={m.rho:g}, {proto}"),
        "sharpness_asam": (lambda: sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=1, adaptive=True), f"adaptive (ASAM, scale-invariant) one-step rho={m.rho:g}, {proto}"),
        "sharpness_m": (lambda: sharpness.m_sharpness(model, ctx.ssl_loss, batches, m.rho, m=min(m.sharpness_m, batches[0][0].shape[0])),
                        f"m-sharpness m={min(m.sharpness_m, batches[0][0].shape[0])} one-step SAM rho={m.rho:g}: mean over sub-batches of m view pairs of their own sharpness, {proto}"),
        "sharpness_average": (lambda: sharpness.average_sharpness(model, ctx.ssl_loss, batches, m.noise_sigma, generator=ctx.generator(1)),
                              f"E over N(0, {m.noise_sigma:g}^2 I) weight noise, 8 antithetic samples, {proto}"),
        "hessian_lambda_max": (lambda: sharpness.hessian_top_eigenvalue(model, ctx.ssl_loss, batches, iters=m.hessian_iters, generator=ctx.generator(2)), f"Lanczos iters={m.hessian_iters}{below_settled('hessian_iters', m.hessian_iters)}, {proto}"),
        "hessian_trace": (lambda: sharpness.hessian_trace(model, ctx.ssl_loss, batches, samples=m.trace_samples, generator=ctx.generator(3)), f"Hutchinson {m.trace_samples} Rademacher samples{below_settled('trace_samples', m.trace_samples)}, {proto}"),
    }
    try:
        chosen = [(name, fn, protocol) for name, (fn, protocol) in terms.items() if only is None or name in only]
        rows = []
        for k, (name, fn, protocol) in enumerate(chosen):
            rows.append((name, fn(), protocol))
            ctx.progress(f"sharpness: {name} ({k + 1}/{len(chosen)})")
        return rows
    finally:
        ctx.model.eval()
