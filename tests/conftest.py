"""Shared fixtures: tiny configs that train in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch

from experiments.config import Config, config_from_dict
from experiments.store import Store

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


@pytest.fixture
def tiny_config() -> Config:
    return config_from_dict(tiny_raw())


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")
