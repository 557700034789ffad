"""Every method trains with the one loop: the loss falls and the encoder beats its random
initialisation on `synthetic` and `digits` (the bundled quick configs, shrunk); robust CL and
two-network runs resume bitwise; two-network training logs its dynamics every step."""

import math

import pytest
import torch
from safetensors.torch import load_file

from clbounds.experiments.training.augment import Augment
from clbounds.experiments.config import config_from_dict, load_config
from clbounds.experiments.measurement.accuracy import evaluate
from clbounds.experiments.training.runs import load_encoder
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.training.methods import method_losses, ssl_loss
from clbounds.experiments.store.db import Store
from clbounds.experiments.training.loop import epoch_generator, train
from clbounds.experiments.training.runs import build_networks, load_run_data
from clbounds.theory.optimization import full_batch_gradient_norm

from conftest import tiny_raw, train_full_and_resumed

METHODS = ["ssa-clr", "cacr", "robust-cl", "rocl", "two-network"]
COMMON = ["device=cpu", "encoder.width=0.25", "encoder.proj_hidden=64", "encoder.proj_dim=32", "eval.knn_k=20", "eval.linear_steps=50"]
SHRINK = {  # the quick configs, made several times smaller still
    "synthetic": ["data.n_train=512", "data.n_test=300", "optim.epochs=6", "optim.batch_size=128"],
    "digits": ["optim.epochs=3", "optim.batch_size=256"],
}
PER_METHOD = {
    "cacr": ["method.positives=2"],
    "robust-cl": ["method.steps=2", "method.alpha=0.0235"],
    "rocl": ["method.steps=2", "method.alpha=0.0235"],
}
PER_CASE = {  # applied last
    ("rocl", "digits"): ["optim.epochs=4", "method.steps=1", "method.alpha=0.0314"],
    ("two-network", "synthetic"): ["data.n_train=256", "optim.epochs=30", "optim.lr=1.0", "method.fixed_views=false"],
    ("two-network", "digits"): ["optim.epochs=10", "optim.batch_size=512"],
}


def _overrides(method: str, dataset: str) -> list[str]:
    return COMMON + SHRINK[dataset] + PER_METHOD.get(method, []) + PER_CASE.get((method, dataset), [])


def _epoch_losses(store: Store, run_id: str) -> list[float]:
    rows = [r for r in store.measurements(run_id) if r["name"] == "train_epoch_loss"]
    return [r["value"] for r in sorted(rows, key=lambda r: int(r["protocol"].split()[0].split("=")[1]))]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_its_loss_and_beats_random_init(store, method, dataset):
    cfg = load_config(f"quick-{method}-{dataset}", _overrides(method, dataset))
    record = train(cfg, store, progress=False)
    losses = _epoch_losses(store, record.id)
    assert len(losses) == cfg.optim.epochs and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"{method} loss did not fall: {losses}"
    trained = {n: v for n, v, _ in evaluate(record, store)}
    random = {n: v for n, v, _ in evaluate(record, store, random_init=True)}
    assert trained["knn_accuracy"] > random["knn_accuracy"], f"kNN {trained['knn_accuracy']:.3f} vs random-init {random['knn_accuracy']:.3f}"


def _state(store: Store, run_id: str) -> dict:
    return load_file(str(store.run_dir(run_id) / "state.safetensors"))


@pytest.mark.parametrize("method,extra", [
    ("robust_cl", {"encoder__dual_bn": True, "method__steps": 2, "method__adaptive": True, "method__rho": 0.5}),
    ("two_network", {"method__full_batch": True}),
])
def test_robust_and_two_network_runs_resume_bitwise(tmp_path, monkeypatch, method, extra):
    cfg = config_from_dict(tiny_raw(method__name=method, optim__epochs=3, data__n_train=64, **extra))
    full, store, record = train_full_and_resumed(cfg, tmp_path, monkeypatch)
    assert record.status == "done"
    a, b = _state(full, record.id), _state(store, record.id)
    # the state holds the discriminator / the key network and the optimizer, and all match
    extra_net = "model.discriminator.weight" if method == "robust_cl" else "model.key.backbone.1.weight"
    assert extra_net in a and any(k.startswith("optim.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = {(r["name"], r["protocol"]): r["value"] for r in full.measurements(record.id) if r["name"] != "train_wall_s" and "per_s" not in r["name"]}
    rows_b = {(r["name"], r["protocol"]): r["value"] for r in store.measurements(record.id) if r["name"] != "train_wall_s" and "per_s" not in r["name"]}
    assert rows_a == rows_b


def test_two_network_logs_gradient_norm_and_weight_movement_every_step(store):
    cfg = config_from_dict(tiny_raw(method__name="two_network", method__full_batch=True, method__fixed_views=True, optim__momentum=0.0, optim__epochs=4, data__n_train=64))
    record = train(cfg, store, progress=False)
    rows = store.measurements(record.id)
    grad = {int(r["protocol"].split()[0][5:]): r["value"] for r in rows if r["name"] == "train_gradient_norm"}
    move = {int(r["protocol"].split()[0][5:]): r["value"] for r in rows if r["name"] == "train_weight_movement"}
    assert sorted(grad) == sorted(move) == [0, 1, 2, 3]  # full batch: one step per epoch
    assert move[0] == 0.0 and all(move[t] > 0 for t in (1, 2, 3))
    by_name = {r["name"]: r for r in rows}
    assert by_name["min_gradient_norm"]["value"] == min(grad.values())
    assert by_name["weight_movement"]["value"] > move[3] and "full-batch" in by_name["weight_movement"]["protocol"]

    # step 0's logged norm is theory.optimization's full-batch gradient norm at the initial weights
    torch.manual_seed(cfg.seed)
    data = load_run_data(cfg)
    nets = build_networks(cfg, data.image_shape).train()
    g = epoch_generator(cfg.seed, 0)
    x = data.x_train[torch.randperm(data.x_train.shape[0], generator=g)]
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    views = [augment(x, g), augment(x, g)]
    loss_fn = ssl_loss(cfg)
    expected = full_batch_gradient_norm(nets, lambda model, b: method_losses(cfg, model, b, loss_fn)[0], [views])
    assert grad[0] == pytest.approx(expected, rel=1e-5)
    # the saved encoder is the query network, and random-init rebuilds its Gaussian start
    init = load_encoder(record, data.image_shape, random_init=True)
    assert all(torch.equal(p, q) for p, q in zip(init.state_dict().values(), nets["encoder"].state_dict().values()))


def test_imbalanced_data_and_dual_bn_encoder_load_for_probes_and_measure(store):
    cfg = config_from_dict(tiny_raw(method__name="robust_cl", encoder__dual_bn=True, data__imbalanced=True, method__steps=1, optim__epochs=1,
                                    measure={"n_samples": 32, "batch_size": 16, "attack_steps": 2}))
    data = load_run_data(cfg)
    assert torch.bincount(data.y_train, minlength=4).tolist() == [8, 16, 24, 32]
    record = train(cfg, store, progress=False)
    rows = {n: v for n, v, _ in measure(record, store, ["adversarial"])}
    assert 0 <= rows["robust_accuracy"] <= rows["clean_accuracy"] <= 1
    assert {n for n, _, _ in evaluate(record, store)} >= {"knn_accuracy", "linear_accuracy"}
