"""Your own data: a NumPy archive (``npz``) or a folder of images, one sub-folder per class (``folder``).

The path is ``data.root``; from the command line ``--data npz:PATH`` or ``--data folder:PATH``
(``clbounds import``), or ``data.name=folder data.root=PATH`` as a config override.

- ``npz``: arrays ``x_train, y_train, x_test, y_test``; images uint8 (0–255) or floats in
  [0, 1], as [N, C, H, W] or [N, H, W, C] with C = 1 or 3 (grey is repeated to three
  channels), square; labels integers 0 … K−1. Read with ``allow_pickle=False``.
- ``folder``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``, or ``PATH/<class>/*`` split
  per class (a fifth to the test set, drawn with the run's seed). Classes are the sub-folder
  names in sorted order. PNG, JPEG, BMP, GIF and WebP are decoded by Pillow (matplotlib's
  own dependency), converted to RGB and resized (bilinear) to ``data.image_size`` (default 32).

Both are untrusted input, checked on entry before anything large is allocated: the archive's
member sizes, the number of files, each file's size and pixel count (decompression bombs),
dtypes, shapes, value ranges and labels. A problem is a :class:`DatasetFormatError` naming
the file and what is wrong.

The encoder normalises user images with mean 0.5 and std 0.25 per channel: their statistics
are not known before they are read, and the BatchNorm after the first layer absorbs the choice
(the certified Lipschitz bound includes the 1/0.25).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import DatasetSpec, ImageDataset
from .cifar import DatasetFormatError, DatasetNotFoundError

MAX_IMAGES = 2_000_000  # per split
MAX_ARRAY_BYTES = 8 << 30  # one array of an archive, uncompressed
MAX_FILE_BYTES = 64 << 20  # one image file
MAX_PIXELS = 50_000_000  # one decoded image (Pillow's own bomb limit is 89M and only warns)
MAX_CLASSES = 100_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEST_FRACTION = 0.2
DEFAULT_SIDE = 32
USER_STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _to_images(x: np.ndarray, name: str, path: Path) -> torch.Tensor:
    """uint8 [N, 3, S, S] from an archive array; a clear error for anything else."""
    if x.ndim != 4:
        raise DatasetFormatError(f"{path}: {name} has shape {x.shape}; expected [N, C, H, W] or [N, H, W, C]")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 1)
    n, c, h, w = x.shape
    if c not in (1, 3) or h != w or h < 4:
        raise DatasetFormatError(f"{path}: {name} has shape {tuple(x.shape)}; expected square images with 1 or 3 channels, at least 4 pixels a side")
    if x.dtype == np.uint8:
        out = torch.from_numpy(np.ascontiguousarray(x))
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DatasetFormatError(f"{path}: {name} has non-finite values")
        if x.min(initial=0.0) < 0 or x.max(initial=0.0) > 1:
            raise DatasetFormatError(f"{path}: {name} has float values outside [0, 1] (range {x.min():g} to {x.max():g}); give uint8 0-255 or floats in [0, 1]")
        out = torch.from_numpy(np.round(x.astype(np.float32) * 255)).to(torch.uint8)
    else:
        raise DatasetFormatError(f"{path}: {name} has dtype {x.dtype}; expected uint8 or a float type")
    return out.expand(-1, 3, -1, -1).contiguous() if c == 1 else out


def _to_labels(y: np.ndarray, name: str, path: Path, n: int) -> torch.Tensor:
    if y.ndim != 1 or y.shape[0] != n:
        raise DatasetFormatError(f"{path}: {name} has shape {y.shape}; expected [{n}], one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetFormatError(f"{path}: {name} has dtype {y.dtype}; expected integer class indices")
    if n and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DatasetFormatError(f"{path}: {name} has labels from {y.min()} to {y.max()}; expected 0 to K-1 with K <= {MAX_CLASSES}")
    return torch.from_numpy(y.astype(np.int64))


def _resize(x: torch.Tensor, side: int | None) -> torch.Tensor:
    if side is None or x.shape[-1] == side:
        return x
    return F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255).to(torch.uint8)


def load_npz(path: str | Path, image_size: int | None = None) -> ImageDataset:
    """The four arrays of a ``.npz`` archive, checked (see the module docstring).

    Examples:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(f, x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.array([0, 1, 0, 1]),
        ...          x_test=np.ones((2, 3, 8, 8), np.float32), y_test=np.array([0, 1]))
        >>> ds = load_npz(f)
        >>> tuple(ds.x_train.shape), ds.num_classes, int(ds.x_test.max())
        ((4, 3, 8, 8), 2, 255)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no .npz file at {path} (data.root); it holds x_train, y_train, x_test, y_test")
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename.removesuffix(".npy"): info.file_size for info in archive.infolist()}
    except zipfile.BadZipFile:
        raise DatasetFormatError(f"{path} is not a .npz archive (np.savez writes one)") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in sizes]
    if missing:
        raise DatasetFormatError(f"{path} has no {', '.join(missing)}; it holds {', '.join(sorted(sizes)) or 'nothing'}")
    big = [k for k in ("x_train", "y_train", "x_test", "y_test") if sizes[k] > MAX_ARRAY_BYTES]
    if big:
        raise DatasetFormatError(f"{path}: {big[0]} is {sizes[big[0]]} bytes uncompressed, above the limit of {MAX_ARRAY_BYTES}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            raw = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except ValueError as err:  # an object array needs pickle: refused
        raise DatasetFormatError(f"{path}: {err}") from None
    split = {}
    for s in ("train", "test"):
        x = _to_images(raw[f"x_{s}"], f"x_{s}", path)
        if x.shape[0] > MAX_IMAGES:
            raise DatasetFormatError(f"{path}: x_{s} has {x.shape[0]} images, above the limit of {MAX_IMAGES}")
        split[s] = (_resize(x, image_size), _to_labels(raw[f"y_{s}"], f"y_{s}", path, x.shape[0]))
    if split["train"][0].shape[1:] != split["test"][0].shape[1:]:
        raise DatasetFormatError(f"{path}: train images are {tuple(split['train'][0].shape[1:])} and test images {tuple(split['test'][0].shape[1:])}; give data.image_size to resize both")
    k = max((int(y.max()) + 1 for _, y in split.values() if y.numel()), default=0)
    if k < 2:
        raise DatasetFormatError(f"{path}: the labels name {k} class(es); a classification needs at least 2")
    return ImageDataset("npz", *split["train"], *split["test"], num_classes=k)


def _read_image(path: Path, side: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DatasetFormatError(f"{path} is {size} bytes, above the limit of {MAX_FILE_BYTES} for one image")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:  # read from the header, before decoding
                raise DatasetFormatError(f"{path} declares {img.width}x{img.height} pixels, above the limit of {MAX_PIXELS}")
            rgb = img.convert("RGB").resize((side, side), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise DatasetFormatError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) > MAX_CLASSES:
        raise DatasetFormatError(f"{root} has {len(classes)} class folders, above the limit of {MAX_CLASSES}")
    out, count = {}, 0
    for c in classes:
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        count += len(files)
        if count > MAX_IMAGES:
            raise DatasetFormatError(f"{root} holds more than {MAX_IMAGES} images")
        out[c] = files
    return out


def load_folder(path: str | Path, image_size: int | None = None, seed: int = 0, test_fraction: float = TEST_FRACTION) -> ImageDataset:
    """Images in one sub-folder per class, under ``train/`` and ``test/`` or split per class
    (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetNotFoundError(f"no folder at {root} (data.root); put one sub-folder of images per class there, or train/ and test/ with those")
    side = image_size or DEFAULT_SIDE
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _class_files(root / "train"), _class_files(root / "test")
        if sorted(train) != sorted(test):
            raise DatasetFormatError(f"{root}: train/ has classes {sorted(train)} and test/ has {sorted(test)}; they must be the same")
    else:
        files = _class_files(root)
        g = np.random.default_rng(seed)
        train, test = {}, {}
        for c, fs in files.items():
            order = g.permutation(len(fs))
            n_test = int(round(test_fraction * len(fs))) if len(fs) > 1 else 0
            test[c] = [fs[i] for i in sorted(order[:n_test])]
            train[c] = [fs[i] for i in sorted(order[n_test:])]
    classes = sorted(train)
    if len(classes) < 2:
        raise DatasetFormatError(f"{root}: found {len(classes)} class folder(s) with images; a classification needs at least 2")

    def read(split: dict[str, list[Path]]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [(f, k) for k, c in enumerate(classes) for f in split[c]]
        x = torch.stack([_read_image(f, side) for f, _ in pairs]) if pairs else torch.zeros(0, 3, side, side, dtype=torch.uint8)
        return x, torch.tensor([k for _, k in pairs], dtype=torch.int64)

    return ImageDataset("folder", *read(train), *read(test), num_classes=len(classes))


def _load_npz(*, root: str | Path, image_size: int | None, **_: object) -> ImageDataset:
    return load_npz(root, image_size)


def _load_folder(*, root: str | Path, image_size: int | None, seed: int, **_: object) -> ImageDataset:
    return load_folder(root, image_size, seed)


NPZ = DatasetSpec("npz", side=DEFAULT_SIDE, channel_stats=USER_STATS, load=_load_npz, resizable=True)
FOLDER = DatasetSpec("folder", side=DEFAULT_SIDE, channel_stats=USER_STATS, load=_load_folder, resizable=True)
