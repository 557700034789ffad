"""Datasets as uint8 image tensors [N, C, H, W] with int64 labels.

`load_dataset(name, ...)` is the one entry point. The embedded defaults (`synthetic`,
`digits`) need no files; `cifar10`, `cifar100` and `stl10` read the standard files under
``root``.

A layer of its own beside ``store/``: may import ``config`` and ``errors`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cifar import DatasetFormatError
from .synthetic import SyntheticGenerator, SyntheticSample

DATASETS = ("synthetic", "digits", "cifar10", "cifar100", "stl10")
#: Image side of each dataset: the default for the generated/resized ones (``image_size``
#: overrides it), the fixed size of the files for the others.
IMAGE_SIDES = {"synthetic": 32, "digits": 16, "cifar10": 32, "cifar100": 32, "stl10": 96}
RESIZABLE = ("synthetic", "digits")

# Per-channel statistics for input normalisation inside the encoders. For the generated and
# bundled data they were measured once on the training split; CIFAR/STL are the usual values.
CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "synthetic": ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
    "digits": ((0.30, 0.30, 0.30), (0.32, 0.32, 0.32)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
}


@dataclass
class ImageDataset:
    """A train/test split of uint8 images, plus the generator when the data is synthetic."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    generator: SyntheticGenerator | None = None
    train_main: torch.Tensor | None = field(default=None, repr=False)  # synthetic ground truth

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ImageDataset":
        """Moves the images and labels (kept as uint8) to ``device``."""
        for name in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, name, getattr(self, name).to(device))
        return self


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
        name: one of ``DATASETS``.
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
    data = _load(name, root, image_size, num_classes, n_train, n_test, seed, synthetic, download)
    for split in ("train", "test"):
        if getattr(data, f"x_{split}").shape[0] == 0:  # nothing to train on or to test: fail here, not in a later division by zero
            raise DatasetFormatError(f"{name} under {root}: the {split} split holds no images")
    return data


def _load(name: str, root: str | Path, image_size: int | None, num_classes: int, n_train: int, n_test: int,
          seed: int, synthetic: dict | None, download: bool) -> ImageDataset:
    if name == "synthetic":
        gen = SyntheticGenerator(num_classes=num_classes, image_size=image_size or IMAGE_SIDES["synthetic"], seed=seed, **(synthetic or {}))
        g = torch.Generator().manual_seed(seed + 1)
        train = gen.sample(gen.balanced_labels(n_train, g), g)
        test = gen.sample(gen.balanced_labels(n_test, g), g)
        return ImageDataset(name, train.x, train.y, test.x, test.y, num_classes, generator=gen, train_main=train.main)
    if name == "digits":
        from .digits import load_digits

        return ImageDataset(name, *load_digits(image_size=image_size or IMAGE_SIDES["digits"], seed=seed), num_classes=10)
    if name in ("cifar10", "cifar100"):
        from .cifar import load_cifar10, load_cifar100

        load = load_cifar10 if name == "cifar10" else load_cifar100
        x_tr, y_tr = load(root, train=True, download=download)
        x_te, y_te = load(root, train=False, download=download)
        return ImageDataset(name, x_tr, y_tr, x_te, y_te, num_classes=10 if name == "cifar10" else 100)
    if name == "stl10":
        from .stl import load_stl10

        x_tr, y_tr = load_stl10(root, split="train", download=download)
        x_te, y_te = load_stl10(root, split="test", download=download)
        return ImageDataset(name, x_tr, y_tr, x_te, y_te, num_classes=10)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


__all__ = ["CHANNEL_STATS", "DATASETS", "IMAGE_SIDES", "RESIZABLE", "ImageDataset", "SyntheticGenerator", "SyntheticSample", "load_dataset"]
