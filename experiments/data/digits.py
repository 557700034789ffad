"""scikit-learn's bundled 8×8 handwritten digits: a real dataset that needs no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sklearn_digits

from .base import DatasetSpec, ImageDataset


def load_digits(image_size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 1797 digits as 3-channel uint8 images, resized, split stratified by class.

    The 0–16 grey levels are scaled to 0–255, upsampled bilinearly to ``image_size`` and
    repeated over three channels, so colour augmentations and CIFAR-shaped encoders apply
    unchanged.

    Returns:
        x_train, y_train, x_test, y_test with x uint8 [N, 3, S, S] and y int64 [N].

    Example:
        >>> x_tr, y_tr, x_te, y_te = load_digits(image_size=8)
        >>> x_tr.shape[1:], len(x_tr) + len(x_te)
        (torch.Size([3, 8, 8]), 1797)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = _sklearn_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))

    # Stratified split: the same fraction of every class goes to the test set.
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for k in np.unique(bunch.target):
        idx = rng.permutation(np.flatnonzero(bunch.target == k))
        test[idx[: int(round(test_fraction * len(idx)))]] = True
    test_t = torch.from_numpy(test)
    return x[~test_t], y[~test_t], x[test_t], y[test_t]


def _load(*, image_size: int | None, seed: int, **_: object) -> ImageDataset:
    return ImageDataset("digits", *load_digits(image_size=image_size or SPEC.side, seed=seed), num_classes=10)


SPEC = DatasetSpec("digits", side=16, channel_stats=((0.30, 0.30, 0.30), (0.32, 0.32, 0.32)), load=_load, resizable=True)
