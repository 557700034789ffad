"""Term group ``geometry``: class centres, spread, separation and R_ε of Huang et al. (PAPERS §5); Wang & Isola's alignment and uniformity."""

from __future__ import annotations

import torch

from clbounds.theory import geometry
from clbounds.theory.uncertainty import binomial_stderr

from ...store.db import Row
from ..context import Context, scalar
from ..registry import SETTLED, below_settled


#: The ε values of R_ε reported next to measure.eps, for the tightest Theorem 1 over ε
#: (bounds/huang2023.py); distances between unit vectors lie in [0, 2]. The grid reaches 1.75:
#: on trained synthetic runs R_ε is 1 up to ε ≈ 0.5 and leaves 1 between 1 and 2
#: (docs/estimators.md), so the grid brackets that transition.
EPS_GRID = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def geometry_terms(ctx: Context) -> list[Row]:
    """Class geometry and alignment of Huang et al. (PAPERS §5) and Wang & Isola.

    Computed twice: on the normalised backbone features (suffix-free names, what the probes
    use) and on the normalised projections (suffix ``_projection``, what the loss shaped).
    Huang et al.'s f is one map for both roles; practice splits it in two.

    The class centres are the paper's μ_k = E_{x∈C_k} E_{x'∈A(x)} f(x'): the mean over the
    training inputs of class k and ``measure.center_views`` augmentations of each. The
    nearest-centre error G_f and the spread use these centres. R_ε is also given on the grid
    ``EPS_GRID`` (rows ``misalignment_rate@eps=<ε>``), from the same views.
    """
    m, k, n_test = ctx.cfg.measure, ctx.data.num_classes, ctx.x.shape[0]
    p = torch.bincount(ctx.data.y_train, minlength=k).double() / ctx.data.y_train.numel()
    rows: list[Row] = [
        ("class_collision", scalar(p.pow(2).sum()), "tau_col = sum_k p_k^2, train labels"),
        ("min_class_probability", scalar(p.min()), "min_k p_k, train labels"),
        # what a trivial predictor attains: the ceiling of every error bound (bounds.common.error_ceiling)
        ("trivial_error", (trivial := scalar((ctx.y != int(p.argmax())).double().mean())), f"error of always predicting the most frequent training class, {ctx.split}"),
        ("trivial_error_stderr", scalar(binomial_stderr(trivial, n_test)), f"binomial standard error (Agresti-Coull centre), {ctx.split}"),
        ("misalignment_eps", m.eps, "eps of R_eps (measure.eps), on normalised embeddings"),
        ("misalignment_views", float(m.views), "M views per input for R_eps"),
        # R_eps is a rate over the pairs of M views, so it grows with M: below the settled budget it
        # underestimates, and a bound built on it is optimistic (bounds/huang2023.py says so).
        ("misalignment_views_settled", float(SETTLED["views"]), "M at which R_eps settled on a trained run (docs/estimators.md)"),
    ]
    n_train = ctx.data.x_train.shape[0]
    y_train = ctx.data.y_train.repeat(m.center_views)
    z_train_both = ctx.train_view_embeddings()  # [V·n, D] in each space
    for space_index, (suffix, embed) in enumerate((("", ctx.features), ("_projection", ctx.normalized_projections))):
        space = "features" if not suffix else "projection normalised"
        z_flat = z_train_both[space_index]
        centers = geometry.class_centers(z_flat, y_train, k)
        sep = geometry.center_separation(centers)
        z = embed(ctx.x)
        view_z = torch.stack([embed(v) for v in ctx.views])  # [M, N, D]
        proto_c = f"{space}, centres = mean over train n={n_train} x {m.center_views} augmented 8-bit views ({ctx.cfg.augment})"
        proto_v = f"{space}, M={m.views} views{below_settled('views', m.views)} ({ctx.cfg.augment}), {ctx.split}"
        error = scalar(geometry.nearest_center_error(z, ctx.y, centers))
        misaligned = scalar(geometry.misalignment_rate(view_z, m.eps))
        binomial = f"binomial standard error (Agresti-Coull centre) over the {ctx.split}"
        rows += [
            ("center_max_inner" + suffix, scalar(sep["max_inner"]), proto_c),
            ("center_min_distance" + suffix, scalar(sep["min_distance"]), proto_c),
            ("delta_mu" + suffix, scalar(sep["delta_mu"]), f"{proto_c}, r=1"),
            ("intra_class_spread" + suffix, scalar(geometry.intra_class_spread(z_flat, y_train, num_classes=k)), f"E||f(x')-mu_y||^2 over the same views, {proto_c}"),
            ("nearest_center_error" + suffix, error, f"{proto_c}, evaluated on {ctx.split}"),
            ("nearest_center_error" + suffix + "_stderr", scalar(binomial_stderr(error, n_test)), f"{binomial}; the centres held fixed"),
            ("alignment" + suffix, scalar(geometry.alignment(view_z[0], view_z[1])), f"E||f(x1)-f(x2)||^2, {proto_v}"),
            ("uniformity" + suffix, scalar(geometry.uniformity(z)), f"t=2, {space}, {ctx.split}"),
            ("misalignment_rate" + suffix, misaligned, f"R_eps eps={m.eps:g}, {proto_v}"),
            ("misalignment_rate" + suffix + "_stderr", scalar(binomial_stderr(misaligned, n_test)), f"{binomial}, eps={m.eps:g}, M={m.views} views"),
        ]
        diameter = geometry.view_diameter(view_z)
        rows += [(f"misalignment_rate{suffix}@eps={e:g}", scalar((diameter > e).double().mean()), f"R_eps eps={e:g} (grid), {proto_v}") for e in EPS_GRID]
    return rows
