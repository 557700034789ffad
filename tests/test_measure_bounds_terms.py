"""Tests for the "bounds" term group of experiments/measurement/measure.py: the inputs of bounds/."""

from __future__ import annotations

import math

import pytest
import torch

from clbounds.bounds import arora2019
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.training.runs import load_encoder
from clbounds.experiments.measurement.context import build_context
from clbounds.experiments.measurement.groups import TERM_GROUPS
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.store.db import Store
from clbounds.theory.arora import class_probabilities
from clbounds.theory.shift import infonce_range

from conftest import trained_tiny

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    record = trained_tiny(store)
    rows = measure(record, store, ["losses", "geometry", "adversarial", "bounds"])
    return record, store, {n: v for n, v, _ in rows}, {n: p for n, _, p in rows}


def test_group_is_registered_and_every_value_is_finite_with_a_protocol(measured):
    record, store, terms, protocols = measured
    assert "bounds" in TERM_GROUPS
    expected = set(arora2019.REQUIRED_TERMS) | {"misalignment_eps", "misalignment_views", "misalignment_rate_pairwise", "misalignment_rate_pairwise_projection",
                                                 "feature_norm_min", "projection_norm_min", "lipschitz_upper_projector", "huang_infonce_L1_unit", "huang_infonce_L2_unit",
                                                 "embedding_dim", "num_classes", "ssl_loss_train", "ssl_sharp_loss_train", "ssl_loss_heldout", "ssl_loss_range",
                                                 "pac_bayes_units", "n_train", "num_parameters", "weight_norm", "weight_distance", "sharpness_rho", "adversarial_js",
                                                 "representation_gap_at_probe_attack", "arora_mean_classifier_loss_ntxent", "arora_collision_ntxent", "arora_collision_floor_ntxent"}
    assert expected <= set(terms)
    assert all(math.isfinite(terms[n]) and protocols[n] for n in expected)
    assert {r["name"] for r in store.measurements(record.id)} >= expected


def test_values_agree_with_the_config_and_closed_forms(measured):
    record, _, t, _ = measured
    cfg = config_from_dict(record.config)
    ctx = build_context(record)
    p = class_probabilities(ctx.y)
    assert t["arora_collision"] == pytest.approx(float((p**2).sum()), rel=1e-12)
    assert t["arora_negatives"] == cfg.data.num_classes == t["num_classes"]
    assert t["misalignment_eps"] == cfg.measure.eps and t["misalignment_views"] == cfg.measure.views
    assert t["embedding_dim"] == cfg.encoder.proj_dim and t["sharpness_rho"] == cfg.measure.rho
    b = cfg.measure.batch_size
    assert t["pac_bayes_units"] == cfg.data.n_train // b and t["n_train"] == cfg.data.n_train
    lo, hi = infonce_range(2 * b - 2, cfg.method.temperature)
    assert t["ssl_loss_range"] == pytest.approx(hi - lo)
    for name in ("ssl_loss_train", "ssl_sharp_loss_train", "ssl_loss_heldout"):
        assert lo <= t[name] <= hi
    assert t["ssl_sharp_loss_train"] >= t["ssl_loss_train"]
    model, init = load_encoder(record, ctx.data.image_shape), load_encoder(record, ctx.data.image_shape, random_init=True)
    theta = torch.cat([q.detach().double().flatten() for q in model.parameters()])
    theta0 = torch.cat([q.detach().double().flatten() for q in init.parameters()])
    assert t["num_parameters"] == theta.numel()
    assert t["weight_norm"] == pytest.approx(theta.norm().item(), rel=1e-9)
    assert t["weight_distance"] == pytest.approx((theta - theta0).norm().item(), rel=1e-9)
    assert 0 < t["feature_norm_min"] and 0 < t["projection_norm_min"] and t["lipschitz_upper_projector"] > 0
    assert 0 <= t["adversarial_js"] <= math.log(2)


def test_measured_terms_satisfy_the_exact_identities(measured):
    _, _, t, _ = measured
    # Arora with one negative is exact on the sample's empirical distribution.
    assert arora2019.evaluate(t).holds
    # Unit-norm L1 = −E cos, so 2 + 2 L1 is the alignment of the normalised projection (same views, same inputs).
    assert 2 + 2 * t["huang_infonce_L1_unit"] == pytest.approx(t["alignment_projection"], abs=1e-5)
    # Markov's inequality on the same pairs of views.
    assert t["misalignment_rate_pairwise"] <= t["alignment"] / t["misalignment_eps"] ** 2 + 1e-12
    # At the probe's own PGD points the √2-Lipschitz transfer is exact, per sample.
    assert t["robust_cross_entropy"] <= t["clean_cross_entropy"] + math.sqrt(2) * t["probe_lipschitz"] * t["representation_gap_at_probe_attack"] + 1e-6
    assert t["arora_collision_M"] >= t["arora_collision"] and t["arora_collision_ntxent"] >= t["arora_collision_M"]
