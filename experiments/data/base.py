"""What every dataset module shares: the split as uint8 tensors, and the declaration of a dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .synthetic import SyntheticGenerator


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


#: ``load(root, image_size, num_classes, n_train, n_test, seed, synthetic, download)``: the
#: arguments of :func:`clbounds.experiments.data.load_dataset`, by keyword.
Loader = Callable[..., ImageDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: how to load it and what an encoder of it needs to know.

    ``side`` is the image side: the default of a resizable dataset (``data.image_size``
    overrides it), the fixed size of the files otherwise. ``channel_stats`` are the per-channel
    (mean, std) that the encoders normalise their input with: measured once on the training
    split for the generated and bundled data, the usual values for CIFAR and STL.
    """

    name: str
    side: int
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]]
    load: Loader
    resizable: bool = False
