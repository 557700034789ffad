"""Term group ``bounds``: the inputs of the bounds that need more than a term (Arora et al. 2019; SSA-CLR's ρ-sharp PAC-Bayes terms; robust CL's adversarial terms)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.bounds import ssa_clr
from clbounds.bounds.common import unavailable_row
from clbounds.theory import adversarial, arora, geometry, sharpness, shift
from clbounds.theory.uncertainty import collision_stderr, grouped_jackknife, jackknife, stderr_of_mean
from clbounds.theory.losses import huang_infonce_split, info_nce

from ...store.db import Row
from ..context import Context, scalar, to_uint8
from .adversarial import probe_attack


def view_pair_batches(ctx: Context, x: torch.Tensor, batch_size: int, salt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Disjoint random batches of ``x`` (at most ``measure.pac_bayes_units``: the PAC-Bayes bound
    holds for any i.i.d. subset of the training data, with n = the units used, and this keeps
    the cost bounded on CIFAR-sized sets), two augmented views each, as uint8 images.

    Made once per context family (shared with the controls, in ``ctx.cache``)."""
    key = ("view_pair_batches", x.data_ptr(), tuple(x.shape), batch_size, salt)
    if key not in ctx.cache:
        g = ctx.generator(salt)
        perm = torch.randperm(x.shape[0], generator=g).to(x.device)
        units = min(x.shape[0] // batch_size, ctx.cfg.measure.pac_bayes_units)
        ctx.cache[key] = [(to_uint8(ctx.augment(x[idx], g)), to_uint8(ctx.augment(x[idx], g))) for idx in (perm[i * batch_size : (i + 1) * batch_size] for i in range(units))]
    return ctx.cache[key]


def one_negative_rows(term: str, loss, protocol: str) -> list[Row]:
    """An exact one-negative term on the sample, its delete-one jackknife standard error and its
    jackknife estimate of the plug-in bias (``theory.uncertainty.jackknife``): an input enters
    these losses as anchor, positive, negative and through the class means, so the anchors'
    spread alone is not their sampling error (``benchmarks/studies/arora_margin.py`` simulates
    the coverage). The verdicts decide beyond both (``bounds.common.decide``)."""
    full, loo = loss(False), loss(True)
    jack = jackknife(full, loo)
    over = f"delete-one jackknife over the {loo.numel()} inputs (each as anchor, positive, negative and in its class mean)"
    return [(term, scalar(full), protocol), (f"{term}_stderr", scalar(jack["stderr"]), f"standard error, {over}"),
            (f"{term}_bias", scalar(jack["bias"]), f"estimated plug-in bias (E[estimate] - population), {over}")]


#: Groups of the delete-a-group jackknife of the Monte-Carlo Arora terms.
JACKKNIFE_GROUPS = 10


def monte_carlo_rows(term: str, estimate, out: dict, f: torch.Tensor, y: torch.Tensor, g: torch.Generator, protocol: str) -> list[Row]:
    """A Monte-Carlo Arora term (``out`` from ``estimate(f, y, generator)``), with the standard error
    and bias of the delete-a-group jackknife (``theory.uncertainty.grouped_jackknife``, each
    group's estimate with its own draws): the error over anchors and draws alone holds the
    class means and the sampled negatives fixed, and missed the population difference of
    ``arora2019.m_negative`` in 9% of simulated samples on structured embeddings (``benchmarks/studies/arora_margin.py``).
    Too few inputs to leave a group out keeps that error, and says so."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    groups = min(JACKKNIFE_GROUPS, f.shape[0])
    try:
        jack = grouped_jackknife(lambda keep: estimate(f[keep], y[keep], torch.Generator().manual_seed(seed))["loss"], f.shape[0], groups, generator=g)
    except ValueError as err:  # a group held a class's last members: no subsample estimate
        return [(term, scalar(out["loss"]), protocol),
                (f"{term}_stderr", scalar(out["stderr"]), f"standard error over anchors and Monte Carlo draws (no jackknife: {err}), {protocol}")]
    over = f"delete-a-group jackknife, {groups} random groups of the {f.shape[0]} inputs, each estimate with its own draws (their noise included)"
    return [(term, scalar(out["loss"]), protocol), (f"{term}_stderr", scalar(jack["stderr"]), f"standard error, {over}, {protocol}"),
            (f"{term}_bias", scalar(jack["bias"]), f"estimated bias (E[estimate] - population), {over}, {protocol}")]


def arora_terms(ctx: Context) -> list[Row]:
    """The Arora et al. 2019 terms of :func:`bounds_terms` (the label-dependent part of that group).

    Besides the ideal-pair terms, ``arora_unsupervised_loss_practical`` is the one-negative
    loss with augmentation positives (``theory.arora.unsupervised_loss_practical``): views 1
    and 2 of each test input as anchor and positive, view 2 of a uniform draw of the sample as
    negative. ``loss_temperature`` (τ) fixes the logit range |fᵀ(f⁺ − f⁻)| ≤ 2/τ, hence each
    loss's ceiling log(1 + M e^{2/τ}).
    """
    m, tau, k = ctx.cfg.measure, ctx.cfg.method.temperature, ctx.data.num_classes
    b = min(m.batch_size, ctx.x.shape[0])
    g = ctx.generator(21)
    f = ctx.normalized_projections(ctx.x).double() / math.sqrt(tau)
    y = ctx.y
    p = arora.class_probabilities(y)
    space = f"normalised projection / sqrt(tau), tau={tau:g}, empirical distribution of the {ctx.split}"
    un_m = arora.unsupervised_loss(f, y, k, samples=32, generator=g)
    sup_m = arora.mean_classifier_loss(f, y, k, samples=32, generator=g)
    sup_nt = arora.mean_classifier_loss(f, y, b - 1, samples=32, generator=g)
    mc = "Monte Carlo 32 draws per anchor"
    jack_g = ctx.generator(22)  # the jackknife's groups and draws, apart from the terms' own (generator 21)
    views = [ctx.normalized_projections(v).double() / math.sqrt(tau) for v in ctx.views[:2]]
    return [
        ("loss_temperature", tau, "tau of the trained InfoNCE (method.temperature); f = z/||z||/sqrt(tau)"),
        *one_negative_rows("arora_unsupervised_loss_practical",
                            lambda loo: arora.unsupervised_loss_practical(views[0], views[1], views[1], leave_one_out=loo),
                            f"1 negative, exact, practical positives: views 1 and 2 ({ctx.cfg.augment}) of each input, negative = view 2 of a uniform draw, {space}"),
        *one_negative_rows("arora_unsupervised_loss", lambda loo: arora.unsupervised_loss_exact(f, y, leave_one_out=loo), f"1 negative, exact, {space}"),
        *one_negative_rows("arora_mean_classifier_loss", lambda loo: arora.mean_classifier_loss_exact(f, y, leave_one_out=loo),
                            f"1 negative class, exact, sample class means, {space}"),
        ("arora_collision", scalar(arora.collision_probability(p, 1)), f"tau = sum_k p_k^2, labels of the {ctx.split}"),
        ("arora_collision_stderr", scalar(collision_stderr(p, y.numel())), f"delta-method standard error of sum_k p_k^2 from {y.numel()} labels"),
        ("arora_negatives", float(k), "M = number of classes"),
        *monte_carlo_rows("arora_unsupervised_loss_M", lambda f_, y_, g_: arora.unsupervised_loss(f_, y_, k, samples=32, generator=g_), un_m, f, y, jack_g,
                           f"M={k} negatives, {mc}, {space}"),
        *monte_carlo_rows("arora_mean_classifier_loss_M", lambda f_, y_, g_: arora.mean_classifier_loss(f_, y_, k, samples=32, generator=g_), sup_m, f, y, jack_g,
                           f"M={k} negative-class draws, {mc}, {space}"),
        ("arora_collision_M", scalar(arora.collision_probability(p, k)), f"tau_M = sum_k p_k (1-(1-p_k)^M), M={k}"),
        ("arora_collision_floor_M", scalar(arora.collision_floor(p, k)), f"gamma_M = sum_k p_k E log(1+J), J~Bin(M,p_k), M={k}"),
        *monte_carlo_rows("arora_mean_classifier_loss_ntxent", lambda f_, y_, g_: arora.mean_classifier_loss(f_, y_, b - 1, samples=32, generator=g_), sup_nt,
                           f, y, jack_g, f"NT-Xent batch of {b}: M=B-1={b - 1} negative-class draws, {mc}, {space}"),
        ("arora_collision_ntxent", scalar(arora.collision_probability(p, b - 1)), f"tau_M, M=B-1={b - 1}"),
        ("arora_negatives_ntxent", float(b - 1), f"M = B-1 = {b - 1} negative-class draws of an NT-Xent batch of {b}"),
        # what a constant encoder attains (every logit 0): the trivial predictor's loss, each loss's vacuity ceiling
        ("arora_constant_encoder_loss", math.log(2), "1 negative class, constant encoder (every logit 0): log 2, the trivial predictor's loss"),
        ("arora_constant_encoder_loss_M", scalar(arora.mean_classifier_loss(torch.zeros_like(f), y, k, samples=32, generator=ctx.generator(27))["loss"]),
         f"M={k} negative-class draws, constant encoder: E log(1 + |Q|), {mc}, labels of the {ctx.split}"),
        ("arora_constant_encoder_loss_ntxent", scalar(arora.mean_classifier_loss(torch.zeros_like(f), y, b - 1, samples=32, generator=ctx.generator(28))["loss"]),
         f"M=B-1={b - 1} negative-class draws, constant encoder: E log(1 + |Q|), {mc}, labels of the {ctx.split}"),
        ("arora_collision_floor_ntxent", scalar(arora.collision_floor(p, b - 1, multiplicity=2)), f"gamma_M with each colliding input counted twice (both views), M=B-1={b - 1}"),
    ]


#: Radii of the ρ-sharp loss besides measure.rho, as multiples of it (the PAC-Bayes grid over ρ).
RHO_GRID = (0.5, 1.0, 2.0)


def bounds_terms(ctx: Context) -> list[Row]:
    """The inputs of the bounds/ modules that the other groups do not measure.

    - Arora et al. 2019 (PAPERS §6, :func:`arora_terms`): L_un and the mean-classifier L_sup^μ on f = z/‖z‖/√τ, the
      normalised projection scaled by 1/√τ so that fᵀf' are the InfoNCE logits. Both on the
      empirical distribution of the measured test sample (``theory.arora``): ideal positives
      are independent draws of the anchor's class from it (on synthetic data these are
      independent generator samples), negatives independent draws of it, μ_c its class
      means; 1 negative (exact), M = K negatives and the NT-Xent structure (B − 1 negative
      classes, each twice) by Monte Carlo.
    - Huang et al. (PAPERS §5): the pairwise misalignment rate, the
      smallest feature/projection norms (for the Lipschitz constant of the normalised map),
      the certified Lipschitz bound of the projector, the InfoNCE split at temperature 1
      (unit-norm f, as the paper states it), d and K.
    - SSA-CLR (PAPERS §2): NT-Xent (practical pairs, eval mode) on disjoint random train
      batches of the measure batch size (at most measure.pac_bayes_units, the i.i.d. units of the PAC-Bayes bound),
      its ρ-sharp maximum (projected ascent), the same loss on held-out test batches, its
      range, k, ‖θ‖, ‖θ − θ₀‖, n.
    - Robust CL (PAPERS §1): the JS proxy between benign and adversarial projections under the
      RoCL attack (discriminator fitted on half, scored on the other), and the representation
      gap at the probe's own PGD points.
    """
    b = min(ctx.cfg.measure.batch_size, ctx.x.shape[0])
    return arora_terms(ctx) + _huang_terms(ctx, b) + _ssa_clr_terms(ctx, b) + _robust_cl_terms(ctx, b)


def arora_and_huang_terms(ctx: Context) -> list[Row]:
    """The Arora and Huang parts of :func:`bounds_terms` (what the BatchNorm-recalibrated control measures)."""
    return arora_terms(ctx) + _huang_terms(ctx, min(ctx.cfg.measure.batch_size, ctx.x.shape[0]))


def _huang_terms(ctx: Context, b: int) -> list[Row]:
    """Huang et al. 2023: misalignment, the smallest norms, the projector's Lipschitz bound, the unit-temperature split."""
    m, k, n = ctx.cfg.measure, ctx.data.num_classes, ctx.x.shape[0]
    rows = []
    for suffix, embed in (("", ctx.features), ("_projection", ctx.normalized_projections)):
        dist = (embed(ctx.views[0]) - embed(ctx.views[1])).norm(dim=1)
        rows.append(("misalignment_rate_pairwise" + suffix, scalar((dist > m.eps).double().mean()), f"P[||f(x1)-f(x2)|| > eps], eps={m.eps:g}, views 1 and 2, {ctx.split}"))
    inputs = [ctx.x, *ctx.views]
    h_norm = min(scalar(ctx.raw_features(v).norm(dim=1).min()) for v in inputs)
    z_norm = min(scalar(ctx.projections(v).norm(dim=1).min()) for v in inputs)
    rows += [
        ("feature_norm_min", h_norm, f"min ||h(x)|| over the {ctx.split} and its {m.views} views, backbone h"),
        ("projection_norm_min", z_norm, f"min ||g(h(x))|| over the {ctx.split} and its {m.views} views, projection"),
    ]
    try:
        rows.append(("lipschitz_upper_projector", scalar(geometry.lipschitz_upper(ctx.model.projector.eval(), certified=True)), "certified: product of layer norms of the projection head g, a map of h"))
    except (ValueError, TypeError) as err:  # no rigorous product bound for the head: a stored gap, with the reason
        rows.append(unavailable_row("lipschitz_upper_projector", f"no certified Lipschitz upper bound for the projection head: {err}"))
    z1, z2 = ctx.projections(ctx.views[0]), ctx.projections(ctx.views[1])
    split = [huang_infonce_split(z1[i : i + b], z2[i : i + b], temperature=1.0) for i in range(0, n - b + 1, b)]
    proto = f"Huang et al. split at temperature 1 (unit-norm f), projection, augmentation pairs ({ctx.cfg.augment}), batches of {b}, {ctx.split}"
    rows += [
        ("huang_infonce_L1_unit", sum(scalar(s["L1"]) for s in split) / len(split), proto),
        ("huang_infonce_L2_unit", sum(scalar(s["L2"]) for s in split) / len(split), proto),
        ("embedding_dim", float(z1.shape[1]), "d, projection dimension"),
        ("num_classes", float(k), "K"),
    ]
    return rows


def _ssa_clr_terms(ctx: Context, b: int) -> list[Row]:
    """SSA-CLR: the PAC-Bayes/SAM route on the practical NT-Xent loss, eval mode, batches of b."""
    m, tau = ctx.cfg.measure, ctx.cfg.method.temperature

    def nt_xent(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        v1, v2 = (v.float() / 255 for v in batch)
        return info_nce(model.projector(model(v1)), model.projector(model(v2)), tau)

    train_batches = view_pair_batches(ctx, ctx.data.x_train, b, 23)
    test_batches = view_pair_batches(ctx, ctx.data.x_test, b, 24)
    model = ctx.model.eval()
    with torch.no_grad():
        per_train = torch.tensor([scalar(nt_xent(model, bt)) for bt in train_batches], dtype=torch.float64)
        per_test = torch.tensor([scalar(nt_xent(model, bt)) for bt in test_batches], dtype=torch.float64)
    loss_train, loss_test = scalar(per_train.mean()), scalar(per_test.mean())
    ctx.progress(f"bounds: NT-Xent on {len(train_batches)} train and {len(test_batches)} test batches")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    init = dict(ctx.init_model.named_parameters())
    theta = torch.cat([p.detach().double().flatten() for p in params.values()])
    theta0 = torch.cat([init[name].detach().double().flatten().to(theta.device) for name in params])
    low, high = shift.infonce_range(2 * b - 2, tau)
    proto = f"NT-Xent tau={tau:g} on practical pairs ({ctx.cfg.augment}, 8-bit views), eval mode, disjoint batches of {b}"
    weight_row = ctx.initial_weights_unknown("weight_distance") or ("weight_distance", scalar((theta - theta0).norm()), "||theta - theta_0||, trainable parameters, final epoch vs the seed's initialisation")
    sharp_rows = _sharp_losses(ctx, model, nt_xent, train_batches, proto, loss_train, loss_test, scalar(stderr_of_mean(per_test)),
                               complexity_terms=None if weight_row[0].endswith("_unavailable") else (high - low, float(theta.numel()), weight_row[1]),
                               ceiling=math.log(2 * b - 1))
    model.eval()
    return [
        ("ssl_loss_train", loss_train, f"{proto}, {len(train_batches)} train batches"),
        *sharp_rows,
        ("ssl_loss_heldout", loss_test, f"{proto}, {len(test_batches)} test batches"),
        ("ssl_loss_heldout_stderr", scalar(stderr_of_mean(per_test)), f"standard error over the {len(test_batches)} test batches (0 for one batch), {proto}"),
        ("ssl_loss_range", high - low, f"hi - lo of the per-anchor NT-Xent, M=2B-2={2 * b - 2}, tau={tau:g}"),
        ("ssl_loss_max", high, f"hi = log(1+M e^(2/tau)), the largest per-anchor NT-Xent on normalised embeddings, M=2B-2={2 * b - 2}, tau={tau:g}"),
        ("ssl_loss_constant_encoder", math.log(2 * b - 1), f"log(2B-1), the NT-Xent of a constant encoder (every logit equal), B={b}: the trivial encoder's loss"),
        ("pac_bayes_units", float(len(train_batches)), f"n = min(floor(n_train / {b}), {m.pac_bayes_units}) disjoint random train batches, the i.i.d. units"),
        ("n_train", float(ctx.data.x_train.shape[0]), "training set size"),
        ("num_parameters", float(theta.numel()), "k, trainable parameters of backbone and projection head"),
        ("weight_norm", scalar(theta.norm()), "||theta||, trainable parameters, final epoch"),
        weight_row,
        ("sharpness_rho", m.rho, "rho of the sharpness ball (measure.rho)"),
    ]


def _sharp_losses(ctx: Context, model: nn.Module, nt_xent, train_batches: list, proto: str, loss_train: float, loss_test: float,
                  test_stderr: float, complexity_terms: tuple[float, float, float] | None, ceiling: float) -> list[Row]:
    """L̂_ρ on the radii of ``RHO_GRID`` × ``measure.rho``, each by projected ascent over every
    train batch, the most expensive estimate of a measure (backward passes of the whole network).

    With ``measure.sequential`` (the default) a radius is not ascended when its verdicts are
    already decided (:func:`clbounds.bounds.ssa_clr.ascent_decides`: L̂ + C_PB is above the
    constant encoder's loss and the held-out loss, so the bound is vacuous and holds whatever
    the ascent finds); its row then stores L̂, a lower limit of L̂_ρ, and says so, and
    ``sharp_ascent_skipped@rho_factor=<f>`` is 1. Without θ₀ (``complexity_terms`` None) no
    bound reads L̂_ρ, so no radius is ascended and the rows say why.
    """
    m = ctx.cfg.measure
    units = f"{len(train_batches)} train batches"
    if complexity_terms is None and m.sequential:
        reason = ("not ascended: every bound that reads the rho-sharp loss also needs ||theta - theta_0||, and the weights this encoder "
                  "started from are unknown (give them with `clbounds import --init FILE`); measure.sequential=false ascends anyway")
        return [unavailable_row(ssa_clr.sharp_loss_term(f), reason) for f in RHO_GRID]
    rows = []
    for k, f in enumerate(RHO_GRID):
        name = ssa_clr.sharp_loss_term(f)
        radius = f"rho={m.rho * f:g}" + ("" if f == 1 else f" ({f:g} x measure.rho, grid)")
        skipped_row = (f"{ssa_clr.ASCENT_SKIPPED_PREFIX}{f:g}", f"1: the ascent at {radius} was skipped (verdicts decided by the lower limit); 0: ascended")
        if m.sequential and complexity_terms is not None:
            loss_range, k_params, distance = complexity_terms
            c = ssa_clr.pac_bayes_complexity(loss_range, len(train_batches), k_params, distance, m.rho * f)["complexity"]
            if ssa_clr.ascent_decides(loss_train, c, loss_test, test_stderr, ceiling):
                rows += [(name, loss_train, f"not ascended (measure.sequential): L_train + C_PB({radius}) = {loss_train + c:.4g} is above both the constant encoder's "
                                            f"log(2B-1) = {ceiling:.4g} and the held-out loss {loss_test:.4g} + {ssa_clr.ASCENT_STOP_Z:g} s.e., so the bound is vacuous and holds "
                                            f"whatever the ascent finds; the value is L_train, a lower limit of the rho-sharp loss, {proto}, {units}"),
                         (skipped_row[0], 1.0, skipped_row[1])]
                ctx.progress(f"bounds: rho-sharp NT-Xent at {radius.split(' ')[0]} decided without the ascent ({k + 1}/{len(RHO_GRID)})")
                continue
        sharp = sharpness.sharpness(model, nt_xent, train_batches, m.rho * f, steps=m.sharpness_steps, generator=ctx.generator(25))
        rows += [(name, loss_train + sharp, f"max over ||eps|| <= {radius} by projected ascent steps={m.sharpness_steps}, {proto}, {units}"),
                 (skipped_row[0], 0.0, skipped_row[1])]
        ctx.progress(f"bounds: rho-sharp NT-Xent at {radius.split(' ')[0]} ({k + 1}/{len(RHO_GRID)})")
    return rows


def _robust_cl_terms(ctx: Context, b: int) -> list[Row]:
    """Robust CL: the JS proxy between benign and adversarial projections (the RoCL attack of the
    "adversarial" group, same seed), and the representation gap at the probe's PGD points."""
    m, tau, n = ctx.cfg.measure, ctx.cfg.method.temperature, ctx.x.shape[0]
    rows = []
    v1, v2 = ctx.views[0][:b], ctx.views[1][:b]
    projector = nn.Sequential(ctx.model, ctx.model.projector).eval()
    v2_adv = adversarial.contrastive_attack(projector, v1, v2, m.attack_eps, 2 / 255, 7, temperature=tau, generator=ctx.generator(10))
    with torch.no_grad():
        z_ben, z_adv = F.normalize(projector(v2), dim=1), F.normalize(projector(v2_adv), dim=1)
    # Held out, as shift_js: fitted and scored in-sample, two samples of one law scored 0.29.
    rows.append(("adversarial_js", scalar(shift.js_divergence(z_ben, z_adv, generator=ctx.generator(26), holdout=0.5, weight_decay=0.1)),
                 f"log 2 - L_D, ridge-logistic discriminator (lambda=0.1) fitted on half, scored on the held-out half (lower bound on JS), "
                 f"normalised projections of x2 vs x2_adv (RoCL PGD-7 Linf eps={m.attack_eps * 255:.3g}/255), batch {b}"))
    _, lin = probe_attack(ctx)  # the PGD points of robust_accuracy in the "adversarial" group
    x = ctx.x.float() / 255
    with torch.no_grad():
        gaps = torch.cat([(ctx.model(lin["adversarial"][i : i + 256]) - ctx.model(x[i : i + 256])).norm(dim=1) for i in range(0, n, 256)])
    rows.append(("representation_gap_at_probe_attack", scalar(gaps.mean()), f"mean ||h(x_adv)-h(x)|| at the linear probe's PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 points, backbone h, {ctx.split}"))
    return rows
