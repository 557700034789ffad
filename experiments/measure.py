"""`clbounds measure`: every empirical term of the theorems, for one trained encoder.

Each group below computes a handful of terms with the pure functions of `theory/` and
returns (name, value, protocol) rows; `measure` stores them in the run store. Protocols
name the split, the number of inputs, the features used and every estimator setting, so a
stored number can always be reproduced.

Features: "features" means the L2-normalised backbone output h/‖h‖ (Huang et al.'s f with
r = 1, what the probes use); "projection" means the projection head output the training
loss saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory import adversarial, geometry, information, optimization, sharpness, shift
from clbounds.theory import arora
from clbounds.theory.losses import barlow_twins, cacr, huang_barlow_split, huang_infonce_split, info_nce

from .augment import Augment
from .config import Config, config_from_dict
from .data import ImageDataset
from .evaluate import load_encoder
from .probes import extract_features, fit_linear_probe
from .store import RunRecord, Store
from .train import load_run_data, resolve_device

Row = tuple[str, float, str]


@dataclass
class Context:
    """What every term group needs: the run's config, data, encoder and fixed random views."""

    cfg: Config
    data: ImageDataset
    model: nn.Module  # the trained Encoder, in eval mode
    init_model: nn.Module  # the same architecture at its initial weights
    augment: Augment
    x: torch.Tensor  # uint8 test inputs used for the terms [N, C, H, W]
    y: torch.Tensor
    views: torch.Tensor  # M augmented views of x, float [M, N, C, H, W]
    device: torch.device

    def generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 7919 + salt)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(extract_features(self.model, x), dim=1)

    @torch.no_grad()
    def projections(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.model.eval()
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        return torch.cat([self.model.projector(self.model(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)])

    def normalized_projections(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projections(x), dim=1)

    def ssl_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed pairs of augmented views, for the terms that differentiate the loss."""
        m, b = self.cfg.measure, self.cfg.measure.batch_size
        return [(self.views[0, i * b : (i + 1) * b], self.views[1, i * b : (i + 1) * b]) for i in range(min(m.sharpness_batches, max(1, self.x.shape[0] // b)))]

    def ssl_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The method's training loss on one batch of view pairs (``loss_fn`` of theory/)."""
        v1, v2 = batch
        z1, z2 = model.projector(model(v1)), model.projector(model(v2))
        if self.cfg.method.name == "barlow_twins":
            return barlow_twins(z1, z2, self.cfg.method.lambd)
        return info_nce(z1, z2, self.cfg.method.temperature)

    @property
    def split(self) -> str:
        return f"test n={self.x.shape[0]}"


def _f(t: torch.Tensor | float) -> float:
    return float(t.item() if torch.is_tensor(t) else t)


# ---- term groups -----------------------------------------------------------------------


def losses_terms(ctx: Context) -> list[Row]:
    """The trained losses and Huang et al.'s L1/L2 splits on augmentation pairs (PAPERS §5)."""
    v1, v2 = ctx.projections(ctx.views[0]), ctx.projections(ctx.views[1])
    tau, b = ctx.cfg.method.temperature, min(ctx.cfg.measure.batch_size, v1.shape[0])
    batches = [(v1[i : i + b], v2[i : i + b]) for i in range(0, v1.shape[0] - b + 1, b)]
    mean = lambda fn: sum(_f(fn(a, c)) for a, c in batches) / len(batches)  # noqa: E731
    proto = f"projection, augmentation pairs ({ctx.cfg.augment}), batches of {b}, {ctx.split}"
    split = [huang_infonce_split(a, c, temperature=tau) for a, c in batches]
    bt = [huang_barlow_split(a, c) for a, c in batches]
    return [
        ("info_nce", mean(lambda a, c: info_nce(a, c, tau)), f"NT-Xent tau={tau:g}, {proto}"),
        ("barlow_twins", mean(lambda a, c: barlow_twins(a, c, ctx.cfg.method.lambd)), f"lambda={ctx.cfg.method.lambd:g}, {proto}"),
        ("huang_infonce_L1", sum(_f(s["L1"]) for s in split) / len(split), f"Huang et al. split tau={tau:g}, {proto}"),
        ("huang_infonce_L2", sum(_f(s["L2"]) for s in split) / len(split), f"Huang et al. split tau={tau:g}, {proto}"),
        ("huang_barlow_L1", sum(_f(s["L1"]) for s in bt) / len(bt), f"Huang et al. split, {proto}"),
        ("huang_barlow_L2", sum(_f(s["L2"]) for s in bt) / len(bt), f"Huang et al. split, {proto}"),
    ]


def geometry_terms(ctx: Context) -> list[Row]:
    """Class geometry and alignment of Huang et al. (PAPERS §5) and Wang & Isola.

    Computed twice: on the normalised backbone features (suffix-free names, what the probes
    use) and on the normalised projections (suffix ``_projection``, what the loss shaped).
    Huang et al.'s f is one map for both roles; practice splits it in two.
    """
    m, k = ctx.cfg.measure, ctx.data.num_classes
    p = torch.bincount(ctx.data.y_train, minlength=k).double() / ctx.data.y_train.numel()
    rows: list[Row] = [
        ("class_collision", _f(p.pow(2).sum()), "tau_col = sum_k p_k^2, train labels"),
        ("min_class_probability", _f(p.min()), "min_k p_k, train labels"),
    ]
    for suffix, embed in (("", ctx.features), ("_projection", ctx.normalized_projections)):
        space = "features" if not suffix else "projection normalised"
        z_train = embed(ctx.data.x_train)
        centers = geometry.class_centers(z_train, ctx.data.y_train, k)
        sep = geometry.center_separation(centers)
        z = embed(ctx.x)
        view_z = torch.stack([embed(v) for v in ctx.views])  # [M, N, D]
        proto_c = f"{space}, centres on train n={z_train.shape[0]}"
        proto_v = f"{space}, M={m.views} views ({ctx.cfg.augment}), {ctx.split}"
        rows += [
            ("center_max_inner" + suffix, _f(sep["max_inner"]), proto_c),
            ("center_min_distance" + suffix, _f(sep["min_distance"]), proto_c),
            ("delta_mu" + suffix, _f(sep["delta_mu"]), f"{proto_c}, r=1"),
            ("intra_class_spread" + suffix, _f(geometry.intra_class_spread(z_train, ctx.data.y_train, num_classes=k)), proto_c),
            ("nearest_center_error" + suffix, _f(geometry.nearest_center_error(z, ctx.y, centers)), f"{proto_c}, evaluated on {ctx.split}"),
            ("alignment" + suffix, _f(geometry.alignment(view_z[0], view_z[1])), f"E||f(x1)-f(x2)||^2, {proto_v}"),
            ("uniformity" + suffix, _f(geometry.uniformity(z)), f"t=2, {space}, {ctx.split}"),
            ("misalignment_rate" + suffix, _f(geometry.misalignment_rate(view_z, m.eps)), f"R_eps eps={m.eps:g}, {proto_v}"),
        ]
    return rows


def sigma_terms(ctx: Context) -> list[Row]:
    """σ(δ) of the (σ,δ)-augmentation from the augmented distance d_A (Huang et al. §5)."""
    m, k = ctx.cfg.measure, ctx.data.num_classes
    idx = torch.cat([torch.nonzero(ctx.y == c).flatten()[: m.sigma_per_class] for c in range(k)])
    views = ctx.views[:, idx]
    d_a = geometry.augmented_distance(views)
    same = (ctx.y[idx, None] == ctx.y[None, idx]) & ~torch.eye(idx.numel(), dtype=torch.bool, device=d_a.device)
    delta = m.delta if m.delta is not None else _f(d_a[same].median())
    result = geometry.sigma_delta(d_a, ctx.y[idx], delta, num_classes=k)
    methods = sorted(set(result["method"]))
    proto = f"pixel-L2 d_A over M={m.views} views ({ctx.cfg.augment}), {m.sigma_per_class} test inputs per class, delta={delta:.4g}{' (median same-class d_A)' if m.delta is None else ''}, solver={'+'.join(methods)}"
    rows = [("sigma", _f(result["sigma"]), proto), ("sigma_delta", delta, proto)]
    if ctx.data.generator is not None and ctx.data.train_main is not None:
        rows.append(("sigma_generator", ctx.data.generator.main_fraction, "synthetic ground truth: P(main part) of the generator"))
    return rows


def lipschitz_terms(ctx: Context) -> list[Row]:
    """L of the backbone h: a lower estimate at worst-case pairs and, where rigorous, the spectral upper bound."""
    x = ctx.x.float() / 255
    # The pairs that stretch h most are found by the representation attack (L2, radius 0.5).
    x_adv, _ = adversarial.representation_attack(ctx.model, x, 0.5, 0.05, 10, norm="l2", generator=ctx.generator(11))
    with torch.no_grad():
        lower = geometry.lipschitz_lower(ctx.model, x, x_adv)
    rows = [("lipschitz_lower", _f(lower), f"max ||h(x')-h(x)||/||x'-x|| at PGD-10 L2 eps=0.5 representation-attack pairs, backbone h, {ctx.split}")]
    try:
        upper = geometry.lipschitz_upper(ctx.model.backbone, input_shape=ctx.data.image_shape, certified=True)
        std_min = float(ctx.model.normalize.std.min())
        rows.append(("lipschitz_upper", _f(upper) / std_min, "certified: product of layer norms (Fourier bound for convs) x 1/min(std), backbone h"))
    except (ValueError, TypeError):
        pass  # architectures without a rigorous product bound (e.g. residual) get no row
    return rows


def sharpness_terms(ctx: Context) -> list[Row]:
    """Sharpness of the training loss at the trained weights (SSA-CLR, PAPERS §2)."""
    m = ctx.cfg.measure
    batches = ctx.ssl_batches()
    model = ctx.model.train()  # the loss as training saw it: BatchNorm on batch statistics
    proto = f"{ctx.cfg.method.name} loss, {len(batches)} fixed batches of {batches[0][0].shape[0]} view pairs, BN train mode"
    try:
        rows = [
            ("sharpness_sam", sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=1), f"one-step SAM rho={m.rho:g}, {proto}"),
            ("sharpness", sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=m.sharpness_steps), f"projected ascent steps={m.sharpness_steps} rho={m.rho:g}, {proto}"),
            ("sharpness_asam", sharpness.sharpness(model, ctx.ssl_loss, batches, m.rho, steps=1, adaptive=True), f"one-step ASAM rho={m.rho:g}, {proto}"),
            ("sharpness_average", sharpness.average_sharpness(model, ctx.ssl_loss, batches, m.noise_sigma, generator=ctx.generator(1)), f"E over N(0, {m.noise_sigma:g}^2 I) weight noise, 8 antithetic samples, {proto}"),
            ("hessian_lambda_max", sharpness.hessian_top_eigenvalue(model, ctx.ssl_loss, batches, iters=m.hessian_iters, generator=ctx.generator(2)), f"Lanczos iters={m.hessian_iters}, {proto}"),
            ("hessian_trace", sharpness.hessian_trace(model, ctx.ssl_loss, batches, samples=m.trace_samples, generator=ctx.generator(3)), f"Hutchinson {m.trace_samples} Rademacher samples, {proto}"),
        ]
    finally:
        ctx.model.eval()
    return rows


def shift_terms(ctx: Context) -> list[Row]:
    """Ideal (two independent same-class samples) vs practical (two views) positive pairs (PAPERS §2)."""
    n, tau = ctx.x.shape[0], ctx.cfg.method.temperature
    g = ctx.generator(4)
    if ctx.data.generator is not None:
        x1, x2 = ctx.data.generator.ideal_pairs(ctx.y.cpu(), g)
        source = "synthetic generator: independent draws of each class"
    else:
        x1, x2 = ctx.x, ctx.x[_same_class_partner(ctx.y.cpu(), g).to(ctx.y.device)]
        source = "labels: each input paired with another test input of its class"
    x1, x2 = x1.to(ctx.device).float() / 255, x2.to(ctx.device).float() / 255
    ideal = (ctx.projections(x1), ctx.projections(x2))
    practical = (ctx.projections(ctx.views[0]), ctx.projections(ctx.views[1]))
    b = min(ctx.cfg.measure.batch_size, n)
    gaps = [_f(shift.positive_pair_loss_gap((ideal[0][i : i + b], ideal[1][i : i + b]), (practical[0][i : i + b], practical[1][i : i + b]), tau)) for i in range(0, n - b + 1, b)]
    low, high = shift.infonce_range(2 * b - 2, tau)
    joint = lambda pair: torch.cat([F.normalize(pair[0], dim=1), F.normalize(pair[1], dim=1)], dim=1)  # noqa: E731
    ji, jp = joint(ideal), joint(practical)
    proto = f"projection, ideal from {source}; practical = 2 views ({ctx.cfg.augment}), {ctx.split}"
    return [
        ("shift_loss_gap", sum(gaps) / len(gaps), f"InfoNCE(ideal) - InfoNCE(practical), tau={tau:g}, batches of {b}, {proto}"),
        ("infonce_range", high - low, f"width of [log(1+M e^(-2/tau)), log(1+M e^(2/tau))], M={2 * b - 2}, tau={tau:g}"),
        ("shift_mmd2", _f(shift.mmd2(ji, jp)), f"unbiased RBF MMD^2, median bandwidth, joint (z, z+) normalised, {proto}"),
        ("shift_sliced_wasserstein", _f(shift.sliced_wasserstein(ji, jp, generator=ctx.generator(5))), f"SW_2, 128 directions, joint (z, z+), {proto}"),
        ("shift_cosine_gap", _f(shift.positive_cosine_gap(ideal, practical)), f"mean cos(practical) - mean cos(ideal), {proto}"),
        # Held out: fitted in-sample on n ~ D rows, the discriminator separates any two samples.
        ("shift_js", _f(shift.js_divergence(ji, jp, generator=ctx.generator(6), holdout=0.5, weight_decay=0.1)), f"log 2 - L_D, ridge-logistic discriminator (lambda=0.1) fitted on half, scored on the held-out half (lower bound on JS), joint (z, z+), {proto}"),
    ]


def _same_class_partner(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each i a random j ≠ i with y_j = y_i (i itself when its class has one member)."""
    partner = torch.arange(y.numel())
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        if idx.numel() > 1:  # a random derangement within the class: a cyclic shift of a permutation
            perm = idx[torch.randperm(idx.numel(), generator=g)]
            partner[perm] = perm.roll(1)
    return partner


def adversarial_terms(ctx: Context) -> list[Row]:
    """Robust accuracy and the representation gap under PGD (robust CL, PAPERS §1)."""
    m = ctx.cfg.measure
    f_train = extract_features(ctx.model, ctx.data.x_train)
    probe = fit_linear_probe(f_train, ctx.data.y_train, ctx.data.num_classes, ctx.cfg.eval.linear_steps, ctx.cfg.eval.linear_weight_decay)
    x = ctx.x.float() / 255
    attack = f"PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 step={m.attack_alpha * 255:.3g}/255 random start"
    lin = adversarial.robust_accuracy(nn.Sequential(ctx.model, probe).eval(), x, ctx.y, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(7))
    centers = geometry.class_centers(F.normalize(f_train, dim=1), ctx.data.y_train, ctx.data.num_classes)
    nc = adversarial.robust_accuracy(adversarial.nearest_center_logits(ctx.model, centers).eval(), x, ctx.y, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(8))
    _, gap = adversarial.representation_attack(ctx.model, x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    _, gap_normalized = adversarial.representation_attack(_NormalizedFeatures(ctx.model), x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    # The probe is W·diag(1/std) on h, so its Lipschitz constant in h is that matrix's spectral norm.
    probe_lipschitz = torch.linalg.matrix_norm(probe.head.weight / probe.std, ord=2)
    v1, v2 = ctx.views[0], ctx.views[1]
    b = min(m.batch_size, v1.shape[0])
    projector = nn.Sequential(ctx.model, ctx.model.projector).eval()
    v2_adv = adversarial.contrastive_attack(projector, v1[:b], v2[:b], m.attack_eps, 2 / 255, 7, temperature=ctx.cfg.method.temperature, generator=ctx.generator(10))
    with torch.no_grad():
        z1 = projector(v1[:b])
        adv_nce, ben_nce = info_nce(z1, projector(v2_adv), ctx.cfg.method.temperature), info_nce(z1, projector(v2[:b]), ctx.cfg.method.temperature)
    probe_proto = f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {attack}, {ctx.split}"
    return [
        ("clean_accuracy", lin["clean_accuracy"], f"linear probe offline final-epoch, {ctx.split}"),
        ("robust_accuracy", lin["robust_accuracy"], probe_proto),
        ("clean_cross_entropy", lin["clean_cross_entropy"], f"linear probe offline final-epoch, {ctx.split}"),
        ("robust_cross_entropy", lin["robust_cross_entropy"], probe_proto),
        ("probe_lipschitz", _f(probe_lipschitz), "spectral norm of W diag(1/std), the linear probe as a map of h"),
        ("nearest_center_robust_accuracy", nc["robust_accuracy"], f"nearest-centre normalised, {attack}, {ctx.split}"),
        ("representation_gap", _f(gap.mean()), f"mean over inputs of max ||h(x+d)-h(x)||, backbone h, {attack}"),
        ("representation_gap_normalized", _f(gap_normalized.mean()), f"mean over inputs of max ||f(x+d)-f(x)||, features, {attack}"),
        ("adversarial_info_nce", _f(adv_nce), f"InfoNCE(x1, x2_adv) tau={ctx.cfg.method.temperature:g}, RoCL attack PGD-7 Linf eps={m.attack_eps * 255:.3g}/255 step=2/255, batch {b}"),
        ("benign_info_nce", _f(ben_nce), f"InfoNCE(x1, x2) tau={ctx.cfg.method.temperature:g}, the same batch of {b}"),
    ]


class _NormalizedFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(x), dim=1)


def optimization_terms(ctx: Context) -> list[Row]:
    """Gradient norm at the trained weights and movement from initialisation (Wen, PAPERS §3)."""
    batches = ctx.ssl_batches()
    model = ctx.model.train()
    try:
        grad = optimization.full_batch_gradient_norm(model, ctx.ssl_loss, batches)
    finally:
        ctx.model.eval()
    rows = [("gradient_norm", grad, f"||grad L|| over {len(batches)} fixed batches of view pairs, BN train mode")]
    if ctx.cfg.method.name != "two_network":  # training logged Wen's movement of both networks, (W, V)
        rows.append(("weight_movement", optimization.relative_weight_movement(ctx.model, ctx.init_model), "||W_T - W_0||_F / ||W_0||_F, all parameters, final epoch"))
    return rows


def information_terms(ctx: Context) -> list[Row]:
    """Mutual information between query and negative embeddings (CACR claim, PAPERS §4)."""
    q = F.normalize(ctx.projections(ctx.views[0]), dim=1)
    k = F.normalize(ctx.projections(ctx.views[1]), dim=1)
    b = min(ctx.cfg.measure.batch_size, q.shape[0])
    negatives = k.roll(1, dims=0)  # the key of another input: a negative for every query
    return [
        ("mi_infonce_bound", _f(information.infonce_mi_lower_bound(q[:b], k[:b], ctx.cfg.method.temperature)), f"log(2B-1) - InfoNCE, B={b}, query vs positive key, capped at log(2B-1)"),
        ("mi_query_negative", _f(information.knn_mutual_information(q, negatives, k=3)), f"KSG k=3 (nats) between query and a negative's key, projection, {ctx.split}"),
    ]


CACR_WEIGHT_BINS = 8


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation; 0 when either side is constant (uniform weights do not depend on distance)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = a.norm() * b.norm()
    return _f(a @ b / denom) if denom > 0 else 0.0


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
    weight of bin k: ``cacr_{negative,positive}_{distance,weight}_bin{k}``).
    """
    m, cfg = ctx.cfg.measure, ctx.cfg.method
    n, v = ctx.x.shape[0], ctx.views.shape[0]
    b = min(m.batch_size, n)
    z = F.normalize(torch.stack([ctx.projections(view) for view in ctx.views]), dim=-1)  # [M, N, D]
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
            rows += [(f"cacr_{kind}_distance_bin{k}", _f(d[idx].mean()), bin_proto), (f"cacr_{kind}_weight_bin{k}", _f(w_rel[idx].mean()), bin_proto)]
    same = torch.cat(neg_same)
    if same.any():
        rows.append(("cacr_same_class_weight_ratio", _f(torch.cat(neg_w)[same].mean()), f"mean relative w- on same-class negatives ({int(same.sum())} pairs), {proto}"))
    return rows


# ---- inputs of the bounds/ modules (clbounds bounds) --------------------------------------


# PAC-Bayes units (batches) used at most: the bound holds for any i.i.d. subset of the training
# data (with n = the units used), and this keeps the cost bounded on CIFAR-sized sets.
_PAC_BAYES_MAX_UNITS = 64


def _view_pair_batches(ctx: Context, x: torch.Tensor, batch_size: int, salt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Disjoint random batches of ``x`` (at most ``_PAC_BAYES_MAX_UNITS``), two augmented views each, as uint8 images."""
    g = ctx.generator(salt)
    perm = torch.randperm(x.shape[0], generator=g).to(x.device)
    units = min(x.shape[0] // batch_size, _PAC_BAYES_MAX_UNITS)
    to_u8 = lambda v: (v * 255).round().to(torch.uint8)  # noqa: E731
    return [(to_u8(ctx.augment(x[idx], g)), to_u8(ctx.augment(x[idx], g))) for idx in (perm[i * batch_size : (i + 1) * batch_size] for i in range(units))]


def bounds_terms(ctx: Context) -> list[Row]:
    """The inputs of the bounds/ modules that the other groups do not measure.

    - Arora et al. 2019 (PAPERS §6): L_un and the mean-classifier L_sup^μ on f = z/‖z‖/√τ, the
      normalised projection scaled by 1/√τ so that fᵀf' are the InfoNCE logits. Both on the
      empirical distribution of the measured test sample (``theory.arora``): ideal positives
      are independent draws of the anchor's class from it (on synthetic data these are
      independent generator samples), negatives independent draws of it, μ_c its class
      means; 1 negative (exact), M = K negatives and the NT-Xent structure (B − 1 negative
      classes, each twice) by Monte Carlo.
    - Huang et al. (PAPERS §5): the ε and M of R_ε, the pairwise misalignment rate, the
      smallest feature/projection norms (for the Lipschitz constant of the normalised map),
      the certified Lipschitz bound of the projector, the InfoNCE split at temperature 1
      (unit-norm f, as the paper states it), d and K.
    - SSA-CLR (PAPERS §2): NT-Xent (practical pairs, eval mode) on disjoint random train
      batches of the measure batch size (at most 64, the i.i.d. units of the PAC-Bayes bound),
      its ρ-sharp maximum (projected ascent), the same loss on held-out test batches, its
      range, k, ‖θ‖, ‖θ − θ₀‖, n.
    - Robust CL (PAPERS §1): the JS proxy between benign and adversarial projections under the
      RoCL attack, and the representation gap at the probe's own PGD points.
    """
    m, tau, k = ctx.cfg.measure, ctx.cfg.method.temperature, ctx.data.num_classes
    n = ctx.x.shape[0]
    b = min(m.batch_size, n)
    g = ctx.generator(21)
    rows: list[Row] = []

    # Arora et al. 2019
    f = ctx.normalized_projections(ctx.x).double() / math.sqrt(tau)
    y = ctx.y
    p = arora.class_probabilities(y)
    space = f"normalised projection / sqrt(tau), tau={tau:g}, empirical distribution of the {ctx.split}"
    un_m = arora.unsupervised_loss(f, y, k, samples=32, generator=g)
    sup_m = arora.mean_classifier_loss(f, y, k, samples=32, generator=g)
    sup_nt = arora.mean_classifier_loss(f, y, b - 1, samples=32, generator=g)
    mc = "Monte Carlo 32 draws per anchor"
    rows += [
        ("arora_unsupervised_loss", _f(arora.unsupervised_loss_exact(f, y)), f"1 negative, exact, {space}"),
        ("arora_mean_classifier_loss", _f(arora.mean_classifier_loss_exact(f, y)), f"1 negative class, exact, sample class means, {space}"),
        ("arora_collision", _f(arora.collision_probability(p, 1)), f"tau = sum_k p_k^2, labels of the {ctx.split}"),
        ("arora_negatives", float(k), "M = number of classes"),
        ("arora_unsupervised_loss_M", _f(un_m["loss"]), f"M={k} negatives, {mc}, {space}"),
        ("arora_unsupervised_loss_M_stderr", _f(un_m["stderr"]), f"Monte Carlo standard error, M={k}, {space}"),
        ("arora_mean_classifier_loss_M", _f(sup_m["loss"]), f"M={k} negative-class draws, {mc}, {space}"),
        ("arora_mean_classifier_loss_M_stderr", _f(sup_m["stderr"]), f"Monte Carlo standard error, M={k}, {space}"),
        ("arora_collision_M", _f(arora.collision_probability(p, k)), f"tau_M = sum_k p_k (1-(1-p_k)^M), M={k}"),
        ("arora_collision_floor_M", _f(arora.collision_floor(p, k)), f"gamma_M = sum_k p_k E log(1+J), J~Bin(M,p_k), M={k}"),
        ("arora_mean_classifier_loss_ntxent", _f(sup_nt["loss"]), f"NT-Xent batch of {b}: M=B-1={b - 1} negative-class draws, {mc}, {space}"),
        ("arora_collision_ntxent", _f(arora.collision_probability(p, b - 1)), f"tau_M, M=B-1={b - 1}"),
        ("arora_collision_floor_ntxent", _f(arora.collision_floor(p, b - 1, multiplicity=2)), f"gamma_M with each colliding input counted twice (both views), M=B-1={b - 1}"),
    ]

    # Huang et al. 2023
    rows += [("misalignment_eps", m.eps, "eps of R_eps (measure.eps), on normalised embeddings"), ("misalignment_views", float(m.views), "M views per input for R_eps")]
    for suffix, embed in (("", ctx.features), ("_projection", ctx.normalized_projections)):
        dist = (embed(ctx.views[0]) - embed(ctx.views[1])).norm(dim=1)
        rows.append(("misalignment_rate_pairwise" + suffix, _f((dist > m.eps).double().mean()), f"P[||f(x1)-f(x2)|| > eps], eps={m.eps:g}, views 1 and 2, {ctx.split}"))
    inputs = [ctx.x, *ctx.views]
    h_norm = min(_f(extract_features(ctx.model, v).norm(dim=1).min()) for v in inputs)
    z_norm = min(_f(ctx.projections(v).norm(dim=1).min()) for v in inputs)
    rows += [
        ("feature_norm_min", h_norm, f"min ||h(x)|| over the {ctx.split} and its {m.views} views, backbone h"),
        ("projection_norm_min", z_norm, f"min ||g(h(x))|| over the {ctx.split} and its {m.views} views, projection"),
    ]
    try:
        rows.append(("lipschitz_upper_projector", _f(geometry.lipschitz_upper(ctx.model.projector.eval(), certified=True)), "certified: product of layer norms of the projection head g, a map of h"))
    except (ValueError, TypeError):
        pass  # a head without a rigorous product bound gets no row
    z1, z2 = ctx.projections(ctx.views[0]), ctx.projections(ctx.views[1])
    split = [huang_infonce_split(z1[i : i + b], z2[i : i + b], temperature=1.0) for i in range(0, n - b + 1, b)]
    proto = f"Huang et al. split at temperature 1 (unit-norm f), projection, augmentation pairs ({ctx.cfg.augment}), batches of {b}, {ctx.split}"
    rows += [
        ("huang_infonce_L1_unit", sum(_f(s["L1"]) for s in split) / len(split), proto),
        ("huang_infonce_L2_unit", sum(_f(s["L2"]) for s in split) / len(split), proto),
        ("embedding_dim", float(z1.shape[1]), "d, projection dimension"),
        ("num_classes", float(k), "K"),
    ]

    # SSA-CLR: the PAC-Bayes/SAM route on the practical NT-Xent loss, eval mode, batches of b.
    def nt_xent(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        v1, v2 = (v.float() / 255 for v in batch)
        return info_nce(model.projector(model(v1)), model.projector(model(v2)), tau)

    train_batches = _view_pair_batches(ctx, ctx.data.x_train, b, 23)
    test_batches = _view_pair_batches(ctx, ctx.data.x_test, b, 24)
    model = ctx.model.eval()
    with torch.no_grad():
        loss_train = sum(_f(nt_xent(model, bt)) for bt in train_batches) / len(train_batches)
        loss_test = sum(_f(nt_xent(model, bt)) for bt in test_batches) / len(test_batches)
    sharp = sharpness.sharpness(model, nt_xent, train_batches, m.rho, steps=m.sharpness_steps, generator=ctx.generator(25))
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    init = dict(ctx.init_model.named_parameters())
    theta = torch.cat([p.detach().double().flatten() for p in params.values()])
    theta0 = torch.cat([init[name].detach().double().flatten().to(theta.device) for name in params])
    low, high = shift.infonce_range(2 * b - 2, tau)
    proto = f"NT-Xent tau={tau:g} on practical pairs ({ctx.cfg.augment}, 8-bit views), eval mode, disjoint batches of {b}"
    rows += [
        ("ssl_loss_train", loss_train, f"{proto}, {len(train_batches)} train batches"),
        ("ssl_sharp_loss_train", loss_train + sharp, f"max over ||eps|| <= rho={m.rho:g} by projected ascent steps={m.sharpness_steps}, {proto}, {len(train_batches)} train batches"),
        ("ssl_loss_heldout", loss_test, f"{proto}, {len(test_batches)} test batches"),
        ("ssl_loss_range", high - low, f"hi - lo of the per-anchor NT-Xent, M=2B-2={2 * b - 2}, tau={tau:g}"),
        ("pac_bayes_units", float(len(train_batches)), f"n = min(floor(n_train / {b}), {_PAC_BAYES_MAX_UNITS}) disjoint random train batches, the i.i.d. units"),
        ("n_train", float(ctx.data.x_train.shape[0]), "training set size"),
        ("num_parameters", float(theta.numel()), "k, trainable parameters of backbone and projection head"),
        ("weight_norm", _f(theta.norm()), "||theta||, trainable parameters, final epoch"),
        ("weight_distance", _f((theta - theta0).norm()), "||theta - theta_0||, trainable parameters, final epoch vs the seed's initialisation"),
        ("sharpness_rho", m.rho, "rho of the sharpness ball (measure.rho)"),
    ]

    # Robust CL: JS proxy between benign and adversarial projections (the RoCL attack of the
    # "adversarial" group, same seed), and the representation gap at the probe's PGD points.
    v1, v2 = ctx.views[0][:b], ctx.views[1][:b]
    projector = nn.Sequential(ctx.model, ctx.model.projector).eval()
    v2_adv = adversarial.contrastive_attack(projector, v1, v2, m.attack_eps, 2 / 255, 7, temperature=tau, generator=ctx.generator(10))
    with torch.no_grad():
        z_ben, z_adv = F.normalize(projector(v2), dim=1), F.normalize(projector(v2_adv), dim=1)
    rows.append(("adversarial_js", _f(shift.js_divergence(z_ben, z_adv, generator=ctx.generator(26))), f"log 2 - L_D*, linear discriminator, normalised projections of x2 vs x2_adv (RoCL PGD-7 Linf eps={m.attack_eps * 255:.3g}/255), batch {b}"))
    probe = fit_linear_probe(extract_features(ctx.model, ctx.data.x_train), ctx.data.y_train, k, ctx.cfg.eval.linear_steps, ctx.cfg.eval.linear_weight_decay)
    classifier = nn.Sequential(ctx.model, probe).eval()
    x, gen, gaps = ctx.x.float() / 255, ctx.generator(7), []
    for i in range(0, n, 256):  # the batches and generator of adversarial.robust_accuracy in the "adversarial" group
        xb = x[i : i + 256]
        xb_adv = adversarial.pgd(classifier, xb, ctx.y[i : i + 256], m.attack_eps, m.attack_alpha, m.attack_steps, generator=gen)
        with torch.no_grad():
            gaps.append((ctx.model(xb_adv) - ctx.model(xb)).norm(dim=1))
    rows.append(("representation_gap_at_probe_attack", _f(torch.cat(gaps).mean()), f"mean ||h(x_adv)-h(x)|| at the linear probe's PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 points, backbone h, {ctx.split}"))
    return rows


TERM_GROUPS: dict[str, Callable[[Context], list[Row]]] = {
    "losses": losses_terms,
    "geometry": geometry_terms,
    "sigma": sigma_terms,
    "lipschitz": lipschitz_terms,
    "sharpness": sharpness_terms,
    "shift": shift_terms,
    "adversarial": adversarial_terms,
    "optimization": optimization_terms,
    "information": information_terms,
    "cacr_weights": cacr_weight_terms,
    "bounds": bounds_terms,
}


def build_context(record: RunRecord) -> Context:
    cfg = config_from_dict(record.config)
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    model = load_encoder(record, data.image_shape).to(device).eval()
    init_model = load_encoder(record, data.image_shape, random_init=True).to(device).eval()
    m = cfg.measure
    g = torch.Generator().manual_seed(cfg.seed * 7919)
    n = min(m.n_samples, data.x_test.shape[0])
    pick = torch.randperm(data.x_test.shape[0], generator=g)[:n].to(device)
    x, y = data.x_test[pick], data.y_test[pick]
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    views = torch.stack([augment(x, g) for _ in range(m.views)])
    return Context(cfg, data, model, init_model, augment, x, y, views, device)


def measure(record: RunRecord, store: Store, terms: list[str] | None = None) -> list[Row]:
    """Computes the chosen term groups (all by default) for a finished run and stores them."""
    unknown = sorted(set(terms or []) - set(TERM_GROUPS))
    if unknown:
        raise ValueError(f"unknown term group(s) {', '.join(unknown)}; choose from {', '.join(TERM_GROUPS)}")
    ctx = build_context(record)
    rows: list[Row] = []
    for name in terms or list(TERM_GROUPS):
        try:
            group = TERM_GROUPS[name](ctx)
        except (RuntimeError, ValueError) as err:
            raise RuntimeError(f"term group {name!r} failed: {err}; the groups before it were stored") from err
        bad = [r for r in group if not math.isfinite(r[1])]
        if bad:
            raise RuntimeError(f"term group {name!r} gave non-finite values: {bad}")
        store.add_measurements(record.id, group)
        rows += group
    return rows
