"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) read from the standard "python version" files.

Layout under the data root, exactly as the official archives unpack:

    ROOT/cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch
    ROOT/cifar-100-python/train, test

Each file is a pickled dict with a uint8 ``data`` array [n, 3072] (the R, G and B planes of a
32×32 image, each row-major) and its labels. Images come back as uint8 [N, 3, 32, 32] and
labels as int64 [N].

Security: dataset pickles are read only from the user's own data root, never from a URL, and
only through :class:`_CifarUnpickler`, which resolves nothing but builtin containers and the
few numpy functions that rebuild an array. Anything else in the stream (``os.system``,
``eval``, an arbitrary class) is refused before it can run, and the load fails with
:class:`DatasetFormatError`.

When files are missing and ``download=True``, the official archive is fetched through
torchvision's downloader if torchvision is installed (it is an optional dependency); otherwise
:class:`DatasetNotFoundError` says which file is expected where and how to get it.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .base import DatasetSpec, ImageDataset

__all__ = [
    "DatasetNotFoundError",
    "DatasetFormatError",
    "load_cifar10",
    "load_cifar100",
    "CIFAR10_URL",
    "CIFAR100_URL",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# MD5 of the official archives (the same values torchvision checks).
_CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"

_CIFAR_SIDE = 32
_CIFAR_ROW = 3 * _CIFAR_SIDE * _CIFAR_SIDE


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message names the expected path and how to get it."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is truncated, corrupt or not in the standard format."""


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    # Protocol < 3 pickles store bytes as _codecs.encode(str, "latin1"); allow only that use,
    # not an arbitrary codec call.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode call other than encode(str, 'latin1')")
    return text.encode("latin1")


# The functions numpy's ndarray/scalar pickling refers to, taken from live objects so the
# table is right for numpy 1.x (numpy.core) and 2.x (numpy._core) without importing a
# deprecated module path.
_RECONSTRUCT_NUMPY = np.zeros(0).__reduce__()[0]


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle. numpy's pickles only pass the type to
    ``_reconstruct``; called itself, ``ndarray((10**6, 10**6))`` would allocate whatever a
    crafted file asks, so here it cannot be called."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("refused to call numpy.ndarray: a CIFAR batch only names it for _reconstruct")


_NDARRAY = _NdarrayType()


def _RECONSTRUCT(subtype: Any, shape: Any, dtype: Any) -> Any:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and fills it in
    # __setstate__, which checks the data's length against the shape before allocating; a
    # crafted file could instead ask _reconstruct itself for an array of any size.
    if subtype is not _NDARRAY or shape != (0,):
        raise pickle.UnpicklingError(f"refused numpy _reconstruct of {subtype!r} with shape {shape!r}: numpy writes (ndarray, (0,)) and sets the data afterwards")
    return _RECONSTRUCT_NUMPY(np.ndarray, shape, dtype)


def _sized(kind: type) -> Any:
    """``bytes``/``bytearray`` that refuse a size argument: ``bytearray(10**12)`` allocates it."""

    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"refused {kind.__name__}({args[0]}): a CIFAR batch never builds bytes of a given size")
        return kind(*args)

    return make


_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_SCALAR = np.int64(0).__reduce__()[0]
_NUMPY_CORES = ("numpy.core", "numpy._core")
_BUILTIN_TYPES = (dict, list, tuple, set, frozenset, str, int, float, complex)
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{(f"{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in _NUMPY_CORES},
    **{(f"{core}.multiarray", "scalar"): _SCALAR for core in _NUMPY_CORES},
    **{(f"{core}.numeric", "_frombuffer"): _FROMBUFFER for core in _NUMPY_CORES},
    # "__builtin__" is the module name Python 2 pickles use.
    **{(module, t.__name__): t for module in ("builtins", "__builtin__") for t in _BUILTIN_TYPES},
    **{(module, t.__name__): _sized(t) for module in ("builtins", "__builtin__") for t in (bytes, bytearray)},
}


class _CifarUnpickler(pickle._Unpickler):  # the Python one: see _restricted_load
    """Unpickler that resolves only builtin containers and numpy array reconstruction.

    ``pickle`` runs code only through the globals it looks up, so refusing every other global
    in :meth:`find_class` means a crafted file cannot call anything.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: a CIFAR batch holds only dicts, "
                "lists, strings, numbers and numpy arrays, so anything else is rejected rather "
                "than executed"
            ) from None


def _restricted_load(stream: BinaryIO) -> Any:
    # latin1 turns Python 2 str (the official files are Python 2 pickles) into str keys and
    # lets numpy decode the raw array bytes. A pickle opcode may declare any length, and the
    # C unpickler allocates what is declared before reading it; the Python unpickler reads
    # from an in-memory copy of the file, which hands back only the bytes there are (the
    # load then fails as truncated). A CIFAR batch is 30 MB and a few opcodes, so the Python
    # unpickler costs nothing that matters.
    return _CifarUnpickler(io.BytesIO(stream.read()), encoding="latin1").load()


def _torchvision_download(url: str, md5: str, root: Path) -> str | None:
    """Fetch and extract ``url`` into ``root`` with torchvision; return why it failed, or None."""
    try:
        from torchvision.datasets.utils import download_and_extract_archive
    except ImportError:
        return "torchvision is not installed, so nothing was downloaded automatically"
    # The downloader only fetches, checks the MD5 and extracts; the files are then read by the
    # restricted readers here, never by torchvision's own unrestricted pickle.load.
    try:
        download_and_extract_archive(url, download_root=str(root), filename=url.rsplit("/", 1)[-1], md5=md5)
    except Exception as error:  # no network, checksum mismatch, bad archive: fall back to the message
        return f"downloading {url} through torchvision failed ({type(error).__name__}: {error})"
    return None


def _ensure_files(
    paths: Sequence[Path], root: Path, download: bool, *, dataset: str, url: str, md5: str, folder: str
) -> None:
    """Return if every path exists; else download if allowed, else raise DatasetNotFoundError."""
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return
    if download:
        reason = _torchvision_download(url, md5, root)
        missing = [p for p in paths if not p.is_file()]
        if not missing:
            return
        if reason is None:
            reason = f"the archive downloaded through torchvision did not contain {folder}/ as expected"
    else:
        reason = "download=False, so nothing was downloaded"
    names = ", ".join(str(p) for p in missing)
    raise DatasetNotFoundError(
        f"{dataset} not found: missing {names}. Download {url} and extract it under {root} so that "
        f"{missing[0]} exists (the archive unpacks to the folder {folder}/). {reason}."
    )


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR pickle into uint8 images [n, 3, 32, 32] and int64 labels [n], validated."""
    with path.open("rb") as stream:
        try:
            batch = _restricted_load(stream)
        except Exception as error:  # truncation gives EOFError/UnpicklingError, corruption anything
            raise DatasetFormatError(
                f"{path}: not a readable CIFAR batch ({type(error).__name__}: {error}); the file is "
                "truncated, corrupt or not a CIFAR file; delete it and extract the archive again"
            ) from error
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    # Python 2 str keys arrive as str with encoding="latin1"; files re-pickled with bytes keys also occur.
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetFormatError(f"{path}: missing key {key!r} (found {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DatasetFormatError(
            f"{path}: 'data' has shape {shape} and dtype {dtype}, expected a uint8 array [n, {_CIFAR_ROW}]"
        )
    try:
        labels = np.asarray(batch[label_key])
    except ValueError as error:
        raise DatasetFormatError(f"{path}: {label_key!r} is not a flat list of integers ({error})") from error
    if labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(f"{path}: {label_key!r} must be a flat list of integers, got shape {labels.shape} dtype {labels.dtype}")
    if labels.shape[0] != data.shape[0]:
        raise DatasetFormatError(f"{path}: {data.shape[0]} images but {labels.shape[0]} entries in {label_key!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(
            f"{path}: {label_key!r} has values in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}"
        )
    # Each row is the R, G, B planes in turn, each row-major, so a C-order reshape is [c, h, w].
    return data.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE), labels.astype(np.int64)


def _read_cifar_files(paths: Sequence[Path], label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [_read_cifar_batch(p, label_key, num_classes) for p in paths]
    # np.concatenate always copies, so the tensors own writable, contiguous memory.
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_cifar10(root: str | Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32×32 colour images, 10 classes.

    Reads ``ROOT/cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch`` (test) with
    the restricted unpickler. Batch sizes are taken from the files, not assumed.

    Args:
        root: data root that holds (or will hold) ``cifar-10-batches-py/``.
        train: the five training batches if True, else the test batch.
        download: when files are missing, try the official archive through torchvision.

    Returns:
        images uint8 [N, 3, 32, 32] and labels int64 [N] in 0..9.

    Raises:
        DatasetNotFoundError: a file is missing and could not be downloaded.
        DatasetFormatError: a file is truncated, corrupt or has the wrong shape.

    Example:
        >>> images, labels = load_cifar10("~/data", train=False)  # doctest: +SKIP
        >>> images.shape, images.dtype, labels.shape
        (torch.Size([10000, 3, 32, 32]), torch.uint8, torch.Size([10000]))
    """
    root = Path(root).expanduser()
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    paths = [root / CIFAR10_FOLDER / name for name in names]
    _ensure_files(paths, root, download, dataset="CIFAR-10", url=CIFAR10_URL, md5=_CIFAR10_MD5, folder=CIFAR10_FOLDER)
    return _read_cifar_files(paths, "labels", 10)


def load_cifar100(
    root: str | Path, train: bool, download: bool = True, label: str = "fine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-100 (Krizhevsky 2009): 50,000 train / 10,000 test images, 100 fine or 20 coarse classes.

    Reads ``ROOT/cifar-100-python/train`` or ``test`` with the restricted unpickler.

    Args:
        root: data root that holds (or will hold) ``cifar-100-python/``.
        train: the training file if True, else the test file.
        download: when the file is missing, try the official archive through torchvision.
        label: ``"fine"`` (0..99) or ``"coarse"`` (the 20 superclasses, 0..19).

    Returns:
        images uint8 [N, 3, 32, 32] and labels int64 [N].

    Example:
        >>> images, labels = load_cifar100("~/data", train=True, label="coarse")  # doctest: +SKIP
        >>> int(labels.max())
        19
    """
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    root = Path(root).expanduser()
    paths = [root / CIFAR100_FOLDER / ("train" if train else "test")]
    _ensure_files(paths, root, download, dataset="CIFAR-100", url=CIFAR100_URL, md5=_CIFAR100_MD5, folder=CIFAR100_FOLDER)
    return _read_cifar_files(paths, f"{label}_labels", 100 if label == "fine" else 20)


def _load_cifar10(*, root: str | Path, download: bool, **_: object) -> ImageDataset:
    return ImageDataset("cifar10", *load_cifar10(root, train=True, download=download), *load_cifar10(root, train=False, download=download), num_classes=10)


def _load_cifar100(*, root: str | Path, download: bool, **_: object) -> ImageDataset:
    return ImageDataset("cifar100", *load_cifar100(root, train=True, download=download), *load_cifar100(root, train=False, download=download), num_classes=100)


CIFAR10 = DatasetSpec("cifar10", side=32, channel_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), load=_load_cifar10)
CIFAR100 = DatasetSpec("cifar100", side=32, channel_stats=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)), load=_load_cifar100)
