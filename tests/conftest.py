"""Shared fixtures: tiny configs that train in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from clbounds.experiments.config import Config, config_from_dict
from clbounds.experiments.store.db import Store

torch.set_num_threads(2)


def tiny_raw(**overrides) -> dict:
    """A config small enough to train for a few epochs in about a second."""
    raw = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {"name": "synthetic", "image_size": 16, "num_classes": 4, "n_train": 128, "n_test": 64},
        "augment": "ae",
        "encoder": {"arch": "mlp", "width": 0.125, "proj_hidden": 32, "proj_dim": 16},
        "method": {"name": "simclr", "temperature": 0.5},
        "optim": {"name": "sgd", "lr": 0.05, "epochs": 3, "batch_size": 32},
        "eval": {"knn_k": 10, "linear_steps": 20},
    }
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return raw


#: CLI overrides for a run that trains in about a second: a narrow MLP on 8×8 synthetic images
#: of 4 classes (add the sizes and epochs a test needs).
TINY_ARGS = ["device=cpu", "data.num_classes=4", "data.image_size=8", "augment=ae", "encoder.arch=mlp",
             "encoder.width=0.125", "encoder.proj_hidden=16", "encoder.proj_dim=8"]


@pytest.fixture
def tiny_config() -> Config:
    return config_from_dict(tiny_raw())


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


# The cheapest measure settings that still exercise every term group.
CHEAP_MEASURE = {"n_samples": 32, "batch_size": 16, "views": 2, "sigma_per_class": 4, "hessian_iters": 2, "trace_samples": 1, "sharpness_steps": 1, "attack_steps": 1}


def trained_tiny(store: Store):
    """The tiny config with ``CHEAP_MEASURE``, trained into ``store``; returns its record."""
    from clbounds.experiments.training.loop import train

    raw = tiny_raw()
    raw["measure"] = dict(CHEAP_MEASURE)
    return train(config_from_dict(raw), store, progress=False)


def train_full_and_resumed(cfg: Config, tmp_path: Path, monkeypatch):
    """Trains ``cfg`` uninterrupted into ``tmp_path/full``, and into ``tmp_path/cut`` with a
    KeyboardInterrupt right after the first epoch's checkpoint, then resumes the latter.

    Returns (full store, resumed store, the resumed record)."""
    import clbounds.experiments.training.loop as train_mod

    full = Store(tmp_path / "full")
    train_mod.train(cfg, full, progress=False)
    store = Store(tmp_path / "cut")
    real_save = train_mod.save_weights
    calls = {"n": 0}

    def save_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # killed after the first epoch's checkpoint
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(train_mod, "save_weights", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, store, progress=False)
    record = store.get_run(cfg.run_id())
    assert record.status == "failed" and record.message.startswith("interrupted; the last completed epoch's checkpoint is kept")
    monkeypatch.setattr(train_mod, "save_weights", real_save)
    return full, store, train_mod.train(cfg, store, progress=False)


def write_tiny_preset(tmp_path: Path, runs: list[dict], views: int = 2) -> Path:
    """A verify/reproduce preset over the tiny ConvNet config with the cheapest measure settings."""
    base = tmp_path / "tiny.yaml"
    raw = tiny_raw(encoder__arch="convnet", optim__epochs=1)
    raw["data"]["n_test"] = 32
    base.write_text(yaml.safe_dump(raw))
    measure = [f"measure.{k}={v}" for k, v in (CHEAP_MEASURE | {"views": views}).items()]
    path = tmp_path / "tiny-preset.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "base": str(base), "common": [], "measure": measure, "runs": runs}))
    return path


def huang_terms(**over: float) -> dict[str, float]:
    """Measured terms that satisfy every input of bounds.huang2023, with ``over`` replaced."""
    t = {
        "nearest_center_error": 0.2, "sigma": 0.9, "misalignment_rate": 0.05, "min_class_probability": 0.1, "lipschitz_upper": 50.0,
        "feature_norm_min": 2.0, "sigma_delta": 0.01, "misalignment_eps": 0.3, "center_max_inner": 0.1, "delta_mu": 0.4,
        "alignment": 0.1, "misalignment_views": 4, "misalignment_rate_pairwise": 0.02,
        "nearest_center_error_projection": 0.25, "misalignment_rate_projection": 0.1, "center_max_inner_projection": 0.2, "delta_mu_projection": 0.3,
        "alignment_projection": 0.2, "lipschitz_upper_projector": 3.0, "projection_norm_min": 1.5,
        "huang_infonce_L1_unit": -0.8, "huang_infonce_L2_unit": 4.0, "huang_barlow_L1": 2.0, "huang_barlow_L2": 40.0, "embedding_dim": 64, "num_classes": 10,
    }
    return {**t, **over}
