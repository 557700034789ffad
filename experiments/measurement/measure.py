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

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.bounds.evaluate import CONTROL_SEP  # controls are stored as "<control>/<term>"
from clbounds.theory import adversarial, arora, geometry, information, optimization, sharpness, shift
from clbounds.theory.losses import barlow_twins, cacr, huang_barlow_split, huang_infonce_split, info_nce

from ..config import Config
from ..data import ImageDataset
from ..store.db import RunRecord, Store
from ..training.augment import Augment
from ..training.runs import load_encoder, open_run
from .probes import extract_features, fit_linear_probe
from .registry import below_settled

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
    delta: float = 0.0  # the δ of σ(δ), fixed for the run and its controls
    delta_note: str = ""
    control_name: str = ""  # "" for the trained encoder, else the control these terms are for
    loss_fn: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None = None  # a foreign model's training loss
    # Inputs that do not depend on the encoder (augmented views of the training set), made
    # once and shared with the controls: augmentation dominates measure's cost on a CPU.
    cache: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] | None = None  # findings a group reports as it measures (a failed sanity check)

    def generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 7919 + salt)

    def control(self, name: str) -> "Context":
        """The context of a control (bounds/common.CONTROLS): the same inputs, views and
        settings, with the learned structure removed.

        - ``random_init``: the architecture at the seed's initial weights;
        - ``shuffled_labels``: the trained encoder, train and test labels randomly permuted
          (class frequencies kept; the generator's ground truth dropped with them);
        - ``random_embedding``: the trained context; the groups that support it replace the
          embeddings by i.i.d. Gaussians themselves.
        """
        if name == "random_init":
            return dataclasses.replace(self, model=self.init_model, control_name=name)
        if name == "shuffled_labels":
            g = self.generator(31)
            shuffle = lambda t: t[torch.randperm(t.numel(), generator=g).to(t.device)]  # noqa: E731
            data = dataclasses.replace(self.data, y_train=shuffle(self.data.y_train), y_test=shuffle(self.data.y_test), generator=None, train_main=None)
            return dataclasses.replace(self, data=data, y=shuffle(self.y), control_name=name)
        if name == "random_embedding":
            return dataclasses.replace(self, control_name=name)
        raise ValueError(f"unknown control {name!r}")

    def train_views(self) -> torch.Tensor:
        """``measure.center_views`` augmentations of every training input, 8-bit: uint8 [V, n, C, H, W]."""
        if "train_views" not in self.cache:
            g, x = self.generator(13), self.data.x_train
            self.cache["train_views"] = torch.stack([
                torch.cat([_to_uint8(self.augment(x[i : i + 2048], g)) for i in range(0, x.shape[0], 2048)]) for _ in range(self.cfg.measure.center_views)
            ])
        return self.cache["train_views"]

    @torch.no_grad()
    def embed_both(self, x: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised backbone features, normalised projections) of x, one backbone pass."""
        self.model.eval()
        feats, projs = [], []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            h = self.model(xb.float() / 255 if xb.dtype == torch.uint8 else xb.float())
            feats.append(F.normalize(h.float(), dim=1))
            projs.append(F.normalize(self.model.projector(h).float(), dim=1))
        return torch.cat(feats), torch.cat(projs)

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

    @property
    def loss_name(self) -> str | None:
        """The training loss: the method's; for an imported encoder the one recorded (None if unknown)."""
        if self.loss_fn is not None:
            return "the given loss_fn"
        name = self.cfg.method.name
        if name == "external":
            return self.cfg.encoder.external.loss or None
        return "barlow_twins" if name == "barlow_twins" else name

    def ssl_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The method's training loss on one batch of view pairs (``loss_fn`` of theory/)."""
        if self.loss_fn is not None:
            return self.loss_fn(model, batch)
        if self.loss_name is None:
            raise ValueError("the training loss of this encoder is not known: give loss_fn or method")
        v1, v2 = batch
        z1, z2 = model.projector(model(v1)), model.projector(model(v2))
        if self.loss_name == "barlow_twins":
            return barlow_twins(z1, z2, self.cfg.method.lambd)
        return info_nce(z1, z2, self.cfg.method.temperature)

    @property
    def split(self) -> str:
        return f"test n={self.x.shape[0]}"


def _to_uint8(v: torch.Tensor) -> torch.Tensor:
    return (v * 255).round().to(torch.uint8)


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


#: The ε values of R_ε reported next to measure.eps, for the tightest Theorem 1 over ε
#: (bounds/huang2023.py); distances between unit vectors lie in [0, 2].
EPS_GRID = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


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
    m, k = ctx.cfg.measure, ctx.data.num_classes
    p = torch.bincount(ctx.data.y_train, minlength=k).double() / ctx.data.y_train.numel()
    rows: list[Row] = [
        ("class_collision", _f(p.pow(2).sum()), "tau_col = sum_k p_k^2, train labels"),
        ("min_class_probability", _f(p.min()), "min_k p_k, train labels"),
        ("misalignment_eps", m.eps, "eps of R_eps (measure.eps), on normalised embeddings"),
        ("misalignment_views", float(m.views), "M views per input for R_eps"),
    ]
    n_train = ctx.data.x_train.shape[0]
    y_train = ctx.data.y_train.repeat(m.center_views)
    train_views = ctx.train_views()
    z_train_both = ctx.embed_both(train_views.flatten(0, 1))  # [V·n, D] in each space
    for space_index, (suffix, embed) in enumerate((("", ctx.features), ("_projection", ctx.normalized_projections))):
        space = "features" if not suffix else "projection normalised"
        z_flat = z_train_both[space_index]
        centers = geometry.class_centers(z_flat, y_train, k)
        sep = geometry.center_separation(centers)
        z = embed(ctx.x)
        view_z = torch.stack([embed(v) for v in ctx.views])  # [M, N, D]
        proto_c = f"{space}, centres = mean over train n={n_train} x {m.center_views} augmented 8-bit views ({ctx.cfg.augment})"
        proto_v = f"{space}, M={m.views} views{below_settled('views', m.views)} ({ctx.cfg.augment}), {ctx.split}"
        rows += [
            ("center_max_inner" + suffix, _f(sep["max_inner"]), proto_c),
            ("center_min_distance" + suffix, _f(sep["min_distance"]), proto_c),
            ("delta_mu" + suffix, _f(sep["delta_mu"]), f"{proto_c}, r=1"),
            ("intra_class_spread" + suffix, _f(geometry.intra_class_spread(z_flat, y_train, num_classes=k)), f"E||f(x')-mu_y||^2 over the same views, {proto_c}"),
            ("nearest_center_error" + suffix, _f(geometry.nearest_center_error(z, ctx.y, centers)), f"{proto_c}, evaluated on {ctx.split}"),
            ("alignment" + suffix, _f(geometry.alignment(view_z[0], view_z[1])), f"E||f(x1)-f(x2)||^2, {proto_v}"),
            ("uniformity" + suffix, _f(geometry.uniformity(z)), f"t=2, {space}, {ctx.split}"),
            ("misalignment_rate" + suffix, _f(geometry.misalignment_rate(view_z, m.eps)), f"R_eps eps={m.eps:g}, {proto_v}"),
        ]
        diameter = geometry.view_diameter(view_z)
        rows += [(f"misalignment_rate{suffix}@eps={e:g}", _f((diameter > e).double().mean()), f"R_eps eps={e:g} (grid), {proto_v}") for e in EPS_GRID]
    return rows


#: The δ values of σ(δ) reported next to the run's δ, as multiples of it (bounds/huang2023.py
#: takes the tightest Theorem 1 over them).
DELTA_GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: The reference of the default δ: one augmentation and sample for every run on a dataset, so
#: that σ(δ) compares runs (augmentations) at one δ.
REFERENCE_AUGMENT, REFERENCE_COLOR, REFERENCE_PER_CLASS, REFERENCE_SEED = "abcde", 0.5, 40, 12345


_REFERENCE_CACHE: dict[str, tuple[float, str]] = {}  # the runs of one grid share their data: δ once per process


def reference_delta(cfg: Config, data: ImageDataset, device: torch.device, augment_spec: str = REFERENCE_AUGMENT) -> tuple[float, str]:
    """The δ of σ(δ) when ``measure.delta`` is not set, and how it was found.

    It depends on the dataset (and on M = ``measure.views``, since d_A is a minimum over M
    sampled views), never on the run's augmentation, encoder or seed of the terms, so every
    run on one dataset is compared at one δ:

    - synthetic: the generator's own δ, the largest d_A between two main-part members of one
      class (so its main parts are (σ,δ)-cliques by construction, and σ(δ) should recover
      ``main_fraction``), on a fresh sample of 40 per class;
    - other data: the median same-class d_A of the first 40 training inputs per class.

    Both under the reference augmentation ``abcde`` at colour strength 0.5 and a fixed seed
    (``augment_spec`` picks another: the generator's δ *under a run's own augmentation* is what
    σ(δ) must recover ``main_fraction`` at, which ``tests/test_verdicts.py`` checks).
    """
    m, k = cfg.measure, data.num_classes
    fingerprint = [data.name, list(data.x_train.shape), float(data.x_train.reshape(-1)[:4096].float().sum()), int(data.y_train[:4096].sum())]
    key = json.dumps([dataclasses.asdict(cfg.data), cfg.seed, m.views, augment_spec, fingerprint, k], sort_keys=True, default=str)
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = _reference_delta(m, data, device, augment_spec)
    return _REFERENCE_CACHE[key]


def _reference_delta(m, data: ImageDataset, device: torch.device, augment_spec: str) -> tuple[float, str]:
    k = data.num_classes
    g = torch.Generator().manual_seed(REFERENCE_SEED)
    augment = Augment(augment_spec, image_size=data.image_shape[-1], color_strength=REFERENCE_COLOR)
    ref = f"reference augmentation {augment_spec} colour {REFERENCE_COLOR:g}, M={m.views} views, seed {REFERENCE_SEED}"
    if data.generator is not None:
        sample = data.generator.sample(torch.arange(REFERENCE_PER_CLASS * k) % k, g)
        x, y, main = sample.x.to(device), sample.y.to(device), sample.main.to(device)
    else:
        idx = torch.cat([torch.nonzero(data.y_train == c).flatten()[:REFERENCE_PER_CLASS] for c in range(k)])
        x, y, main = data.x_train[idx], data.y_train[idx], None
    d_a = geometry.augmented_distance(torch.stack([augment(x, g) for _ in range(m.views)]))
    same = (y[:, None] == y[None]) & ~torch.eye(y.numel(), dtype=torch.bool, device=y.device)
    if main is not None:
        pairs = same & main[:, None] & main[None]
        return _f(d_a[pairs].max()), f"synthetic generator's delta: max d_A over main-part pairs of one class, {REFERENCE_PER_CLASS} per class, {ref}"
    return _f(d_a[same].median()), f"median same-class d_A of the first {REFERENCE_PER_CLASS} train inputs per class, {ref}"


def sigma_terms(ctx: Context) -> list[Row]:
    """σ(δ) of the (σ,δ)-augmentation from the augmented distance d_A (Huang et al. §5).

    δ is ``measure.delta`` or the dataset's reference δ (:func:`reference_delta`), fixed across
    the runs it compares; σ is also given on the grid ``DELTA_GRID`` × δ (rows
    ``sigma@delta_factor=<factor>``). σ depends on the data, the augmentation and the labels, not on the
    encoder.
    """
    m, k = ctx.cfg.measure, ctx.data.num_classes
    idx = torch.cat([torch.nonzero(ctx.y == c).flatten()[: m.sigma_per_class] for c in range(k)])
    views = ctx.views[:, idx]
    d_a = geometry.augmented_distance(views)
    result = geometry.sigma_delta(d_a, ctx.y[idx], ctx.delta, num_classes=k)
    methods = sorted(set(result["method"]))
    base = f"pixel-L2 d_A over M={m.views} views ({ctx.cfg.augment}), {m.sigma_per_class} test inputs per class{below_settled('sigma_per_class', m.sigma_per_class)}"
    proto = f"{base}, delta={ctx.delta:.4g} ({ctx.delta_note}), solver={'+'.join(methods)}"
    rows = [("sigma", _f(result["sigma"]), proto), ("sigma_delta", ctx.delta, proto)]
    for factor in DELTA_GRID:
        grid = geometry.sigma_delta(d_a, ctx.y[idx], ctx.delta * factor, num_classes=k)
        rows.append((f"sigma@delta_factor={factor:g}", _f(grid["sigma"]), f"{base}, delta={factor:g} x {ctx.delta:.4g} (grid), solver={'+'.join(sorted(set(grid['method'])))}"))
    if ctx.data.generator is not None and ctx.data.train_main is not None:
        rows.append(("sigma_generator", ctx.data.generator.main_fraction, "synthetic ground truth: P(main part) of the generator"))
    return rows


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
        ("lipschitz_lower", _f(lower), f"max ||h(x')-h(x)||/||x'-x|| at {pairs}, backbone h"),
        ("lipschitz_lower_normalized", _f(lower_f), f"max ||f(x')-f(x)||/||x'-x||, f = h/||h||, at {pairs} (a lower side of Theorem 1's L)"),
        ("lipschitz_lower_projection_normalized", _f(lower_z), f"max ||f(x')-f(x)||/||x'-x||, f = z/||z||, at {pairs} (a lower side of Theorem 1's L)"),
    ]
    try:
        upper = geometry.lipschitz_upper(ctx.model.backbone, input_shape=ctx.data.image_shape, certified=True)
        std = getattr(getattr(ctx.model, "normalize", None), "std", None)  # an identity normalisation scales nothing
        std_min = float(std.min()) if std is not None else 1.0
        residual = any(callable(getattr(m, "residual_parts", None)) for m in ctx.model.backbone.modules())
        how = "product of layer norms (Fourier bound for convs" + ("; L(branch) + L(shortcut) per residual block" if residual else "") + ")"
        rows.append(("lipschitz_upper", _f(upper) / std_min, f"certified: {how} x 1/min(std), backbone h"))
    except (ValueError, TypeError):
        pass  # architectures without a rigorous product bound (a block that does not declare its residual parts) get no row
    return rows


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
        return [(name, fn(), protocol) for name, (fn, protocol) in terms.items() if only is None or name in only]
    finally:
        ctx.model.eval()


def shift_terms(ctx: Context) -> list[Row]:
    """Ideal vs practical positive pairs (SSA-CLR, PAPERS §2) that differ only in the positive.

    Both batches share their anchors, view 1 of each test input x_i (``ctx.views[0]``). The
    *practical* positive is a second augmentation of x_i (``ctx.views[1]``); the *ideal*
    positive is an augmentation, by the same pipeline, of x'_i, an independent draw of x_i's
    class (a fresh generator sample on synthetic data; another test input of the class
    otherwise). The negatives of either loss are the other rows of its batch: the shared
    anchors and the positives, whose marginal law is the same in both (x' has the class law of
    x). So only the conditional law of the positive given the anchor differs, which is the
    shift SSA-CLR's bound is about; when augmenting one input already looks like drawing
    another of its class, every term here is 0 in expectation.
    """
    n, tau = ctx.x.shape[0], ctx.cfg.method.temperature
    g = ctx.generator(4)
    if ctx.data.generator is not None:
        partner = ctx.data.generator.sample(ctx.y.cpu(), g).x.to(ctx.device)
        source = "synthetic generator: an independent draw of the anchor's class"
    else:
        partner = ctx.x[_same_class_partner(ctx.y.cpu(), g).to(ctx.y.device)]
        source = "labels: another test input of the anchor's class"
    anchors = ctx.projections(ctx.views[0])
    ideal = (anchors, ctx.projections(ctx.augment(partner, g)))
    practical = (anchors, ctx.projections(ctx.views[1]))
    b = min(ctx.cfg.measure.batch_size, n)
    gaps = [_f(shift.positive_pair_loss_gap((ideal[0][i : i + b], ideal[1][i : i + b]), (practical[0][i : i + b], practical[1][i : i + b]), tau)) for i in range(0, n - b + 1, b)]
    low, high = shift.infonce_range(2 * b - 2, tau)
    joint = lambda pair: torch.cat([F.normalize(pair[0], dim=1), F.normalize(pair[1], dim=1)], dim=1)  # noqa: E731
    ji, jp = joint(ideal), joint(practical)
    proto = (f"projection, shared anchors = view 1 ({ctx.cfg.augment}); practical positive = view 2 of the anchor's input; "
             f"ideal positive = a view ({ctx.cfg.augment}) of {source}; {ctx.split}")
    return [
        ("shift_loss_gap", sum(gaps) / len(gaps), f"InfoNCE(ideal) - InfoNCE(practical), tau={tau:g}, batches of {b}, {proto}"),
        ("infonce_range", high - low, f"width of [log(1+M e^(-2/tau)), log(1+M e^(2/tau))], M={2 * b - 2}, tau={tau:g}"),
        ("shift_mmd2", _f(shift.mmd2(ji, jp, paired=True)), f"unbiased RBF MMD^2 (paired U-statistic: the anchors are shared), median bandwidth, joint (z, z+) normalised, {proto}"),
        ("shift_sliced_wasserstein", _f(shift.sliced_wasserstein(ji, jp, generator=ctx.generator(5))), f"SW_2, 128 directions, joint (z, z+), between the two empirical laws (> 0 even for one law), {proto}"),
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
    probe, lin = _probe_attack(ctx, f_train)
    x = ctx.x.float() / 255
    attack = f"PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 step={m.attack_alpha * 255:.3g}/255 random start"
    centers = geometry.class_centers(F.normalize(f_train, dim=1), ctx.data.y_train, ctx.data.num_classes)
    nc = adversarial.robust_accuracy(adversarial.nearest_center_logits(ctx.model, centers).eval(), x, ctx.y, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(8))
    _, gap = adversarial.representation_attack(ctx.model, x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    _, gap_normalized = adversarial.representation_attack(_NormalizedFeatures(ctx.model), x, m.attack_eps, m.attack_alpha, m.attack_steps, generator=ctx.generator(9))
    # The probe is W·diag(1/std) on h, so its Lipschitz constant in h is that matrix's spectral norm.
    probe_lipschitz = torch.linalg.matrix_norm(probe.head.weight / probe.std, ord=2)
    l2 = adversarial.robust_accuracy(nn.Sequential(ctx.model, probe).eval(), x, ctx.y, m.attack_l2_eps, m.attack_l2_alpha, m.attack_steps, norm="l2", generator=ctx.generator(11))
    l2_attack = f"PGD-{m.attack_steps} L2 eps={m.attack_l2_eps:g} step={m.attack_l2_alpha:g} random start"
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
        ("l2_robust_accuracy", l2["robust_accuracy"], f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {l2_attack}, {ctx.split}"),
        ("probe_lipschitz", _f(probe_lipschitz), "spectral norm of W diag(1/std), the linear probe as a map of h"),
        ("nearest_center_robust_accuracy", nc["robust_accuracy"], f"nearest-centre normalised, {attack}, {ctx.split}"),
        ("representation_gap", _f(gap.mean()), f"mean over inputs of max ||h(x+d)-h(x)||, backbone h, {attack}"),
        ("representation_gap_normalized", _f(gap_normalized.mean()), f"mean over inputs of max ||f(x+d)-f(x)||, features, {attack}"),
        ("adversarial_info_nce", _f(adv_nce), f"InfoNCE(x1, x2_adv) tau={ctx.cfg.method.temperature:g}, RoCL attack PGD-7 Linf eps={m.attack_eps * 255:.3g}/255 step=2/255, batch {b}"),
        ("benign_info_nce", _f(ben_nce), f"InfoNCE(x1, x2) tau={ctx.cfg.method.temperature:g}, the same batch of {b}"),
    ]


def autoattack_terms(ctx: Context) -> list[Row]:
    """AutoAttack's robust accuracy of the linear probe on the same inputs as PGD, with the
    RobustBench sanity rows (experiments/measurement/autoattack.py; needs the torchattacks extra)."""
    from .autoattack import autoattack_rows

    m = ctx.cfg.measure
    probe, lin = _probe_attack(ctx)
    pgd_name = f"PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255"
    return autoattack_rows(nn.Sequential(ctx.model, probe).eval(), ctx.x.float() / 255, ctx.y, ctx.data.num_classes, m.attack_eps, ctx.cfg.seed,
                           lin["robust_accuracy"], pgd_name, f"linear probe offline lbfgs steps={ctx.cfg.eval.linear_steps} final-epoch, {ctx.split}", log=ctx.log)


def _probe_attack(ctx: Context, f_train: torch.Tensor | None = None) -> tuple[nn.Module, dict]:
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
        ("mi_infonce_bound", _f(information.infonce_mi_lower_bound(q[:b], k[:b], ctx.cfg.method.temperature)), f"log(2B-1) - InfoNCE, B={b}, query vs positive key, capped at log(2B-1)"),
        ("mi_query_negative", _f(information.knn_mutual_information(q[:used], torch.cat(cond), k=3)), f"{proto}, negative drawn from CACR's pi-(j|i) with tau-={tau_neg:g}"),
        ("mi_query_negative_uniform", _f(information.knn_mutual_information(q[:used], torch.cat(unif), k=3)), f"{proto}, negative drawn uniformly (true MI 0)"),
        ("mi_tau_neg", float(tau_neg), "tau- of CACR's pi-(j|i) used to draw the negatives (method.tau_neg): MI estimates compare only at one tau-"),
        ("mi_resolution", max(abs(c["error"]) for c in calibration),
         f"max |KSG - truth| on correlated Gaussians, true MI {', '.join(f'{c:g}' for c in MI_CALIBRATION)} nats, n={used}, d={q.shape[1]}, k=3"),
    ]
    rows += [(f"mi_calibration@true={c['true']:g}", c["estimate"], f"KSG k=3 on correlated Gaussians of known MI {c['true']:g} nats, n={used}, d={q.shape[1]}") for c in calibration]
    return rows


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
            rows += [(f"cacr_{kind}_distance_bin{k}", _f(d[idx].mean()), bin_proto), (f"cacr_{kind}_weight_bin{k}", _f(w_rel[idx].mean()), bin_proto)]
    same = torch.cat(neg_same)
    if same.any():
        rows.append(("cacr_same_class_weight_ratio", _f(torch.cat(neg_w)[same].mean()), f"mean relative w- on same-class negatives ({int(same.sum())} pairs), {proto}"))
    return rows


# ---- inputs of the bounds/ modules (clbounds bounds) --------------------------------------


def _view_pair_batches(ctx: Context, x: torch.Tensor, batch_size: int, salt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Disjoint random batches of ``x`` (at most ``measure.pac_bayes_units``: the PAC-Bayes bound
    holds for any i.i.d. subset of the training data, with n = the units used, and this keeps
    the cost bounded on CIFAR-sized sets), two augmented views each, as uint8 images.

    Made once per context family (shared with the controls, in ``ctx.cache``)."""
    key = ("view_pair_batches", x.data_ptr(), tuple(x.shape), batch_size, salt)
    if key not in ctx.cache:
        g = ctx.generator(salt)
        perm = torch.randperm(x.shape[0], generator=g).to(x.device)
        units = min(x.shape[0] // batch_size, ctx.cfg.measure.pac_bayes_units)
        ctx.cache[key] = [(_to_uint8(ctx.augment(x[idx], g)), _to_uint8(ctx.augment(x[idx], g))) for idx in (perm[i * batch_size : (i + 1) * batch_size] for i in range(units))]
    return ctx.cache[key]


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
    views = [ctx.normalized_projections(v).double() / math.sqrt(tau) for v in ctx.views[:2]]
    practical = arora.unsupervised_loss_practical(views[0], views[1], views[1])
    return [
        ("loss_temperature", tau, "tau of the trained InfoNCE (method.temperature); f = z/||z||/sqrt(tau)"),
        ("arora_unsupervised_loss_practical", _f(practical), f"1 negative, exact, practical positives: views 1 and 2 ({ctx.cfg.augment}) of each input, negative = view 2 of a uniform draw, {space}"),
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
        ("arora_negatives_ntxent", float(b - 1), f"M = B-1 = {b - 1} negative-class draws of an NT-Xent batch of {b}"),
        ("arora_collision_floor_ntxent", _f(arora.collision_floor(p, b - 1, multiplicity=2)), f"gamma_M with each colliding input counted twice (both views), M=B-1={b - 1}"),
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
    m, tau, k = ctx.cfg.measure, ctx.cfg.method.temperature, ctx.data.num_classes
    n = ctx.x.shape[0]
    b = min(m.batch_size, n)
    rows = arora_terms(ctx)

    # Huang et al. 2023
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
    # The ρ-sharp loss on a grid of radii, for the tightest PAC-Bayes bound over ρ (bounds/ssa_clr.py).
    sharp_grid = {f: sharpness.sharpness(model, nt_xent, train_batches, m.rho * f, steps=m.sharpness_steps, generator=ctx.generator(25)) for f in RHO_GRID if f != 1}
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
        *[(f"ssl_sharp_loss_train@rho_factor={f:g}", loss_train + v, f"max over ||eps|| <= rho={m.rho * f:g} ({f:g} x measure.rho, grid) by projected ascent steps={m.sharpness_steps}, {proto}, {len(train_batches)} train batches")
          for f, v in sharp_grid.items()],
        ("ssl_loss_heldout", loss_test, f"{proto}, {len(test_batches)} test batches"),
        ("ssl_loss_range", high - low, f"hi - lo of the per-anchor NT-Xent, M=2B-2={2 * b - 2}, tau={tau:g}"),
        ("ssl_loss_max", high, f"hi = log(1+M e^(2/tau)), the largest per-anchor NT-Xent on normalised embeddings, M=2B-2={2 * b - 2}, tau={tau:g}"),
        ("pac_bayes_units", float(len(train_batches)), f"n = min(floor(n_train / {b}), {m.pac_bayes_units}) disjoint random train batches, the i.i.d. units"),
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
    # Held out, as shift_js: fitted and scored in-sample, two samples of one law scored 0.29.
    rows.append(("adversarial_js", _f(shift.js_divergence(z_ben, z_adv, generator=ctx.generator(26), holdout=0.5, weight_decay=0.1)),
                 f"log 2 - L_D, ridge-logistic discriminator (lambda=0.1) fitted on half, scored on the held-out half (lower bound on JS), "
                 f"normalised projections of x2 vs x2_adv (RoCL PGD-7 Linf eps={m.attack_eps * 255:.3g}/255), batch {b}"))
    _, lin = _probe_attack(ctx)  # the PGD points of robust_accuracy in the "adversarial" group
    x = ctx.x.float() / 255
    with torch.no_grad():
        gaps = torch.cat([(ctx.model(lin["adversarial"][i : i + 256]) - ctx.model(x[i : i + 256])).norm(dim=1) for i in range(0, n, 256)])
    rows.append(("representation_gap_at_probe_attack", _f(gaps.mean()), f"mean ||h(x_adv)-h(x)|| at the linear probe's PGD-{m.attack_steps} Linf eps={m.attack_eps * 255:.3g}/255 points, backbone h, {ctx.split}"))
    return rows


TERM_GROUPS: dict[str, Callable[[Context], list[Row]]] = {
    "losses": losses_terms,
    "geometry": geometry_terms,
    "sigma": sigma_terms,
    "lipschitz": lipschitz_terms,
    "sharpness": sharpness_terms,
    "shift": shift_terms,
    "adversarial": adversarial_terms,
    "autoattack": autoattack_terms,  # opt-in (measure.autoattack): minutes per run on a CPU
    "optimization": optimization_terms,
    "information": information_terms,
    "cacr_weights": cacr_weight_terms,
    "bounds": bounds_terms,
}


#: What each control measures again, per term group (the group functions run on the control's
#: context). Random init: every group that depends on the encoder (σ does not: it is pixel
#: space). Shuffled labels: the groups whose terms use the labels, and of "bounds" only its
#: Arora part. Random embedding: CACR's weight statistics. A check is evaluated on a control
#: only where it reads a term the control measured again (experiments/pipeline/bounds_step.py).
CONTROL_PLAN: dict[str, dict[str, Callable[[Context], list[Row]]]] = {
    "random_init": {name: fn for name, fn in TERM_GROUPS.items() if name not in ("sigma", "autoattack")}
    | {"sharpness": functools.partial(sharpness_terms, only=("sharpness", "sharpness_average"))},  # the two a check reads
    "shuffled_labels": {"geometry": geometry_terms, "sigma": sigma_terms, "bounds": arora_terms},
    "random_embedding": {"cacr_weights": cacr_weight_terms},
}


#: The groups that differentiate the training loss: a foreign encoder needs ``loss_fn`` or ``method``.
NEEDS_TRAINING_LOSS = ("sharpness", "optimization")


def make_context(cfg: Config, data: ImageDataset, model: nn.Module, init_model: nn.Module, device: torch.device,
                 loss_fn: Callable | None = None) -> Context:
    """The context of one encoder on one dataset: the test sample, its views and δ, all fixed by ``cfg``."""
    m = cfg.measure
    g = torch.Generator().manual_seed(cfg.seed * 7919)
    n = min(m.n_samples, data.x_test.shape[0])
    pick = torch.randperm(data.x_test.shape[0], generator=g)[:n].to(device)
    x, y = data.x_test[pick], data.y_test[pick]
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    views = torch.stack([augment(x, g) for _ in range(m.views)])
    delta, note = (m.delta, "measure.delta") if m.delta is not None else reference_delta(cfg, data, device)
    return Context(cfg, data, model, init_model, augment, x, y, views, device, delta=delta, delta_note=note, loss_fn=loss_fn)


def build_context(record: RunRecord) -> Context:
    run = open_run(record)
    init_model = load_encoder(record, run.data.image_shape, random_init=True).to(run.device).eval()
    return make_context(run.cfg, run.data, run.encoder, init_model, run.device)


def _group(ctx: Context, name: str, fn: Callable[[Context], list[Row]]) -> list[Row]:
    try:
        rows = fn(ctx)
    except (RuntimeError, ValueError) as err:
        where = f" on the {ctx.control_name} control" if ctx.control_name else ""
        raise RuntimeError(f"term group {name!r} failed{where}: {err}; the groups before it were stored") from err
    bad = [r for r in rows if not math.isfinite(r[1])]
    if bad:
        raise RuntimeError(f"term group {name!r} gave non-finite values{' on the ' + ctx.control_name + ' control' if ctx.control_name else ''}: {bad}")
    return rows


def control_rows(ctx: Context, name: str, rows: list[Row]) -> list[Row]:
    """``rows`` renamed ``<control>/<name>``, the control named in front of each protocol."""
    from clbounds.bounds.common import CONTROLS

    return [(f"{name}{CONTROL_SEP}{term}", value, f"control {name} ({CONTROLS[name]}); {protocol}") for term, value, protocol in rows]


def skipped_groups(ctx: Context, names: list[str]) -> dict[str, str]:
    """The groups that cannot be computed for this encoder, or here, each with the reason."""
    from .autoattack import autoattack_unavailable

    skipped = {}
    if "autoattack" in names and (why := autoattack_unavailable()):
        skipped["autoattack"] = why
    elif "autoattack" in names and ctx.data.num_classes < 4:
        skipped["autoattack"] = f"AutoAttack needs at least 4 classes (APGD-T's DLR loss reads the 4th-largest logit); this data has {ctx.data.num_classes}"
    if ctx.loss_name is None:
        skipped |= {name: "needs the training loss, which this encoder does not record: pass loss_fn or method (simclr, barlow_twins)" for name in names if name in NEEDS_TRAINING_LOSS}
    return skipped


def control_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    """Each control of :data:`CONTROL_PLAN` with the groups of ``names`` it measures again, in measure's order."""
    return [(control, todo) for control, plan in CONTROL_PLAN.items() if (todo := [n for n in names if n in plan])]


def default_groups(cfg: Config) -> list[str]:
    """The groups measured when none are named: all but AutoAttack, unless ``measure.autoattack``."""
    return [g for g in TERM_GROUPS if g != "autoattack" or cfg.measure.autoattack]


def measure_context(ctx: Context, names: list[str], write: Callable[[list[Row]], None], log: Callable[[str], None] | None = None,
                    run_group: Callable[[str, str, Callable[[], list[Row]]], list[Row]] | None = None) -> tuple[list[Row], dict[str, str]]:
    """Every group of ``names`` on ``ctx``, then on the controls (``measure.controls``); each
    group's rows go to ``write`` as soon as they exist. Returns (own rows, skipped groups).

    ``run_group(control, name, compute)`` runs each group (``control`` is "" for the encoder's
    own); by default it just calls ``compute``. The measure-scaling benchmark times groups there.
    """
    run = run_group or (lambda control, name, compute: compute())
    skipped = skipped_groups(ctx, names)
    names = [n for n in names if n not in skipped]
    ctx.log = log
    rows: list[Row] = []
    for i, name in enumerate(names):
        group = run("", name, lambda: _group(ctx, name, TERM_GROUPS[name]))
        write(group)
        rows += group
        if log:
            log(f"  measured {name} ({i + 1}/{len(names)}): {len(group)} terms")
    if ctx.cfg.measure.controls:
        for control, todo in control_groups(names):
            cctx = ctx.control(control)
            for name in todo:
                try:
                    write(control_rows(ctx, control, run(control, name, lambda: _group(cctx, name, CONTROL_PLAN[control][name]))))
                except RuntimeError as err:  # the run's own terms stand; its checks just lack this control
                    skipped[f"{control}/{name}"] = str(err)
                    if log:
                        log(f"  control {control}, group {name} failed and is left out: {err}")
            if log:
                log(f"  measured control {control}: {', '.join(todo)}")
    for name, why in skipped.items():
        if log:
            log(f"  skipped {name}: {why}")
    return rows, skipped


def measure(record: RunRecord, store: Store, terms: list[str] | None = None, log: Callable[[str], None] | None = None) -> list[Row]:
    """Computes the chosen term groups (by default all but AutoAttack, which ``measure.autoattack``
    adds) for a finished run and stores them.

    With ``measure.controls`` (the default) each group is then measured again on the controls
    of :data:`CONTROL_PLAN`, stored as ``<control>/<term>`` rows, so that every bound check can
    say whether it also holds without learned structure. Returns the run's own rows.
    """
    unknown = sorted(set(terms or []) - set(TERM_GROUPS))
    if unknown:
        raise ValueError(f"unknown term group(s) {', '.join(unknown)}; choose from {', '.join(TERM_GROUPS)}")
    ctx = build_context(record)
    if not ctx.cfg.measure.controls:  # stale control rows would be read as this measurement's controls
        store.delete_measurements(record.id, f"%{CONTROL_SEP}%")
    rows, _ = measure_context(ctx, terms or default_groups(ctx.cfg), lambda group: store.add_measurements(record.id, group), log)
    return rows
