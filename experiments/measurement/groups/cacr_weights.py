"""Term group ``cacr_weights``: CACR's attraction and repulsion weights against distance (PAPERS §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clbounds.theory.losses import cacr

from ...store.db import Row
from ..context import Context, scalar


CACR_WEIGHT_BINS = 8


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation; 0 when either side is constant (uniform weights do not depend on distance)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = a.norm() * b.norm()
    return scalar(a @ b / denom) if denom > 0 else 0.0


def cacr_weight_terms(ctx: Context) -> list[Row]:
    """CACR's attraction and repulsion weights against distance (CACR claims, PAPERS §4).

    The weights of ``theory.losses.cacr`` (the run's τ⁺, τ⁻ and ablation flags) on the
    normalised projections of the M measurement views, in batches of ``measure.batch_size``:
    every view is a query for the K = M − 1 other views of its input (w⁺), and for each view
    pair the first view's anchors weigh the second view's other inputs (w⁻). For a run of
    another method these are the weights CACR *would* put on that embedding. Weights are
    relative, K·w⁺ and (B − 1)·w⁻, so 1 means uniform. Rows: the pooled Pearson correlation of
    weight and squared distance (negatives: ``cacr_weight_distance_corr``, claimed < 0;
    positives: ``cacr_positive_weight_distance_corr``, > 0 by the attraction's design), the
    mean relative weight on same-class negatives (``cacr_same_class_weight_ratio``), and the
    weight-versus-distance curve as 8 equal-count bins of distance (mean distance and mean
    weight of bin k: ``cacr_{negative,positive}_{distance,weight}_bin{k}``). On the
    ``random_embedding`` control the embeddings are i.i.d. Gaussian directions: w⁻ is a softmax
    of −τ⁻·distance, so its correlation with distance is negative there too.
    """
    m, cfg = ctx.cfg.measure, ctx.cfg.method
    n, v = ctx.x.shape[0], ctx.views.shape[0]
    b = min(m.batch_size, n)
    z = F.normalize(torch.stack([ctx.projections(view) for view in ctx.views]), dim=-1)  # [M, N, D]
    if ctx.control_name == "random_embedding":  # the control: the same statistics on structureless embeddings
        z = F.normalize(torch.randn(z.shape, generator=ctx.generator(16), dtype=z.dtype).to(z.device), dim=-1)
    others = torch.tensor([[k for k in range(v) if k != q] for q in range(v)], device=z.device)  # cacr's order of positives
    neg_d, neg_w, neg_same, pos_d, pos_w = [], [], [], [], []
    for i in range(0, n - b + 1, b):
        zb, yb = z[:, i : i + b], ctx.y[i : i + b]
        _, w = cacr(zb, cfg.tau_pos, cfg.tau_neg, return_weights=True, uniform_pos=cfg.uniform_pos, uniform_neg=cfg.uniform_neg)
        off = ~torch.eye(b, dtype=torch.bool, device=z.device)
        for p, (x, y) in enumerate(w["pairs"].tolist()):
            neg_d.append(torch.cdist(zb[x], zb[y]).pow(2)[off])
            neg_w.append((b - 1) * w["w_neg"][p][off])
            neg_same.append((yb[:, None] == yb[None])[off])
        pos_d.append((zb[:, :, None] - zb[others].transpose(1, 2)).pow(2).sum(-1).flatten())  # [M, B, K]: query q, positive k
        pos_w.append((v - 1) * w["w_pos"].flatten())
    proto = (f"CACR weights tau+={cfg.tau_pos:g} tau-={cfg.tau_neg:g}{' uniform w+' if cfg.uniform_pos else ''}{' uniform w-' if cfg.uniform_neg else ''}, "
             f"relative (1 = uniform), vs squared distance, normalised projection, M={v} views ({ctx.cfg.augment}), batches of {b}, {ctx.split}")
    rows: list[Row] = []
    for kind, d, w_rel in (("negative", torch.cat(neg_d), torch.cat(neg_w)), ("positive", torch.cat(pos_d), torch.cat(pos_w))):
        name = "cacr_weight_distance_corr" if kind == "negative" else "cacr_positive_weight_distance_corr"
        rows.append((name, _pearson(w_rel, d), f"pooled Pearson corr over {d.numel()} {kind} pairs, {proto}"))
        for k, idx in enumerate(torch.tensor_split(d.argsort(stable=True), CACR_WEIGHT_BINS)):
            bin_proto = f"bin {k} of {CACR_WEIGHT_BINS} equal-count bins of distance, {kind} pairs, {proto}"
            rows += [(f"cacr_{kind}_distance_bin{k}", scalar(d[idx].mean()), bin_proto), (f"cacr_{kind}_weight_bin{k}", scalar(w_rel[idx].mean()), bin_proto)]
    same = torch.cat(neg_same)
    if same.any():
        rows.append(("cacr_same_class_weight_ratio", scalar(torch.cat(neg_w)[same].mean()), f"mean relative w- on same-class negatives ({int(same.sum())} pairs), {proto}"))
    return rows
