"""Term group ``autoattack`` (opt-in, ``measure.autoattack``): AutoAttack on the linear probe, with the RobustBench sanity rows."""

from __future__ import annotations

from torch import nn

from ...store.db import Row
from ..context import Context
from .adversarial import probe_attack


def autoattack_unavailable_here(ctx: Context) -> str | None:
    """Why AutoAttack cannot run on this context (None when it can): the optional extra is not
    installed, or the data has fewer than 4 classes."""
    from ..autoattack import autoattack_unavailable

    if why := autoattack_unavailable():
        return why
    if ctx.data.num_classes < 4:
        return f"AutoAttack needs at least 4 classes (APGD-T's DLR loss reads the 4th-largest logit); this data has {ctx.data.num_classes}"
    return None


def autoattack_terms(ctx: Context) -> list[Row]:
    """AutoAttack's robust accuracy of the linear probe on the same inputs as PGD, with the
    RobustBench sanity rows (experiments/measurement/autoattack.py; needs the torchattacks extra)."""
    from ..autoattack import autoattack_rows  # torchattacks: an optional extra

    m = ctx.cfg.measure
    probe, lin = probe_attack(ctx)
    pgd_name = f"PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255"
    return autoattack_rows(nn.Sequential(ctx.model, probe).eval(), ctx.x.float() / 255, ctx.y, ctx.data.num_classes, m.attack_eps, ctx.cfg.seed,
                           lin["robust_accuracy"], pgd_name, f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {ctx.split}", log=ctx.log)
