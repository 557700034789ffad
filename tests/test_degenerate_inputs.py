"""Degenerate inputs for every public term (issue #8): one table, one sweep.

Each row of ``CASES`` is (term, degenerate case, expected behaviour):
- ``FINITE``: every number returned (tensors, floats, recursively through dicts, tuples and
  lists) is finite;
- ``Equals(v)``: finite and equal to the closed form v (float64; a dict v checks those keys);
- ``Raises(pattern)``: a ValueError whose message matches ``pattern`` (names the problem).

The cases: all-equal embeddings (every row the same), a single class, zero-norm rows, an
empty class (a label index without samples), N too small for pairs, constant features (zero
variance), and for the model-based terms a model with constant output or a loss with zero
gradient. ``test_every_public_term_has_a_degenerate_case`` makes a new public term without
a row (or an explained exemption) fail the suite. ``BOUND_CASES`` does the same for the
``evaluate`` functions of bounds/ on degenerate measured terms.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from clbounds.bounds import arora2019, cacr, common, huang2023, robust_cl, ssa_clr, wen2020
from clbounds.theory import adversarial, arora, geometry, information, losses, optimization, sharpness, shift

from conftest import huang_terms

F64 = torch.float64
B, D = 4, 3  # batch size and embedding dimension of the tensor cases


# ───────────────────────────── expectations ─────────────────────────────

FINITE = "finite"


@dataclass(frozen=True)
class Equals:
    """Finite and equal to a closed form (a dict checks the listed keys only)."""

    value: Any
    abs: float = 1e-12


@dataclass(frozen=True)
class Raises:
    """A clear error: ``exc`` whose message matches ``match``."""

    match: str
    exc: type[Exception] = ValueError


@dataclass(frozen=True)
class Case:
    term: str  # "module.function", e.g. "losses.info_nce"
    case: str  # the degenerate input, e.g. "all-equal"
    call: Callable[[], Any]
    expect: Any  # FINITE, Equals or Raises

    @property
    def id(self) -> str:
        return f"{self.term}[{self.case}]"


def _non_finite(out: Any, path: str = "out") -> list[str]:
    """Paths of every non-finite number in a (nested) result."""
    if isinstance(out, torch.Tensor):
        if (out.is_floating_point() or out.is_complex()) and not bool(torch.isfinite(out).all()):
            return [path]
        return []
    if isinstance(out, bool) or out is None or isinstance(out, str):
        return []
    if isinstance(out, (int, float)):
        return [] if math.isfinite(out) else [path]
    if isinstance(out, dict):
        return [p for k, v in out.items() for p in _non_finite(v, f"{path}[{k!r}]")]
    if isinstance(out, (list, tuple)):
        return [p for i, v in enumerate(out) for p in _non_finite(v, f"{path}[{i}]")]
    raise TypeError(f"{path}: cannot check a {type(out).__name__} for finiteness")


def _assert_equal(out: Any, expected: Any, tol: float, path: str = "out") -> None:
    if isinstance(expected, dict):
        for key, value in expected.items():
            _assert_equal(out[key], value, tol, f"{path}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert len(out) == len(expected), path
        for i, (o, e) in enumerate(zip(out, expected)):
            _assert_equal(o, e, tol, f"{path}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(out, torch.Tensor) and out.shape == expected.shape, f"{path}: {out!r} vs {expected!r}"
        if expected.is_floating_point():
            assert out.dtype == F64, f"{path}: expected a float64 result, got {out.dtype}"
            assert torch.allclose(out, expected, atol=tol, rtol=0), f"{path}: {out} != {expected}"
        else:
            assert torch.equal(out, expected), f"{path}: {out} != {expected}"
    else:
        value = out.item() if isinstance(out, torch.Tensor) else out
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            assert out.dtype == F64, f"{path}: expected a float64 result, got {out.dtype}"
        assert value == pytest.approx(expected, abs=tol, rel=0), f"{path}: {value} != {expected}"


# ───────────────────────────── inputs ─────────────────────────────


def same(n: int = B, d: int = D) -> torch.Tensor:
    """Every row equal (and non-zero): collapsed embeddings."""
    return torch.full((n, d), 0.5, dtype=F64)


def zeros(n: int = B, d: int = D) -> torch.Tensor:
    return torch.zeros(n, d, dtype=F64)


def rand(n: int = B, d: int = D, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def const_feature(n: int = B, d: int = D) -> torch.Tensor:
    """Random rows whose first feature is constant over the batch (zero variance)."""
    z = rand(n, d, seed=1)
    z[:, 0] = 1.0
    return z


def pixels(n: int = B, d: int = D, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


Y_ALT = torch.tensor([0, 1, 0, 1])  # two classes
Y_ONE = torch.zeros(B, dtype=torch.int64)  # a single class
Y_GAP = torch.tensor([0, 0, 2, 2])  # class 1 is empty


class ConstantModel(nn.Module):
    """Output independent of the input: a learned constant [1, K] broadcast over the batch."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.out = nn.Parameter(torch.zeros(1, k, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(x.shape[0], -1)


def zero_linear(d_in: int = D, d_out: int = 2) -> nn.Linear:
    """A linear map with zero weights: zero-norm outputs, zero input gradient."""
    m = nn.Linear(d_in, d_out, bias=False).double()
    nn.init.zeros_(m.weight)
    return m


def linear_model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(2, 1).double()


X2 = rand(8, 2, seed=3)


def constant_loss(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """In the graph of the parameters, but constant: gradient and Hessian are exactly 0."""
    return 0.0 * m(batch).sum() + 1.0


def detached_loss(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """A loss that does not depend on the parameters at all (no grad_fn)."""
    return torch.tensor(1.0, dtype=F64)


def frozen_model() -> nn.Linear:
    m = linear_model()
    m.requires_grad_(False)
    return m


PSI = lambda v: torch.digamma(torch.tensor(float(v), dtype=F64)).item()  # noqa: E731
LOG2 = math.log(2)


# ───────────────────────────── the table ─────────────────────────────

CASES: list[Case] = [
    # losses
    Case("losses.info_nce", "all-equal", lambda: losses.info_nce(same(), same()), Equals(math.log(2 * B - 1))),
    Case("losses.info_nce", "zero-norm", lambda: losses.info_nce(zeros(), zeros()), Equals(math.log(2 * B - 1))),
    Case("losses.info_nce", "N=1", lambda: losses.info_nce(rand(1), rand(1)), Raises("batch of at least 2")),
    Case("losses.cross_correlation", "all-equal", lambda: losses.cross_correlation(same(), same()), Equals(torch.zeros(D, D, dtype=F64))),
    Case("losses.cross_correlation", "constant feature", lambda: losses.cross_correlation(const_feature(), const_feature()), FINITE),
    Case("losses.cross_correlation", "constant feature, eps=0", lambda: losses.cross_correlation(const_feature(), rand(), eps=0.0), Raises(r"feature\(s\) 0 of z1 .*constant")),
    Case("losses.cross_correlation", "N=1", lambda: losses.cross_correlation(rand(1), rand(1)), Raises("batch of at least 2")),
    Case("losses.barlow_twins", "all-equal", lambda: losses.barlow_twins(same(), same()), Equals(float(D))),
    Case("losses.barlow_twins", "zero-norm", lambda: losses.barlow_twins(zeros(), zeros()), Equals(float(D))),
    Case("losses.barlow_twins", "constant feature", lambda: losses.barlow_twins(const_feature(), const_feature()), FINITE),
    Case("losses.cacr", "all-equal", lambda: losses.cacr(torch.stack([same(), same()])), Equals(0.0)),
    Case("losses.cacr", "zero-norm", lambda: losses.cacr(torch.stack([zeros(), zeros(), zeros()]), return_weights=True), FINITE),
    Case("losses.cacr", "N=1", lambda: losses.cacr(rand(1)[None].expand(2, 1, D)), Raises("at least 2 images")),
    Case("losses.cacr", "one view", lambda: losses.cacr(rand()[None]), Raises("at least 2 views")),
    # f = z/‖z‖ with all rows equal: every product is 1, so L1 = −1 and L2 = log(B e).
    Case("losses.huang_infonce_split", "all-equal", lambda: losses.huang_infonce_split(same(), same()), Equals({"L1": -1.0, "L2": math.log(B) + 1, "total": math.log(B)})),
    Case("losses.huang_infonce_split", "zero-norm", lambda: losses.huang_infonce_split(zeros(), zeros()), Equals({"L1": 0.0, "L2": math.log(B), "total": math.log(B)})),
    Case("losses.huang_infonce_split", "N=1", lambda: losses.huang_infonce_split(rand(1), rand(1)), Raises("batch of at least 2")),
    Case("losses.huang_barlow_split", "all-equal", lambda: losses.huang_barlow_split(same(), same()), Equals({"L1": float(D), "L2": 0.0})),
    Case("losses.huang_barlow_split", "constant feature", lambda: losses.huang_barlow_split(const_feature(), rand()), FINITE),
    Case("losses.huang_barlow_loss", "all-equal", lambda: losses.huang_barlow_loss(same(), same(), 0.25), Equals(0.75 * D)),
    Case("losses.query_key_info_nce", "all-equal", lambda: losses.query_key_info_nce(same(), same()), Equals(math.log(B))),
    Case("losses.query_key_info_nce", "zero-norm", lambda: losses.query_key_info_nce(zeros(), zeros()), Equals(math.log(B))),
    Case("losses.query_key_info_nce", "N=1", lambda: losses.query_key_info_nce(rand(1), rand(1)), Raises("batch of at least 2")),
    Case("losses.discriminator_loss", "zero weights", lambda: losses.discriminator_loss(rand(), rand(), torch.zeros(1, D, dtype=F64), torch.zeros(1, dtype=F64)), Equals(math.log(2))),
    Case("losses.discriminator_loss", "zero-norm", lambda: losses.discriminator_loss(zeros(), zeros(), rand(1), torch.zeros(1, dtype=F64)), Equals(math.log(2))),
    Case("losses.discriminator_loss", "N=1", lambda: losses.discriminator_loss(rand(1), rand(1), rand(1), torch.zeros(1, dtype=F64)), FINITE),
    # geometry
    Case("geometry.class_centers", "empty class", lambda: geometry.class_centers(rand(), Y_GAP), Raises("class 1 has no samples")),
    Case("geometry.class_centers", "empty class (num_classes)", lambda: geometry.class_centers(rand(), Y_ALT, num_classes=3), Raises("class 2 has no samples")),
    Case("geometry.class_centers", "single class, all-equal", lambda: geometry.class_centers(same(), Y_ONE), Equals(same(1))),
    Case("geometry.class_centers", "zero-norm", lambda: geometry.class_centers(zeros(), Y_ALT), Equals(zeros(2))),
    Case("geometry.intra_class_spread", "all-equal", lambda: geometry.intra_class_spread(same(), Y_ALT), Equals(0.0)),
    Case("geometry.intra_class_spread", "single class, per class", lambda: geometry.intra_class_spread(same(), Y_ONE, per_class=True), Equals(torch.zeros(1, dtype=F64))),
    Case("geometry.intra_class_spread", "empty class", lambda: geometry.intra_class_spread(rand(), Y_GAP, per_class=True), Raises("class 1 has no samples")),
    Case("geometry.center_separation", "single class", lambda: geometry.center_separation(same(1)), Raises("at least 2 classes")),
    Case("geometry.center_separation", "all-equal", lambda: geometry.center_separation(same(3)), Equals({"max_inner": 0.75, "min_distance": 0.0, "delta_mu": 0.25})),
    Case("geometry.center_separation", "zero-norm", lambda: geometry.center_separation(zeros(3)), Equals({"max_inner": 0.0, "min_distance": 0.0, "delta_mu": 1.0})),
    Case("geometry.alignment", "identical views", lambda: geometry.alignment(same(), same()), Equals(0.0)),
    Case("geometry.alignment", "identical views, alpha=1", lambda: geometry.alignment(rand(), rand(), alpha=1), Equals(0.0)),
    Case("geometry.alignment", "zero-norm", lambda: geometry.alignment(zeros(), zeros()), Equals(0.0)),
    Case("geometry.alignment", "N=0", lambda: geometry.alignment(zeros(0), zeros(0)), Raises("non-empty")),
    Case("geometry.uniformity", "all-equal", lambda: geometry.uniformity(same()), Equals(0.0)),
    Case("geometry.uniformity", "zero-norm", lambda: geometry.uniformity(zeros()), Equals(0.0)),
    Case("geometry.uniformity", "N=1", lambda: geometry.uniformity(rand(1)), Raises("N >= 2")),
    Case("geometry.view_diameter", "all-equal", lambda: geometry.view_diameter(torch.stack([same(), same()])), Equals(torch.zeros(B, dtype=F64))),
    Case("geometry.view_diameter", "one view", lambda: geometry.view_diameter(rand()[None]), Raises("M >= 2")),
    Case("geometry.misalignment_rate", "all-equal", lambda: geometry.misalignment_rate(torch.stack([same(), same()]), eps=0.0), Equals(0.0)),
    Case("geometry.misalignment_rate", "N=0", lambda: geometry.misalignment_rate(zeros(0)[None].expand(2, 0, D), eps=0.1), Raises("at least one input")),
    Case("geometry.augmented_distance", "all-equal", lambda: geometry.augmented_distance(torch.stack([same(), same()])), Equals(torch.zeros(B, B, dtype=F64))),
    Case("geometry.aligned_crop_distance", "all-equal", lambda: geometry.aligned_crop_distance(torch.full((3, 3, 8, 8), 0.5, dtype=F64)), Equals(torch.zeros(3, 3, dtype=F64))),
    Case("geometry.aligned_crop_distance", "N=1", lambda: geometry.aligned_crop_distance(torch.rand(1, 3, 8, 8, dtype=F64)), Equals(torch.zeros(1, 1, dtype=F64))),
    Case("geometry.aligned_crop_distance", "not images", lambda: geometry.aligned_crop_distance(rand()), Raises("expected float images")),
    Case("geometry.augmented_distance", "N=1", lambda: geometry.augmented_distance(rand(1)[None]), Equals(torch.zeros(1, 1, dtype=F64))),
    Case("geometry.sigma_delta", "empty class", lambda: geometry.sigma_delta(torch.zeros(B, B, dtype=F64), Y_GAP, delta=0.1), Raises("class 1 has no samples")),
    Case("geometry.sigma_delta", "single class, all-equal", lambda: geometry.sigma_delta(torch.zeros(B, B, dtype=F64), Y_ONE, delta=0.0), Equals({"sigma": 1.0})),
    Case("geometry.sigma_delta", "N=1", lambda: geometry.sigma_delta(torch.zeros(1, 1, dtype=F64), Y_ONE[:1], delta=0.0), Equals({"sigma": 1.0})),
    Case("geometry.lipschitz_lower", "constant model", lambda: geometry.lipschitz_lower(ConstantModel(), pixels(), pixels(seed=1)), Equals(0.0)),
    Case("geometry.lipschitz_lower", "x1 == x2", lambda: geometry.lipschitz_lower(zero_linear(), same(), same()), Raises("every pair has x1 == x2")),
    Case("geometry.lipschitz_lower", "zero-norm inputs", lambda: geometry.lipschitz_lower(lambda x: 3 * x, zeros(), same()), Equals(3.0)),
    Case("geometry.lipschitz_upper", "zero weights", lambda: geometry.lipschitz_upper(nn.Sequential(zero_linear(), nn.ReLU())), Equals(0.0)),
    Case("geometry.lipschitz_upper", "no parameters", lambda: geometry.lipschitz_upper(nn.Sequential(nn.ReLU())), FINITE),
    Case("geometry.nearest_center_predict", "all-equal centres", lambda: geometry.nearest_center_predict(rand(), same(2)), Equals(torch.zeros(B, dtype=torch.int64))),
    Case("geometry.nearest_center_predict", "no centres", lambda: geometry.nearest_center_predict(rand(), zeros(0)), Raises("K >= 1")),
    Case("geometry.nearest_center_error", "all-equal centres", lambda: geometry.nearest_center_error(rand(), Y_ALT, same(2)), Equals(0.5)),
    Case("geometry.nearest_center_error", "zero-norm", lambda: geometry.nearest_center_error(zeros(), Y_ALT, zeros(2)), Equals(0.5)),
    Case("geometry.nearest_center_error", "N=0", lambda: geometry.nearest_center_error(zeros(0), Y_ALT[:0], same(2)), Raises("non-empty labels")),
    # sharpness: a loss with zero gradient and zero Hessian has no sharpness and no curvature
    Case("sharpness.m_sharpness", "zero gradient, m=2", lambda: sharpness.m_sharpness(linear_model(), constant_loss, [X2], rho=0.1, m=2), Equals(0.0)),
    Case("sharpness.m_sharpness", "m above the batch size", lambda: sharpness.m_sharpness(linear_model(), constant_loss, [X2], rho=0.1, m=9), Raises("no sub-batch")),
    Case("sharpness.m_sharpness", "m = 0", lambda: sharpness.m_sharpness(linear_model(), constant_loss, [X2], rho=0.1, m=0), Raises("m must be >= 1")),
    Case("sharpness.sharpness", "zero gradient, SAM", lambda: sharpness.sharpness(linear_model(), constant_loss, [X2], rho=0.1), Equals(0.0)),
    Case("sharpness.sharpness", "zero gradient, 3 steps", lambda: sharpness.sharpness(linear_model(), constant_loss, [X2], rho=0.1, steps=3), Equals(0.0)),
    Case("sharpness.sharpness", "zero gradient, ASAM", lambda: sharpness.sharpness(linear_model(), constant_loss, [X2], rho=0.1, steps=3, adaptive=True), Equals(0.0)),
    Case("sharpness.sharpness", "loss outside the graph", lambda: sharpness.sharpness(linear_model(), detached_loss, [X2], rho=0.1, steps=2), Equals(0.0)),
    Case("sharpness.sharpness", "no batches", lambda: sharpness.sharpness(linear_model(), constant_loss, [], rho=0.1), Raises("batches is empty")),
    Case("sharpness.sharpness", "no trainable parameters", lambda: sharpness.sharpness(frozen_model(), constant_loss, [X2], rho=0.1), Raises("requires_grad")),
    Case("sharpness.average_sharpness", "zero gradient", lambda: sharpness.average_sharpness(linear_model(), constant_loss, [X2], sigma=0.1), Equals(0.0)),
    Case("sharpness.hessian_top_eigenvalue", "zero Hessian, lanczos", lambda: sharpness.hessian_top_eigenvalue(linear_model(), constant_loss, [X2]), Equals(0.0)),
    Case("sharpness.hessian_top_eigenvalue", "zero Hessian, power", lambda: sharpness.hessian_top_eigenvalue(linear_model(), constant_loss, [X2], method="power"), Equals(0.0)),
    Case("sharpness.hessian_top_eigenvalue", "loss outside the graph", lambda: sharpness.hessian_top_eigenvalue(linear_model(), detached_loss, [X2, X2]), Equals(0.0)),
    Case("sharpness.hessian_trace", "zero Hessian", lambda: sharpness.hessian_trace(linear_model(), constant_loss, [X2], samples=4), Equals(0.0)),
    # optimization
    Case("optimization.full_batch_gradient_norm", "zero gradient", lambda: optimization.full_batch_gradient_norm(linear_model(), constant_loss, [X2]), Equals(0.0)),
    Case("optimization.full_batch_gradient_norm", "loss outside the graph", lambda: optimization.full_batch_gradient_norm(linear_model(), detached_loss, [X2]), Equals(0.0)),
    Case("optimization.full_batch_gradient_norm", "no batches", lambda: optimization.full_batch_gradient_norm(linear_model(), constant_loss, []), Raises("batches is empty")),
    Case("optimization.relative_weight_movement", "zero-norm initial weights", lambda: optimization.relative_weight_movement({"w": same(2)}, {"w": zeros(2)}), Raises("norm 0")),
    Case("optimization.relative_weight_movement", "zero-norm layers, per layer", lambda: len(optimization.relative_weight_movement({"w": same(2)}, {"w": zeros(2)}, per_layer=True)), Equals(0)),
    Case("optimization.relative_weight_movement", "no movement", lambda: optimization.relative_weight_movement({"w": same(2)}, {"w": same(2)}), Equals(0.0)),
    Case("optimization.loglog_slope", "constant y", lambda: optimization.loglog_slope([1, 2, 4], [3.0, 3.0, 3.0]), Equals({"slope": 0.0, "low": 0.0, "high": 0.0, "r2": 1.0})),
    Case("optimization.loglog_slope", "all-equal x", lambda: optimization.loglog_slope([2, 2, 2], [1.0, 2.0, 3.0]), Raises("all equal")),
    Case("optimization.loglog_slope", "N=2", lambda: optimization.loglog_slope([1, 2], [1.0, 2.0]), Raises("at least 3 points")),
    Case("optimization.loglog_slope", "zero value", lambda: optimization.loglog_slope([1, 2, 4], [1.0, 0.0, 2.0]), Raises("> 0")),
    # shift
    Case("shift.positive_pair_loss_gap", "all-equal", lambda: shift.positive_pair_loss_gap((same(), same()), (same(), same())), Equals(0.0)),
    Case("shift.positive_pair_loss_gap", "zero-norm", lambda: shift.positive_pair_loss_gap((zeros(), zeros()), (rand(), rand())), FINITE),
    Case("shift.positive_pair_loss_gap", "N=1", lambda: shift.positive_pair_loss_gap((rand(1), rand(1)), (rand(1), rand(1))), Raises("batch of at least 2")),
    Case("shift.infonce_range", "no negatives", lambda: shift.infonce_range(0, 0.5), Equals((0.0, 0.0))),
    Case("shift.mmd2", "all-equal", lambda: shift.mmd2(same(), same()), Equals(0.0)),
    Case("shift.mmd2", "zero-norm", lambda: shift.mmd2(zeros(), zeros()), Equals(0.0)),
    Case("shift.mmd2", "N=1", lambda: shift.mmd2(rand(1), rand()), Raises("at least 2 points")),
    Case("shift.sliced_wasserstein", "all-equal", lambda: shift.sliced_wasserstein(same(), same(), n_projections=8), Equals(0.0)),
    Case("shift.sliced_wasserstein", "zero-norm vs all-equal", lambda: shift.sliced_wasserstein(zeros(), same(1), n_projections=8), FINITE),
    Case("shift.sliced_wasserstein", "N=0", lambda: shift.sliced_wasserstein(zeros(0), rand()), Raises("non-empty")),
    Case("shift.positive_cosine_gap", "zero-norm", lambda: shift.positive_cosine_gap((zeros(), zeros()), (zeros(), zeros())), Equals(0.0)),
    Case("shift.positive_cosine_gap", "all-equal", lambda: shift.positive_cosine_gap((same(), same()), (same(), same())), Equals(0.0)),
    Case("shift.js_divergence", "constant features, one sample", lambda: shift.js_divergence(same(), same(), steps=20), Equals(0.0, abs=1e-9)),
    Case("shift.js_divergence", "N=0", lambda: shift.js_divergence(zeros(0), rand()), Raises("non-empty")),
    # adversarial: a constant model has zero input gradient, so PGD from x stays at x
    Case("adversarial.pgd", "constant model", lambda: adversarial.pgd(ConstantModel(), pixels(), Y_ALT, random_start=False), Equals(pixels())),
    Case("adversarial.pgd", "constant model, L2, random start", lambda: adversarial.pgd(ConstantModel(), pixels(), Y_ALT, norm="l2", generator=torch.Generator().manual_seed(0)), FINITE),
    Case("adversarial.pgd", "zero input gradient", lambda: adversarial.pgd(zero_linear(), pixels(), Y_ALT, random_start=False), Equals(pixels())),
    Case("adversarial.robust_accuracy", "constant model", lambda: adversarial.robust_accuracy(ConstantModel(), pixels(), Y_ALT, steps=2),
         Equals({"clean_accuracy": 0.5, "robust_accuracy": 0.5, "clean_cross_entropy": LOG2, "robust_cross_entropy": LOG2})),
    Case("adversarial.robust_accuracy", "N=0", lambda: adversarial.robust_accuracy(ConstantModel(), pixels()[:0], Y_ALT[:0]), Raises("non-empty")),
    Case("adversarial.representation_attack", "constant encoder", lambda: adversarial.representation_attack(ConstantModel(), pixels(), random_start=False), Equals((pixels(), torch.zeros(B, dtype=F64)))),
    Case("adversarial.representation_attack", "zero-norm outputs", lambda: adversarial.representation_attack(zero_linear(), pixels(), norm="l2", random_start=False), Equals((pixels(), torch.zeros(B, dtype=F64)))),
    Case("adversarial.contrastive_attack", "constant encoder", lambda: adversarial.contrastive_attack(ConstantModel(), pixels(), pixels(seed=1), random_start=False), Equals(pixels(seed=1))),
    Case("adversarial.contrastive_attack", "zero-norm outputs", lambda: adversarial.contrastive_attack(zero_linear(), pixels(), pixels(seed=1), steps=2), FINITE),
    Case("adversarial.contrastive_attack", "N=1", lambda: adversarial.contrastive_attack(zero_linear(), pixels(1), pixels(1, seed=1), steps=1), Raises("batch of at least 2")),
    Case("adversarial.NearestCenterClassifier", "zero-norm outputs", lambda: adversarial.NearestCenterClassifier(zero_linear(), torch.eye(2, dtype=F64))(pixels()), Equals(torch.full((B, 2), -1.0, dtype=F64))),
    Case("adversarial.NearestCenterClassifier", "no centres", lambda: adversarial.NearestCenterClassifier(zero_linear(), zeros(0, 2)), Raises("non-empty")),
    Case("adversarial.nearest_center_logits", "all-equal centres", lambda: adversarial.nearest_center_logits(nn.Linear(D, 3).double(), same(2, 3))(pixels()), FINITE),
    # information
    Case("information.infonce_mi_lower_bound", "all-equal", lambda: information.infonce_mi_lower_bound(same(), same()), Equals(0.0)),
    Case("information.infonce_mi_lower_bound", "zero-norm", lambda: information.infonce_mi_lower_bound(zeros(), zeros()), Equals(0.0)),
    Case("information.infonce_mi_lower_bound", "N=1", lambda: information.infonce_mi_lower_bound(rand(1), rand(1)), Raises("batch of at least 2")),
    # All points tie (ε_i = 0, outside KSG's assumptions): n_x = n_y = 0, so ψ(k) + ψ(N) − 2ψ(1).
    Case("information.knn_mutual_information", "all-equal", lambda: information.knn_mutual_information(same(10), same(10), k=3), Equals(PSI(3) + PSI(10) - 2 * PSI(1))),
    Case("information.knn_mutual_information", "N=1", lambda: information.knn_mutual_information(rand(1), rand(1), k=1), Raises("k must satisfy")),
    # arora
    Case("arora.logistic_loss", "zero margins", lambda: arora.logistic_loss(torch.zeros(2, 3, dtype=F64)), Equals(torch.full((2,), math.log(4), dtype=F64))),
    Case("arora.logistic_loss", "no negatives", lambda: arora.logistic_loss(torch.zeros(2, 0, dtype=F64)), Equals(torch.zeros(2, dtype=F64))),
    Case("arora.class_probabilities", "single class", lambda: arora.class_probabilities(Y_ONE), Equals(torch.ones(1, dtype=F64))),
    Case("arora.class_probabilities", "empty class", lambda: arora.class_probabilities(Y_GAP), Equals(torch.tensor([0.5, 0.0, 0.5], dtype=F64))),
    Case("arora.class_probabilities", "N=0", lambda: arora.class_probabilities(Y_ONE[:0]), Raises("non-empty")),
    Case("arora.collision_probability", "single class", lambda: arora.collision_probability(torch.ones(1, dtype=F64), 3), Equals(1.0)),
    Case("arora.collision_probability", "empty class", lambda: arora.collision_probability(torch.tensor([0.5, 0.0, 0.5], dtype=F64), 1), Equals(0.5)),
    # One class: all M = 2 negatives collide, J = 2 surely, so γ = log(1 + 2).
    Case("arora.collision_floor", "single class", lambda: arora.collision_floor(torch.ones(1, dtype=F64), 2), Equals(math.log(3))),
    Case("arora.collision_floor", "empty class", lambda: arora.collision_floor(torch.tensor([0.5, 0.0, 0.5], dtype=F64), 1), Equals(0.5 * LOG2)),
    Case("arora.unsupervised_loss_practical", "all-equal", lambda: arora.unsupervised_loss_practical(same(), same(), same()), Equals(LOG2)),
    Case("arora.unsupervised_loss_practical", "zero-norm", lambda: arora.unsupervised_loss_practical(zeros(), zeros(), zeros()), Equals(LOG2)),
    Case("arora.unsupervised_loss_practical", "N=0", lambda: arora.unsupervised_loss_practical(rand(0), rand(0), rand(0)), Raises("at least one input")),
    Case("arora.unsupervised_loss_practical", "shapes differ", lambda: arora.unsupervised_loss_practical(rand(), rand(3), rand()), Raises("one shape")),
    Case("information.conditional_negatives", "all-equal", lambda: information.conditional_negatives(same(), same(), 0.9), FINITE),
    Case("information.conditional_negatives", "zero-norm", lambda: information.conditional_negatives(zeros(), zeros(), 0.9), FINITE),
    Case("information.conditional_negatives", "N=1", lambda: information.conditional_negatives(rand(1), rand(1), 0.9), Raises("B >= 2")),
    Case("information.conditional_negatives", "negative tau", lambda: information.conditional_negatives(rand(), rand(), -1.0), Raises("tau_neg must be >= 0")),
    Case("information.gaussian_mi", "independent", lambda: information.gaussian_mi(0.0, 5), Equals(0.0)),
    Case("information.gaussian_mi", "rho = 1", lambda: information.gaussian_mi(1.0, 5), Raises("rho must be in")),
    Case("information.knn_mi_calibration", "N=1", lambda: information.knn_mi_calibration(1, 4), Raises("need n > k")),
    Case("arora.unsupervised_loss_exact", "all-equal", lambda: arora.unsupervised_loss_exact(same(), Y_ALT), Equals(LOG2)),
    Case("arora.unsupervised_loss_exact", "zero-norm", lambda: arora.unsupervised_loss_exact(zeros(), Y_ALT), Equals(LOG2)),
    Case("arora.unsupervised_loss_exact", "single class", lambda: arora.unsupervised_loss_exact(rand(), Y_ONE), Raises("at least 2 classes")),
    Case("arora.unsupervised_loss", "all-equal", lambda: arora.unsupervised_loss(same(), Y_ALT, 3, samples=4), Equals({"loss": math.log(4), "stderr": 0.0})),
    Case("arora.unsupervised_loss", "single class", lambda: arora.unsupervised_loss(rand(), Y_ONE, 1), Raises("at least 2 classes")),
    Case("arora.mean_classifier_loss_exact", "all-equal", lambda: arora.mean_classifier_loss_exact(same(), Y_ALT), Equals(LOG2)),
    Case("arora.mean_classifier_loss_exact", "empty class", lambda: arora.mean_classifier_loss_exact(same(), Y_GAP), Equals(LOG2)),
    Case("arora.mean_classifier_loss_exact", "single class", lambda: arora.mean_classifier_loss_exact(rand(), Y_ONE), Raises("at least 2 classes")),
    Case("arora.mean_classifier_loss", "all-equal", lambda: arora.mean_classifier_loss(same(), Y_ALT, 3, samples=4), Equals({"loss": LOG2, "stderr": 0.0})),
    Case("arora.mean_classifier_loss", "single class", lambda: arora.mean_classifier_loss(rand(), Y_ONE, 1), Raises("at least 2 classes")),
]

THEORY_MODULES = ("losses", "geometry", "sharpness", "optimization", "shift", "adversarial", "information", "arora")
# Public callables with no degenerate input of their own (none today): "module.name": why.
THEORY_EXEMPT: dict[str, str] = {}


def _public_callables(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {name for name, obj in vars(module).items() if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__}


def _check_result(expect: Any, call: Callable[[], Any]) -> Any:
    if isinstance(expect, Raises):
        with pytest.raises(expect.exc, match=expect.match):
            call()
        return None
    out = call()
    bad = _non_finite(out)
    # An explicitly expected ±inf (a documented unbounded quantity) is not a silent one.
    documented = isinstance(expect, Equals) and isinstance(expect.value, float) and math.isinf(expect.value)
    assert not bad or documented, f"non-finite values at {bad}: {out!r}"
    if isinstance(expect, Equals):
        _assert_equal(out, expect.value, expect.abs)
    else:
        assert expect == FINITE
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_degenerate_input(case: Case) -> None:
    _check_result(case.expect, case.call)


def test_every_public_term_has_a_degenerate_case() -> None:
    covered = {c.term for c in CASES}
    public = {f"{m}.{name}" for m in THEORY_MODULES for name in _public_callables(f"clbounds.theory.{m}")}
    assert public - covered - set(THEORY_EXEMPT) == set(), "add a degenerate-input case for these terms"
    assert covered - public == set(), "table rows for names that are not public terms"
    assert set(THEORY_EXEMPT) <= public


# ───────────────────────────── bounds ─────────────────────────────


@dataclass(frozen=True)
class Check:
    """A BoundCheck (or each of a list) whose listed attributes have these values."""

    attrs: dict[str, Any]


def _huang(**over: float) -> dict[str, float]:
    return huang_terms(**over)


def _arora(**over: float) -> dict[str, float]:
    t = {"arora_unsupervised_loss": 1.0, "arora_mean_classifier_loss": 0.5, "arora_collision": 0.5,
         "arora_unsupervised_loss_M": 2.0, "arora_mean_classifier_loss_M": 1.0, "arora_collision_M": 0.5, "arora_collision_floor_M": 0.3, "arora_negatives": 2}
    return {**t, **over}


def _ssa(**over: float) -> dict[str, float]:
    t = {
        "arora_mean_classifier_loss_ntxent": 1.2, "info_nce": 4.0, "shift_loss_gap": 0.5, "arora_collision_ntxent": 0.6, "arora_collision_floor_ntxent": 1.5,
        "infonce_range": 8.0, "ssl_loss_heldout": 4.1, "ssl_sharp_loss_train": 4.05, "ssl_loss_train": 4.0, "ssl_loss_range": 8.0, "pac_bayes_units": 100,
        "num_parameters": 1000, "weight_distance": 2.0, "sharpness_rho": 0.05, "weight_norm": 10.0, "sharpness_average": 0.01, "shift_js": 0.2,
    }
    return {**t, **over}


_ROBUST_ZERO = {name: 0.0 for name in robust_cl.REQUIRED_TERMS}
_SWEEP = [{"width": w, "terms": {"gradient_norm": 1.0, "weight_movement": 1.0}} for w in (1, 2, 4)]
_UNDEFINED = {"bound": None, "holds": None, "tightness": None, "assumptions_met": False}

BOUND_CASES: list[Case] = [
    # common: the tightness of a measured side of 0 (or of an infinite bound) is "not applicable", never inf
    Case("common.make_check", "measured = 0", lambda: common.make_check("t", huang2023.THEOREM1, 1.0, 0.0, "paper"), Check({"holds": True, "tightness": None})),
    Case("common.make_check", "bound = inf", lambda: common.make_check("t", huang2023.THEOREM1, math.inf, 1.0, "paper"), Check({"holds": True, "tightness": None})),
    Case("common.make_check", "measured = NaN", lambda: common.make_check("t", huang2023.THEOREM1, 1.0, math.nan, "paper"), Check({"holds": None, "tightness": None})),
    Case("common.error_ceiling", "trivial error not measured", lambda: common.error_ceiling({})[0], Equals(1.0)),
    Case("common.error_ceiling", "one class only", lambda: common.error_ceiling({"trivial_error": 0.0})[0], Equals(0.0)),
    Case("common.require", "non-finite term", lambda: common.require({"a": math.nan}, ["a"], "t"), Raises("not finite")),
    Case("common.require", "missing term", lambda: common.require({}, ["a"], "t"), Raises("needs term", common.MissingTermError)),
    Case("common.assumption", "zero margin", lambda: common.assumption(0.0, 0.0, strict=True), Equals({"met": False, "margin": 0.0})),
    # arora2019
    Case("arora2019.one_negative", "measured = 0", lambda: arora2019.one_negative(_arora(arora_mean_classifier_loss=0.0)), Check({"holds": True, "tightness": None})),
    Case("arora2019.one_negative", "single class (collision 1)", lambda: arora2019.one_negative(_arora(arora_collision=1.0)), Check(_UNDEFINED)),
    Case("arora2019.m_negative", "single class (collision 1)", lambda: arora2019.m_negative({**_arora(arora_collision_M=1.0), "arora_unsupervised_loss_M_stderr": 0.0, "arora_mean_classifier_loss_M_stderr": 0.0}), Check(_UNDEFINED)),
    Case("arora2019.m_negative", "zero standard errors", lambda: arora2019.m_negative({**_arora(), "arora_unsupervised_loss_M_stderr": 0.0, "arora_mean_classifier_loss_M_stderr": 0.0}), Check({"holds": True})),
    Case("arora2019.one_negative_practical", "single class (collision 1)", lambda: arora2019.one_negative_practical({**_arora(arora_collision=1.0), "arora_unsupervised_loss_practical": 1.0}), Check(_UNDEFINED)),
    Case("arora2019.loss_ceiling", "no temperature", lambda: arora2019.loss_ceiling({}, 1)[0] is None, Equals(True)),
    Case("arora2019.loss_ceiling", "zero temperature", lambda: arora2019.loss_ceiling({"loss_temperature": 0.0}, 1)[0] is None, Equals(True)),
    Case("arora2019.trivial_ceiling", "no constant-encoder term and no temperature", lambda: arora2019.trivial_ceiling({}, "arora_constant_encoder_loss", 1)[0] is None, Equals(True)),
    Case("arora2019.arora_bound", "collision 1", lambda: arora2019.arora_bound(1.0, 1.0, LOG2), Raises("collision probability")),
    Case("arora2019.evaluate", "missing terms", lambda: arora2019.evaluate({}), Raises("needs term", common.MissingTermError)),
    Case("arora2019.evaluate_all", "missing terms", lambda: arora2019.evaluate_all({}), Check(_UNDEFINED)),
    # huang2023: an empty class (p_min = 0) or a zero-norm output (min‖h‖ = 0) fails the centre condition
    Case("huang2023.rho_max", "empty class", lambda: huang2023.rho_max(0.9, 0.0, 0.0, 1.0, 0.1, 0.1), Equals(math.inf)),
    Case("huang2023.rho_max", "infinite L, delta = 0", lambda: huang2023.rho_max(0.9, 0.0, 0.1, math.inf, 0.0, 0.1), Equals(2 * 0.1 + 0.9 * 2 * 0.1)),
    Case("huang2023.center_condition_rhs", "infinite rho", lambda: huang2023.center_condition_rhs(math.inf, 0.0), Equals(-math.inf)),
    Case("huang2023.theorem1", "empty class", lambda: huang2023.theorem1(_huang(min_class_probability=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.theorem1", "zero-norm features", lambda: huang2023.theorem1(_huang(feature_norm_min=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.theorem1", "zero-norm projection", lambda: huang2023.theorem1(_huang(projection_norm_min=0.0), "_projection"), Check({"assumptions_met": False})),
    Case("huang2023.theorem1", "measured = 0", lambda: huang2023.theorem1(_huang(nearest_center_error=0.0)), Check({"holds": True, "tightness": None})),
    Case("huang2023.theorem1_tightest", "empty class", lambda: huang2023.theorem1_tightest(_huang(min_class_probability=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.theorem1_tightest", "zero-norm features, no grid", lambda: huang2023.theorem1_tightest(_huang(feature_norm_min=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.theorem2", "eps = 0", lambda: huang2023.theorem2(_huang(misalignment_eps=0.0)), Raises("misalignment_eps must be > 0")),
    Case("huang2023.theorem2", "one view", lambda: huang2023.theorem2(_huang(misalignment_views=1)), Raises("M >= 2")),
    Case("huang2023.theorem2", "identical views", lambda: huang2023.theorem2(_huang(misalignment_rate=0.0, alignment=0.0)), Check({"bound": 0.0, "holds": True, "tightness": None})),
    Case("huang2023.theorem3", "empty class", lambda: huang2023.theorem3(_huang(min_class_probability=0.0)), Check(_UNDEFINED)),
    Case("huang2023.theorem4", "empty class", lambda: huang2023.theorem4(_huang(min_class_probability=0.0)), Check(_UNDEFINED)),
    Case("huang2023.corollary_infonce", "empty class", lambda: huang2023.corollary_infonce(_huang(min_class_probability=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.corollary_infonce", "eps = 0", lambda: huang2023.corollary_infonce(_huang(misalignment_eps=0.0)), Raises("misalignment_eps must be > 0")),
    Case("huang2023.corollary_barlow", "zero-norm projection", lambda: huang2023.corollary_barlow(_huang(projection_norm_min=0.0)), Check({"assumptions_met": False})),
    Case("huang2023.evaluate", "missing terms", lambda: huang2023.evaluate({}), Raises("needs term", common.MissingTermError)),
    Case("huang2023.evaluate_all", "empty class and zero norms", lambda: huang2023.evaluate_all(_huang(min_class_probability=0.0, feature_norm_min=0.0, projection_norm_min=0.0)), Check({})),
    # ssa_clr
    Case("ssa_clr.pac_bayes_complexity", "no units", lambda: ssa_clr.pac_bayes_complexity(1.0, 0, 10, 1.0, 0.1), Raises("units must be >= 1")),
    Case("ssa_clr.pac_bayes_complexity", "rho = 0", lambda: ssa_clr.pac_bayes_complexity(1.0, 10, 10, 1.0, 0.0), Raises("rho must be > 0")),
    Case("ssa_clr.pac_bayes_complexity", "no movement, one unit", lambda: ssa_clr.pac_bayes_complexity(1.0, 1, 10, 0.0, 0.1), Equals({"kl": 0.0, "tail": 1.0})),
    Case("ssa_clr.ideal_arora", "single class (collision 1)", lambda: ssa_clr.ideal_arora(_ssa(arora_collision_ntxent=1.0)), Check(_UNDEFINED)),
    Case("ssa_clr.shift_tv", "zero loss range", lambda: ssa_clr.shift_tv(_ssa(infonce_range=0.0, shift_loss_gap=0.0)), Check({"bound": 0.0, "tightness": None})),
    Case("ssa_clr.pac_bayes", "one unit", lambda: ssa_clr.pac_bayes(_ssa(pac_bayes_units=1)), Check(_UNDEFINED)),
    Case("ssa_clr.pac_bayes", "rho = 0", lambda: ssa_clr.pac_bayes(_ssa(sharpness_rho=0.0)), Check({"bound": None, "holds": None})),
    Case("ssa_clr.pac_bayes", "measured = 0", lambda: ssa_clr.pac_bayes(_ssa(ssl_loss_heldout=0.0)), Check({"holds": True, "tightness": None})),
    Case("ssa_clr.pac_bayes_tightest", "one unit", lambda: ssa_clr.pac_bayes_tightest(_ssa(pac_bayes_units=1)), Check(_UNDEFINED)),
    Case("ssa_clr.pac_bayes_tightest", "measured = 0, a grid", lambda: ssa_clr.pac_bayes_tightest(_ssa(ssl_loss_heldout=0.0) | {"ssl_sharp_loss_train@rho_factor=2": 4.1}), Check({"holds": True, "tightness": None})),
    Case("ssa_clr.assembled", "rho = 0", lambda: ssa_clr.assembled(_ssa(sharpness_rho=0.0)), Check({"bound": None, "holds": None})),
    Case("ssa_clr.assembled", "single class (collision 1)", lambda: ssa_clr.assembled(_ssa(arora_collision_ntxent=1.0)), Check(_UNDEFINED)),
    Case("ssa_clr.evaluate", "no units", lambda: ssa_clr.evaluate(_ssa(pac_bayes_units=0)), Check(_UNDEFINED)),
    Case("ssa_clr.evaluate_all", "missing terms", lambda: ssa_clr.evaluate_all({}), Check(_UNDEFINED)),
    # robust_cl: all terms 0 (a constant model: no gap, no loss)
    Case("robust_cl.lipschitz_transfer", "all zero", lambda: robust_cl.lipschitz_transfer(_ROBUST_ZERO), Check({"bound": 0.0, "holds": True, "tightness": None})),
    Case("robust_cl.lipschitz_transfer_error", "all zero, every input robust", lambda: robust_cl.lipschitz_transfer_error({**_ROBUST_ZERO, "robust_accuracy": 1.0}), Check({"bound": 0.0, "holds": True, "tightness": None})),
    Case("robust_cl.adversarial_infonce", "all zero", lambda: robust_cl.adversarial_infonce(_ROBUST_ZERO), Check({"bound": 0.0, "holds": True, "tightness": None})),
    Case("robust_cl.evaluate", "missing terms", lambda: robust_cl.evaluate({}), Raises("needs term", common.MissingTermError)),
    Case("robust_cl.evaluate_all", "missing terms", lambda: robust_cl.evaluate_all({}), Check(_UNDEFINED)),
    # wen2020
    Case("wen2020.loglog_slope", "all-equal x", lambda: wen2020.loglog_slope([2, 2, 2], [1.0, 2.0, 3.0]), Raises("all equal")),
    Case("wen2020.loglog_slope", "N=2", lambda: wen2020.loglog_slope([1, 2], [1.0, 2.0]), Raises("at least 3 points")),
    Case("wen2020.loglog_slope", "constant y", lambda: wen2020.loglog_slope([1, 2, 4], [3.0, 3.0, 3.0]), Equals({"slope": 0.0, "low": 0.0, "high": 0.0})),
    Case("wen2020.evaluate_sweep", "constant values", lambda: wen2020.evaluate_sweep(_SWEEP), Check({"holds": False, "measured": 0.0, "tightness": None})),
    Case("wen2020.evaluate_sweep", "one width", lambda: wen2020.evaluate_sweep([{**r, "width": 1} for r in _SWEEP]), Check(_UNDEFINED)),
    Case("wen2020.evaluate_sweep", "zero values", lambda: wen2020.evaluate_sweep([{"width": w, "terms": {"gradient_norm": 0.0, "weight_movement": 0.0}} for w in (1, 2, 4)]), Check(_UNDEFINED)),
    Case("wen2020.gradient_norm_vs_width", "no rows", lambda: wen2020.gradient_norm_vs_width([]), Check(_UNDEFINED)),
    Case("wen2020.weight_movement_vs_width", "no rows", lambda: wen2020.weight_movement_vs_width([]), Check(_UNDEFINED)),
    Case("wen2020.evaluate_sweep_all", "no rows", lambda: wen2020.evaluate_sweep_all([]), Check(_UNDEFINED)),
    # cacr
    Case("cacr.evaluate_pair", "nothing measured", lambda: cacr.evaluate_pair({}, {}), Check({"holds": None, "assumptions_met": False})),
    Case("cacr.evaluate_pair_all", "nothing measured", lambda: cacr.evaluate_pair_all({}, {}), Check({"holds": None, "assumptions_met": False})),
    Case("cacr.evaluate_pair_all", "equal runs", lambda: cacr.evaluate_pair_all({"alignment": 0.0, "mi_query_negative": 0.0, "cacr_weight_distance_corr": 0.0}, {"alignment": 0.0, "mi_query_negative": 0.0}), Check({"holds": False})),
    Case("common.with_controls", "no control evaluated", lambda: common.with_controls(common.make_check("t", huang2023.THEOREM1, 1.0, 0.5, "paper"), {"random_init": common.make_check("t", huang2023.THEOREM1, None, None, "paper")}), Check({"informative": None})),
    Case("common.make_check", "bound at the ceiling", lambda: common.make_check("t", huang2023.THEOREM1, 1.0, 0.5, "paper", ceiling=1.0), Check({"vacuous": True})),
    Case("common.make_check", "no bound, with a ceiling", lambda: common.make_check("t", huang2023.THEOREM1, None, 0.5, "paper", ceiling=1.0, reason="undefined"), Check({"vacuous": None})),
    Case("cacr.evaluate_pair", "equal runs", lambda: cacr.evaluate_pair({"alignment": 0.0, "mi_query_negative": 0.0, "cacr_weight_distance_corr": 0.0}, {"alignment": 0.0, "mi_query_negative": 0.0}), Check({"holds": False})),
]

BOUND_MODULES = ("common", "arora2019", "huang2023", "ssa_clr", "robust_cl", "wen2020", "cacr")
BOUND_EXEMPT = {
    "common.BoundCheck": "the result type; its numbers are checked in every row above",
    "common.MissingTermError": "the error type that the missing-terms rows expect",
    "common.missing_check": "builds the check of missing terms; reached through every evaluate_all row",
    "common.evaluate_registry": "runs a registry; reached through every evaluate_all row",
    "common.control_summary": "copies a check's numbers; reached through every with_controls row",
    "common.decide": "sets the margin of a check; reached through every evaluate_all row (evaluate_registry calls it)",
    "common.testifies": "reads a control's flags; reached through every with_controls row",
    "common.term_gaps": "formats the missing and unavailable terms of a check; its doctest and the missing-terms rows cover it",
    "common.verdict": "labels a check's flags; every verdict class on every flag combination is tested in test_bounds_common.py",
    "common.verdict_counts": "counts verdict labels; tested in test_bounds_common.py",
    "common.headline": "formats verdict_counts; tested in test_bounds_common.py",
    "ssa_clr.sharp_loss_term": "a term name shared by the measure and the bounds; its doctest covers it",
    "ssa_clr.ascent_decides": "a stopping rule on floats; its NaN, inf and boundary cases are in test_bounds_ssa_clr.py",
    "common.distinct_checks": "drops repeated stored rows of a grid-level check; tested in test_bounds_common.py",
    "common.unavailable_row": "builds a (name, 1.0, reason) row; its doctest checks it",
}


def _no_nan(obj: Any, path: str) -> list[str]:
    """NaN anywhere in a nested detail dict (inf may mark an unbounded quantity, NaN never)."""
    if isinstance(obj, float):
        return [path] if math.isnan(obj) else []
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _no_nan(v, f"{path}[{k!r}]")]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in _no_nan(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("case", BOUND_CASES, ids=[c.id for c in BOUND_CASES])
def test_bound_on_degenerate_terms(case: Case) -> None:
    if not isinstance(case.expect, Check):
        _check_result(case.expect, case.call)
        return
    out = case.call()
    checks = out if isinstance(out, list) else [out]
    assert checks and all(isinstance(c, common.BoundCheck) for c in checks)
    for c in checks:
        row = c.to_row()
        for key in ("bound", "measured", "tightness"):
            assert row[key] is None or math.isfinite(row[key]), f"{c.theorem}: {key} = {row[key]}"
        assert c.holds in (True, False, None)
        # an undefined bound must say why: a reason, missing terms or a failed assumption
        if c.bound is None and c.details.get("label") != "diagnostic" and c.theorem != "cacr.claims":
            assert c.details.get("reason") or c.details.get("missing_terms") or c.failed_assumptions, f"{c.theorem}: no bound and no reason"
        assert not _no_nan(c.details, "details"), f"{c.theorem}: NaN in {_no_nan(c.details, 'details')}"
        for key, value in case.expect.attrs.items():
            assert getattr(c, key) == value, f"{c.theorem}: {key} = {getattr(c, key)!r}, expected {value!r}"


def test_every_public_bound_function_has_a_degenerate_case() -> None:
    covered = {c.term for c in BOUND_CASES}
    public = {f"{m}.{name}" for m in BOUND_MODULES for name in _public_callables(f"clbounds.bounds.{m}")}
    assert public - covered - set(BOUND_EXEMPT) == set(), "add a degenerate-terms case for these bound functions"
    assert covered - public == set()
    assert set(BOUND_EXEMPT) <= public
