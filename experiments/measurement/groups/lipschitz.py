"""Term group ``lipschitz``: the Lipschitz constant of the backbone, a lower estimate and, where rigorous, a certified upper bound (Huang et al., PAPERS §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clbounds.bounds.common import unavailable_row
from clbounds.theory import adversarial, geometry

from ...store.db import Row
from ..context import Context, scalar


def lipschitz_terms(ctx: Context) -> list[Row]:
    """L of the backbone h: a lower estimate at worst-case pairs and, where rigorous, the spectral upper bound."""
    x = ctx.x.float() / 255
    # The pairs that stretch h most are found by the representation attack (L2, radius 0.5).
    x_adv, _ = adversarial.representation_attack(ctx.model, x, 0.5, 0.05, 10, norm="l2", generator=ctx.generator(11))
    pairs = f"PGD-10 L2 eps=0.5 representation-attack pairs, {ctx.split}"
    with torch.no_grad():
        lower = geometry.lipschitz_lower(ctx.model, x, x_adv)
        # Theorem 1's L is that of the normalised maps f = h/||h|| and z/||z||: their own lower sides.
        lower_f = geometry.lipschitz_lower(lambda t: F.normalize(ctx.model(t), dim=1), x, x_adv)
        lower_z = geometry.lipschitz_lower(lambda t: F.normalize(ctx.model.projector(ctx.model(t)), dim=1), x, x_adv)
    rows = [
        ("lipschitz_lower", scalar(lower), f"max ||h(x')-h(x)||/||x'-x|| at {pairs}, backbone h"),
        ("lipschitz_lower_normalized", scalar(lower_f), f"max ||f(x')-f(x)||/||x'-x||, f = h/||h||, at {pairs} (a lower side of Theorem 1's L)"),
        ("lipschitz_lower_projection_normalized", scalar(lower_z), f"max ||f(x')-f(x)||/||x'-x||, f = z/||z||, at {pairs} (a lower side of Theorem 1's L)"),
    ]
    try:
        upper = geometry.lipschitz_upper(ctx.model.backbone, input_shape=ctx.data.image_shape, certified=True)
        std = getattr(getattr(ctx.model, "normalize", None), "std", None)  # an identity normalisation scales nothing
        std_min = float(std.min()) if std is not None else 1.0
        residual = any(callable(getattr(m, "residual_parts", None)) for m in ctx.model.backbone.modules())
        how = "product of layer norms (Fourier bound for convs" + ("; L(branch) + L(shortcut) per residual block" if residual else "") + ")"
        rows.append(("lipschitz_upper", scalar(upper) / std_min, f"certified: {how} x 1/min(std), backbone h"))
    except (ValueError, TypeError) as err:  # no rigorous product bound for some block: a stored gap, with the reason
        rows.append(unavailable_row("lipschitz_upper", f"no certified Lipschitz upper bound for this backbone: {err}"))
    return rows
