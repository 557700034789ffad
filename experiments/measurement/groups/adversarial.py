"""Term group ``adversarial``: robust accuracy under PGD and the representation gap (robust CL, PAPERS §1); the probe attack that ``autoattack`` and ``bounds`` reuse."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory import adversarial, geometry
from clbounds.theory.losses import info_nce
from clbounds.theory.uncertainty import binomial_stderr

from ...store.db import Row
from ..context import Context, scalar
from ..probes import extract_features, fit_linear_probe


#: The rows the robust-CL checks read (bounds/robust_cl.py): all that a control of this group
#: testifies to (bounds/common.CONTROLS), so all the random-init control measures.
CHECKED_ROWS = ("clean_accuracy", "robust_accuracy", "robust_accuracy_stderr", "clean_cross_entropy", "robust_cross_entropy", "probe_lipschitz",
                "representation_gap", "adversarial_info_nce", "benign_info_nce")


def adversarial_terms(ctx: Context, checked_only: bool = False) -> list[Row]:
    """Robust accuracy and the representation gap under PGD (robust CL, PAPERS §1).

    ``checked_only``: only :data:`CHECKED_ROWS`, the rows a check reads on a control; the
    nearest-centre and L2 attacks and the normalised representation attack (three of the five
    PGD runs over the test inputs) are left out.
    """
    m = ctx.cfg.measure
    f_train = extract_features(ctx.model, ctx.data.x_train)
    probe, lin = probe_attack(ctx, f_train)
    parts = 3 if checked_only else 5
    ctx.progress(f"adversarial: linear-probe PGD (1/{parts})")
    x = ctx.x.float() / 255
    attack = f"PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 step={m.attack_alpha * 255:.3g}/255 random start"
    _, gap = adversarial.representation_attack(ctx.model, x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    ctx.progress(f"adversarial: representation attack (2/{parts})")
    # The probe is W·diag(1/std) on h, so its Lipschitz constant in h is that matrix's spectral norm.
    probe_lipschitz = torch.linalg.matrix_norm(probe.head.weight / probe.std, ord=2)
    adv_nce, ben_nce, b = _contrastive_attack(ctx)
    ctx.progress(f"adversarial: contrastive attack (3/{parts})")
    probe_proto = f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {attack}, {ctx.split}"
    rows = [
        ("clean_accuracy", lin["clean_accuracy"], f"linear probe offline final-epoch, {ctx.split}"),
        ("robust_accuracy", lin["robust_accuracy"], probe_proto),
        ("robust_accuracy_stderr", scalar(binomial_stderr(lin["robust_accuracy"], ctx.x.shape[0])), f"binomial standard error (Agresti-Coull centre), {probe_proto}"),
        ("clean_cross_entropy", lin["clean_cross_entropy"], f"linear probe offline final-epoch, {ctx.split}"),
        ("robust_cross_entropy", lin["robust_cross_entropy"], probe_proto),
        ("probe_lipschitz", scalar(probe_lipschitz), "spectral norm of W diag(1/std), the linear probe as a map of h"),
        ("representation_gap", scalar(gap.mean()), f"mean over inputs of max ||h(x+d)-h(x)||, backbone h, {attack}"),
        ("adversarial_info_nce", scalar(adv_nce), f"InfoNCE(x1, x2_adv) tau={ctx.cfg.method.temperature:g}, RoCL attack PGD-7 Linf eps={m.attack_eps * 255:.3g}/255 step=2/255, batch {b}"),
        ("benign_info_nce", scalar(ben_nce), f"InfoNCE(x1, x2) tau={ctx.cfg.method.temperature:g}, the same batch of {b}"),
    ]
    if checked_only:
        return rows
    centers = geometry.class_centers(F.normalize(f_train, dim=1), ctx.data.y_train, ctx.data.num_classes)
    nc = adversarial.robust_accuracy(adversarial.nearest_center_logits(ctx.model, centers).eval(), x, ctx.y, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(8))
    ctx.progress("adversarial: nearest-centre PGD (4/5)")
    _, gap_normalized = adversarial.representation_attack(_NormalizedFeatures(ctx.model), x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    l2 = adversarial.robust_accuracy(nn.Sequential(ctx.model, probe).eval(), x, ctx.y, m.attack_l2_eps, m.attack_l2_alpha, m.attack_steps, norm="l2", generator=ctx.generator(11))
    ctx.progress("adversarial: normalised representation and L2 PGD (5/5)")
    l2_attack = f"PGD-{m.attack_steps} L2 eps={m.attack_l2_eps:g} step={m.attack_l2_alpha:g} random start"
    return rows + [
        ("l2_robust_accuracy", l2["robust_accuracy"], f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {l2_attack}, {ctx.split}"),
        ("nearest_center_robust_accuracy", nc["robust_accuracy"], f"nearest-centre normalised, {attack}, {ctx.split}"),
        ("representation_gap_normalized", scalar(gap_normalized.mean()), f"mean over inputs of max ||f(x+d)-f(x)||, features, {attack}"),
    ]


def _contrastive_attack(ctx: Context) -> tuple[torch.Tensor, torch.Tensor, int]:
    """RoCL's attack on the second view of one batch: (adversarial InfoNCE, benign InfoNCE, batch)."""
    m = ctx.cfg.measure
    v1, v2 = ctx.views[0], ctx.views[1]
    b = min(m.batch_size, v1.shape[0])
    projector = nn.Sequential(ctx.model, ctx.model.projector).eval()
    v2_adv = adversarial.contrastive_attack(projector, v1[:b], v2[:b], m.attack_eps, 2 / 255, 7, temperature=ctx.cfg.method.temperature, generator=ctx.generator(10))
    with torch.no_grad():
        z1 = projector(v1[:b])
        return info_nce(z1, projector(v2_adv), ctx.cfg.method.temperature), info_nce(z1, projector(v2[:b]), ctx.cfg.method.temperature), b


def probe_attack(ctx: Context, f_train: torch.Tensor | None = None) -> tuple[nn.Module, dict]:
    """The offline linear probe on the training features and its PGD robust accuracy on the
    test inputs, with the PGD points; made once per context (the "adversarial" and "bounds"
    groups both need them)."""
    key = (ctx.control_name, "probe_attack")
    if key not in ctx.cache:
        m, e = ctx.cfg.measure, ctx.cfg.eval
        f_train = extract_features(ctx.model, ctx.data.x_train) if f_train is None else f_train
        probe = fit_linear_probe(f_train, ctx.data.y_train, ctx.data.num_classes, e.linear_steps, e.linear_weight_decay)
        lin = adversarial.robust_accuracy(nn.Sequential(ctx.model, probe).eval(), ctx.x.float() / 255, ctx.y, m.attack_eps, m.attack_alpha, m.attack_steps,
                                          generator=ctx.generator(7), return_adversarial=True)
        ctx.cache[key] = (probe, lin)
    return ctx.cache[key]


class _NormalizedFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(x), dim=1)
