"""STL-10 (Coates, Ng and Lee 2011) read from the standard binary files.

Layout under the data root, exactly as ``stl10_binary.tar.gz`` unpacks:

    ROOT/stl10_binary/train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin

An ``*_X.bin`` file is raw uint8 images back to back, 3·96·96 bytes each: the R, G and B
planes in turn, each stored column-major (MATLAB order), so a plane must be transposed to
get [h, w]. A ``*_y.bin`` file is one uint8 label per image in 1..10. Images come back as
uint8 [N, 3, 96, 96] and labels as int64 [N] in 0..9, or −1 for the unlabeled split.

Nothing here is unpickled: the files are plain bytes. Missing files are downloaded through
torchvision when it is installed and ``download=True``, exactly as for CIFAR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DatasetSpec, ImageDataset
from .cifar import DatasetFormatError, _ensure_files

__all__ = ["load_stl10", "STL10_URL", "STL10_SPLITS"]

STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
_STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"  # the same value torchvision checks
STL10_FOLDER = "stl10_binary"
STL10_SPLITS = ("train", "test", "unlabeled")

_STL_SIDE = 96
_STL_IMAGE_BYTES = 3 * _STL_SIDE * _STL_SIDE


def _read_stl_images(path: Path) -> torch.Tensor:
    """Read an ``*_X.bin`` file into uint8 [N, 3, 96, 96], validated against truncation."""
    size = path.stat().st_size
    if size == 0 or size % _STL_IMAGE_BYTES:
        raise DatasetFormatError(
            f"{path}: {size} bytes is not a positive multiple of 3·96·96 = {_STL_IMAGE_BYTES} bytes per "
            "image; the file is truncated or not an STL-10 image file; extract the archive again"
        )
    n = size // _STL_IMAGE_BYTES
    # Map rather than read, so the only large allocation is the transposed copy
    # (the unlabeled split alone is 2.7 GB).
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, _STL_SIDE, _STL_SIDE))
    try:
        # Planes are column-major: the file's [c, w, h] becomes [c, h, w].
        images = np.array(raw.transpose(0, 1, 3, 2), order="C")
    finally:
        del raw
    return torch.from_numpy(images)


def _read_stl_labels(path: Path, num_images: int, images_path: Path) -> torch.Tensor:
    """Read a ``*_y.bin`` file (1..10) into int64 labels 0..9, checked against the image count."""
    labels = np.fromfile(path, dtype=np.uint8)
    if labels.shape[0] != num_images:
        raise DatasetFormatError(f"{path}: {labels.shape[0]} labels but {images_path} holds {num_images} images")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DatasetFormatError(f"{path}: labels range over [{labels.min()}, {labels.max()}], expected 1..10")
    return torch.from_numpy(labels.astype(np.int64) - 1)


def load_stl10(root: str | Path, split: str, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10 (Coates et al. 2011): 96×96 colour images; 5,000 train, 8,000 test, 100,000 unlabeled.

    Args:
        root: data root that holds (or will hold) ``stl10_binary/``.
        split: ``"train"``, ``"test"`` or ``"unlabeled"``.
        download: when files are missing, try the official archive (2.6 GB) through torchvision.

    Returns:
        images uint8 [N, 3, 96, 96] (channel-first, upright) and labels int64 [N]: the on-disk
        1..10 shifted to 0..9, or all −1 for ``"unlabeled"``.

    Raises:
        DatasetNotFoundError: a file is missing and could not be downloaded.
        DatasetFormatError: a file is truncated or labels do not match the images.

    Example:
        >>> images, labels = load_stl10("~/data", split="test")  # doctest: +SKIP
        >>> images.shape, int(labels.min()), int(labels.max())
        (torch.Size([8000, 3, 96, 96]), 0, 9)
    """
    if split not in STL10_SPLITS:
        raise ValueError(f"split must be one of {STL10_SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    folder = root / STL10_FOLDER
    images_path = folder / f"{split}_X.bin"
    labels_path = None if split == "unlabeled" else folder / f"{split}_y.bin"
    paths = [images_path] if labels_path is None else [images_path, labels_path]
    _ensure_files(paths, root, download, dataset="STL-10", url=STL10_URL, md5=_STL10_MD5, folder=STL10_FOLDER)
    images = _read_stl_images(images_path)
    if labels_path is None:
        return images, torch.full((images.shape[0],), -1, dtype=torch.int64)
    return images, _read_stl_labels(labels_path, images.shape[0], images_path)


def _load(*, root: str | Path, download: bool, **_: object) -> ImageDataset:
    return ImageDataset("stl10", *load_stl10(root, split="train", download=download), *load_stl10(root, split="test", download=download), num_classes=10)


STL10 = DatasetSpec("stl10", side=96, channel_stats=((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)), load=_load)
