"""Term group ``optimization``: gradient norm at the trained weights and movement from initialisation (Wen & Li, PAPERS §3)."""

from __future__ import annotations

from clbounds.theory import optimization

from ...store.db import Row
from ..context import Context


def optimization_terms(ctx: Context) -> list[Row]:
    """Gradient norm at the trained weights and movement from initialisation (Wen, PAPERS §3)."""
    batches = ctx.ssl_batches()
    model = ctx.model.train()
    try:
        grad = optimization.full_batch_gradient_norm(model, ctx.ssl_loss, batches)
    finally:
        ctx.model.eval()
    rows = [("gradient_norm", grad, f"||grad L|| over {len(batches)} fixed batches of view pairs, BN train mode")]
    if not ctx.logs_dynamics:  # else training logged Wen's movement of both networks, (W, V)
        unknown = ctx.initial_weights_unknown("weight_movement")
        rows.append(unknown or ("weight_movement", optimization.relative_weight_movement(ctx.model, ctx.init_model), "||W_T - W_0||_F / ||W_0||_F, all parameters, final epoch"))
    return rows
