"""Term group ``information``: the mutual information between a query and its negative (CACR, PAPERS §4), with a calibration ladder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clbounds.theory import information

from ...store.db import Row
from ..context import Context, scalar
from ..registry import below_settled


#: True MI values (nats) at which KSG is calibrated, at the measurement's N and dimension.
MI_CALIBRATION = (0.0, 0.5, 1.0, 2.0, 4.0)


def information_terms(ctx: Context) -> list[Row]:
    """Mutual information between a query and its negative (CACR's claim, PAPERS §4).

    The negative of each query (view 1's normalised projection) is a key (view 2's) of another
    input drawn as CACR's repulsion weights draw it, π⁻(j|i) ∝ exp(−τ⁻‖q_i − k_j‖²) within
    batches of ``measure.batch_size`` (``theory.information.conditional_negatives``; τ⁻ =
    ``method.tau_neg`` for every run, so a SimCLR run is scored under the same weighting).
    ``mi_query_negative`` is the KSG estimate of I(q; k⁻) under that draw;
    ``mi_query_negative_uniform`` the same with a uniform draw (independent negatives, true MI 0).
    KSG is then calibrated at the same N and dimension on correlated Gaussians of known MI
    (``MI_CALIBRATION``): ``mi_resolution`` is its largest |estimate − truth| there, below which
    a difference of two estimates is not measurable.
    """
    q = F.normalize(ctx.projections(ctx.views[0]), dim=1)
    k = F.normalize(ctx.projections(ctx.views[1]), dim=1)
    n, b, tau_neg = q.shape[0], min(ctx.cfg.measure.batch_size, q.shape[0]), ctx.cfg.method.tau_neg
    g = ctx.generator(14)
    cond, unif = [], []
    for i in range(0, n - b + 1, b):
        qb, kb = q[i : i + b], k[i : i + b]
        cond.append(kb[information.conditional_negatives(qb, kb, tau_neg, generator=g)])
        unif.append(kb[information.conditional_negatives(qb, kb, 0.0, generator=g)])
    used = len(cond) * b
    calibration = information.knn_mi_calibration(used, q.shape[1], MI_CALIBRATION, k=3, generator=ctx.generator(15))
    proto = f"KSG k=3 (nats), normalised projection, queries = view 1, negatives = view-2 keys of other inputs, batches of {b}, n={used}{below_settled('mi_samples', used)} of the {ctx.split}"
    rows = [
        ("mi_infonce_bound", scalar(information.infonce_mi_lower_bound(q[:b], k[:b], ctx.cfg.method.temperature)), f"log(2B-1) - InfoNCE, B={b}, query vs positive key, capped at log(2B-1)"),
        ("mi_query_negative", scalar(information.knn_mutual_information(q[:used], torch.cat(cond), k=3)), f"{proto}, negative drawn from CACR's pi-(j|i) with tau-={tau_neg:g}"),
        ("mi_query_negative_uniform", scalar(information.knn_mutual_information(q[:used], torch.cat(unif), k=3)), f"{proto}, negative drawn uniformly (true MI 0)"),
        ("mi_tau_neg", float(tau_neg), "tau- of CACR's pi-(j|i) used to draw the negatives (method.tau_neg): MI estimates compare only at one tau-"),
        ("mi_resolution", max(abs(c["error"]) for c in calibration),
         f"max |KSG - truth| on correlated Gaussians, true MI {', '.join(f'{c:g}' for c in MI_CALIBRATION)} nats, n={used}, d={q.shape[1]}, k=3"),
    ]
    rows += [(f"mi_calibration@true={c['true']:g}", c["estimate"], f"KSG k=3 on correlated Gaussians of known MI {c['true']:g} nats, n={used}, d={q.shape[1]}") for c in calibration]
    return rows
