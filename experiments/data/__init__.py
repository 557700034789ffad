"""Datasets as uint8 image tensors [N, C, H, W] with int64 labels.

`load_dataset(name, ...)` is the one entry point. The embedded defaults (`synthetic`,
`digits`) need no files; `cifar10`, `cifar100` and `stl10` read the standard files under
``root``. Each dataset is a :class:`DatasetSpec` in its own module (loader, image side,
channel statistics), registered by one line in ``experiments/catalog.py``: one module and
one line add a dataset.

A layer of its own beside ``store/``: may import the base layer (``config``, ``errors``, ``catalog``) only.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..catalog import DATASETS as _REGISTRY, dataset_names
from .base import DatasetSpec, ImageDataset
from .cifar import DatasetFormatError
from .synthetic import SyntheticGenerator, SyntheticSample


def dataset_spec(name: str) -> DatasetSpec:
    """The declaration of the registered dataset ``name``, its module imported on first use."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(_REGISTRY)}")
    module, attr = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)


def load_dataset(
    name: str,
    root: str | Path = "data",
    image_size: int | None = None,
    num_classes: int = 10,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
    synthetic: dict | None = None,
    download: bool = True,
) -> ImageDataset:
    """Loads a dataset by name.

    Args:
        name: a registered dataset (:func:`dataset_names`).
        root: data root for the on-disk datasets.
        image_size: for `synthetic` and `digits`, the side of the square images.
        num_classes, n_train, n_test: for `synthetic`.
        seed: fixes the generated data and the digits split.
        synthetic: extra keyword arguments for :class:`SyntheticGenerator` (shift, contrast,
            noise, main_fraction, outlier_scale).

    Example:
        >>> ds = load_dataset("synthetic", image_size=16, n_train=100, n_test=20)
        >>> ds.x_train.shape, ds.num_classes
        (torch.Size([100, 3, 16, 16]), 10)
    """
    data = dataset_spec(name).load(root=root, image_size=image_size, num_classes=num_classes, n_train=n_train, n_test=n_test, seed=seed,
                                   synthetic=synthetic, download=download)
    for split in ("train", "test"):
        if getattr(data, f"x_{split}").shape[0] == 0:  # nothing to train on or to test: fail here, not in a later division by zero
            raise DatasetFormatError(f"{name} under {root}: the {split} split holds no images")
    return data


__all__ = ["DatasetFormatError", "DatasetSpec", "ImageDataset", "SyntheticGenerator", "SyntheticSample", "dataset_names", "dataset_spec", "load_dataset"]
