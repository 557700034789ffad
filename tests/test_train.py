import math

import pytest
import torch

import clbounds.experiments.training.loop as train_mod
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.training.optim import LARS, cosine_lr
from clbounds.experiments.store.db import Store
from clbounds.experiments.training.loop import DivergenceError, train

from conftest import tiny_raw, train_full_and_resumed


def _weights(store: Store, run_id: str) -> dict:
    from safetensors.torch import load_file
    return load_file(str(store.run_dir(run_id) / "encoder.safetensors"))


@pytest.mark.parametrize("method,optim", [("simclr", "sgd"), ("barlow_twins", "lars"), ("simclr", "adam")])
def test_training_is_deterministic_with_a_seed(tmp_path, method, optim):
    cfg = config_from_dict(tiny_raw(method__name=method, optim__name=optim, optim__epochs=2))
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ra, rb = train(cfg, a, progress=False), train(cfg, b, progress=False)
    assert ra.id == rb.id and ra.status == "done"
    wa, wb = _weights(a, ra.id), _weights(b, rb.id)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = {r["name"]: r for r in a.measurements(ra.id)}
    assert math.isfinite(rows["train_loss"]["value"]) and method in rows["train_loss"]["protocol"]
    assert rows["train_views_per_s"]["value"] > 0


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = config_from_dict(tiny_raw(optim__epochs=3))
    full, store, record = train_full_and_resumed(cfg, tmp_path, monkeypatch)
    assert record.status == "done"
    w_full, w_resumed = _weights(full, record.id), _weights(store, record.id)
    assert all(torch.equal(w_full[k], w_resumed[k]) for k in w_full)
    # the per-epoch log has one row per epoch, the interrupted epoch not repeated, the losses of the uninterrupted run
    import pandas as pd

    resumed, uninterrupted = pd.read_csv(store.run_dir(record.id) / "metrics.csv"), pd.read_csv(full.run_dir(record.id) / "metrics.csv")
    assert resumed["epoch"].tolist() == [1, 2, 3] and list(resumed.columns) == ["epoch", "loss", "lr", "epoch_seconds", "views_per_s"]
    assert resumed["loss"].tolist() == uninterrupted["loss"].tolist()


def test_a_finished_run_is_skipped(tmp_path, monkeypatch):
    cfg = config_from_dict(tiny_raw(optim__epochs=1))
    store = Store(tmp_path)
    train(cfg, store, progress=False)
    monkeypatch.setattr(train_mod, "load_run_data", lambda cfg: pytest.fail("a finished run was trained again"))
    assert train(cfg, store, progress=False).status == "done"


def test_divergence_marks_the_run_failed_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = config_from_dict(tiny_raw(optim__epochs=3))
    store = Store(tmp_path)
    real_loss = train_mod.ssl_loss(cfg)
    calls = {"n": 0}
    steps_per_epoch = 128 // 32

    def loss_that_diverges(z1, z2):
        calls["n"] += 1
        loss = real_loss(z1, z2)
        return loss * float("nan") if calls["n"] > steps_per_epoch + 1 else loss

    monkeypatch.setattr(train_mod, "ssl_loss", lambda cfg: loss_that_diverges)
    with pytest.raises(DivergenceError, match=r"non-finite at step 5 \(epoch 2\); the checkpoint after epoch 1 was kept"):
        train(cfg, store, progress=False)
    record = store.get_run(cfg.run_id())
    assert record.status == "failed" and "step 5" in record.message
    weights = _weights(store, record.id)
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_cosine_schedule_with_warmup():
    lrs = [cosine_lr(s, 100, 0.4, warmup_steps=10) for s in range(101)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert lrs[10] == pytest.approx(0.4) and lrs[55] == pytest.approx(0.2) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_lars_step_matches_trust_ratio_closed_form():
    w = torch.nn.Parameter(torch.full((2, 2), 2.0, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    w.grad, b.grad = torch.full((2, 2), 0.5, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    LARS([w, b], lr=0.1, momentum=0.9, weight_decay=0.0, trust_coefficient=0.01).step()
    # ‖w‖ = 4, ‖g‖ = 1: the step is lr · 0.01 · 4 / 1 · g; biases take a plain SGD step
    assert torch.allclose(w, torch.full((2, 2), 2.0 - 0.1 * 0.04 * 0.5, dtype=torch.float64))
    assert torch.allclose(b, torch.full((2,), 1.0 - 0.1 * 0.5, dtype=torch.float64))


@pytest.mark.slow
def test_compiled_training_matches_eager_and_shares_the_run_id(tmp_path):
    # torch.compile is a speed option: the same run (id), the same checkpoint keys, and the
    # same weights up to the reordering of float32 arithmetic that fusion brings.
    eager_cfg = config_from_dict(tiny_raw(optim__epochs=1))
    compiled_cfg = config_from_dict(tiny_raw(optim__epochs=1, compile=True))
    assert compiled_cfg.run_id() == eager_cfg.run_id()
    a, b = Store(tmp_path / "eager"), Store(tmp_path / "compiled")
    ra, rb = train(eager_cfg, a, progress=False), train(compiled_cfg, b, progress=False)
    wa, wb = _weights(a, ra.id), _weights(b, rb.id)
    assert rb.status == "done" and wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-3, atol=1e-4) for k in wa)
