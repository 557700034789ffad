import math

import pytest
import torch

from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.groups import TERM_GROUPS
from clbounds.experiments.measurement.groups.shift import same_class_partner
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.training.loop import train

from conftest import tiny_raw


@pytest.fixture
def trained(store):
    raw = tiny_raw(encoder__arch="convnet")
    raw["measure"] = {"n_samples": 64, "batch_size": 32, "views": 3, "sigma_per_class": 6, "hessian_iters": 3, "trace_samples": 2, "sharpness_steps": 2, "attack_steps": 2}
    raw["data"]["n_test"] = 64
    return train(config_from_dict(raw), store, progress=False)


def test_every_term_group_stores_finite_values_with_protocols(store, trained):
    before = {k: v.clone() for k, v in __import__("safetensors.torch").torch.load_file(str(trained.path / "encoder.safetensors")).items()}
    rows = measure(trained, store)
    names = [n for n, _, _ in rows]
    assert len(names) == len(set(names))
    for expected in ["info_nce", "huang_infonce_L1", "center_max_inner", "center_max_inner_projection", "misalignment_rate", "sigma", "sigma_generator",
                     "lipschitz_lower", "lipschitz_upper", "sharpness", "sharpness_sam", "hessian_lambda_max", "shift_loss_gap", "shift_mmd2",
                     "robust_accuracy", "representation_gap", "gradient_norm", "weight_movement", "mi_query_negative"]:
        assert expected in names, expected
    assert all(math.isfinite(v) for _, v, _ in rows) and all(p for _, _, p in rows)
    stored = store.measurements(trained.id)
    assert {r["name"] for r in stored} >= set(names)
    after = __import__("safetensors.torch").torch.load_file(str(trained.path / "encoder.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # measuring never writes weights
    sharp = dict((n, v) for n, v, _ in rows)
    assert sharp["sharpness"] >= sharp["sharpness_sam"] - 1e-6 >= -1e-6
    assert sharp["robust_accuracy"] <= sharp["clean_accuracy"]


def test_measuring_twice_replaces_rather_than_duplicates(store, trained):
    measure(trained, store, ["losses"])
    n = len(store.measurements(trained.id))
    measure(trained, store, ["losses"])
    assert len(store.measurements(trained.id)) == n


def test_unknown_term_group_is_a_clear_error(store, trained):
    with pytest.raises(ValueError, match="unknown term group"):
        measure(trained, store, ["bogus"])
    assert set(TERM_GROUPS) >= {"losses", "geometry", "sharpness", "shift", "adversarial"}


def test_same_class_partner_is_a_different_member_of_the_class():
    y = torch.tensor([0, 1, 0, 2, 1, 0, 1])
    p = same_class_partner(y, torch.Generator().manual_seed(0))
    assert (y[p] == y).all()
    assert (p != torch.arange(7))[y != 2].all() and p[3] == 3  # class 2 has one member
    assert sorted(p.tolist()) == list(range(7))  # a permutation: every input is someone's partner once
