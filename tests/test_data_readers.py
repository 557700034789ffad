"""On-disk CIFAR-10/100 and STL-10 readers, on tiny files written in the standard formats."""

from __future__ import annotations

import codecs
import os
import pickle
import struct
import sys
import types
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from clbounds.experiments.data.cifar import (
    CIFAR10_URL,
    CIFAR100_URL,
    DatasetFormatError,
    DatasetNotFoundError,
    load_cifar10,
    load_cifar100,
)
from clbounds.experiments.data.stl import STL10_URL, load_stl10

CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


# ----------------------------------------------------------------------------- file writers


def known_images(n: int, side: int, seed: int) -> np.ndarray:
    """[n, 3, side, side] uint8 images whose planes differ and are not symmetric under h↔w.

    Plane R grows along H only, G along W only, B is random, and each image is offset by its
    index, so any transposition, channel swap or image reordering changes the values.
    """
    h = np.arange(side)[:, None]
    w = np.arange(side)[None, :]
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, side, side), dtype=np.uint8)
    for k in range(n):
        images[k, 0] = (2 * h + 0 * w + k) % 256
        images[k, 1] = (100 + 0 * h + w + 3 * k) % 256
        images[k, 2] = rng.integers(0, 256, size=(side, side))
    return images


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """The CIFAR on-disk rows: R, G, B planes one after the other, each written row by row."""
    rows = [np.concatenate([img[c].flatten(order="C") for c in range(3)]) for img in images]
    return np.stack(rows).astype(np.uint8) if rows else np.zeros((0, 3072), np.uint8)


def write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def cifar_dict(rows: np.ndarray, labels: dict[str, list[int]], bytes_keys: bool = True) -> dict:
    """A batch dict shaped like the official ones, with their extra string/bytes entries."""
    entries: dict[str, object] = {
        "batch_label": "training batch 1 of 5",
        "data": rows,
        "filenames": [f"img_{i}.png".encode() for i in range(rows.shape[0])],
        **labels,
    }
    return {(k.encode() if bytes_keys else k): v for k, v in entries.items()}


def write_cifar10(root: Path, sizes: dict[str, int], seed: int = 0, protocol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Write the named CIFAR-10 batch files; return the expected images and labels in file order."""
    all_images, all_labels = [], []
    for i, (name, n) in enumerate(sizes.items()):
        images = known_images(n, 32, seed + i)
        images[:, 2, 0, 0] = 200 + i  # mark which file each image came from
        labels = [(seed + i + j) % 10 for j in range(n)]
        write_pickle(root / "cifar-10-batches-py" / name, cifar_dict(cifar_rows(images), {"labels": labels}), protocol)
        all_images.append(images)
        all_labels.extend(labels)
    return np.concatenate(all_images), np.array(all_labels, dtype=np.int64)


def python2_batch_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the official files are: Python 2 protocol 2, numpy.core names, str data.

    Written opcode by opcode, since Python 3 cannot produce Python 2 ``str`` objects.
    """
    n = rows.shape[0]
    dtype_u1 = (
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        b"(K\x01J" + struct.pack("<i", n) + b"J" + struct.pack("<i", 3072) + b"\x86"
        + dtype_u1 + b"\x89T" + struct.pack("<I", rows.nbytes) + rows.tobytes() + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(U\x04data" + array + b"U\x06labels" + label_list + b"u."


def write_stl(root: Path, split: str, images: np.ndarray, labels_on_disk: np.ndarray | None) -> None:
    """Write ``{split}_X.bin`` with each plane column-major (and ``{split}_y.bin`` if given)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    raw = b"".join(img[c].flatten(order="F").tobytes() for img in images for c in range(3))
    (folder / f"{split}_X.bin").write_bytes(raw)
    if labels_on_disk is not None:
        (folder / f"{split}_y.bin").write_bytes(labels_on_disk.astype(np.uint8).tobytes())


@pytest.fixture
def no_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import torchvision`` fail, whatever is installed."""
    for name in ("torchvision", "torchvision.datasets", "torchvision.datasets.utils"):
        monkeypatch.setitem(sys.modules, name, None)


def fake_torchvision(monkeypatch: pytest.MonkeyPatch, download_and_extract_archive) -> None:
    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_and_extract_archive = download_and_extract_archive
    datasets = types.ModuleType("torchvision.datasets")
    datasets.utils = utils
    torchvision = types.ModuleType("torchvision")
    torchvision.datasets = datasets
    for module in (torchvision, datasets, utils):
        monkeypatch.setitem(sys.modules, module.__name__, module)


# ----------------------------------------------------------------------------- CIFAR round trips


def test_cifar10_train_reads_all_five_batches_in_order_with_exact_pixels(tmp_path: Path) -> None:
    sizes = dict(zip(CIFAR10_BATCHES, [3, 1, 2, 4, 2]))
    expected_images, expected_labels = write_cifar10(tmp_path, sizes)
    images, labels = load_cifar10(tmp_path, train=True, download=False)
    assert images.dtype == torch.uint8 and images.shape == (12, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.shape == (12,)
    assert np.array_equal(images.numpy(), expected_images)
    assert np.array_equal(labels.numpy(), expected_labels)
    # Orientation, stated directly: R grows down the rows, G along the columns.
    assert images[0, 0, 5, 0] == 10 and images[0, 0, 0, 5] == 0
    assert images[0, 1, 0, 5] == 105 and images[0, 1, 5, 0] == 100
    # Batch order: the marker pixel names the file of origin.
    assert images[:, 2, 0, 0].tolist() == [200] * 3 + [201] + [202] * 2 + [203] * 4 + [204] * 2
    assert images.is_contiguous() and images.numpy().flags.writeable


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_test_batch_any_protocol_and_key_type(tmp_path: Path, protocol: int, bytes_keys: bool) -> None:
    expected = known_images(5, 32, seed=7)
    labels = [9, 0, 3, 3, 1]
    batch = cifar_dict(cifar_rows(expected), {"labels": labels}, bytes_keys=bytes_keys)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch, protocol)
    images, got = load_cifar10(str(tmp_path), train=False, download=False)
    assert np.array_equal(images.numpy(), expected)
    assert got.tolist() == labels


def test_cifar10_reads_python2_pickles_like_the_official_files(tmp_path: Path) -> None:
    expected = known_images(4, 32, seed=3)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir(parents=True)
    path.write_bytes(python2_batch_pickle(cifar_rows(expected), [4, 2, 0, 9]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's numpy.core deprecation must not fire
        images, labels = load_cifar10(tmp_path, train=False, download=False)
    assert np.array_equal(images.numpy(), expected)
    assert labels.tolist() == [4, 2, 0, 9]


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    expected = known_images(4, 32, seed=11)
    fine, coarse = [99, 0, 57, 12], [19, 4, 0, 7]
    labels = {"fine_labels": fine, "coarse_labels": coarse}
    write_pickle(tmp_path / "cifar-100-python" / "train", cifar_dict(cifar_rows(expected), labels))
    write_pickle(tmp_path / "cifar-100-python" / "test", cifar_dict(cifar_rows(expected[:2]), labels | {"fine_labels": fine[:2], "coarse_labels": coarse[:2]}))
    images, got_fine = load_cifar100(tmp_path, train=True, download=False)
    _, got_coarse = load_cifar100(tmp_path, train=True, download=False, label="coarse")
    assert np.array_equal(images.numpy(), expected)
    assert got_fine.tolist() == fine and got_coarse.tolist() == coarse
    test_images, test_fine = load_cifar100(tmp_path, train=False, download=False)
    assert np.array_equal(test_images.numpy(), expected[:2]) and test_fine.tolist() == fine[:2]
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        load_cifar100(tmp_path, train=True, label="superclass")


def test_cifar_empty_batch_is_allowed(tmp_path: Path) -> None:
    sizes = dict(zip(CIFAR10_BATCHES, [2, 0, 1, 1, 1]))
    expected_images, expected_labels = write_cifar10(tmp_path, sizes)
    images, labels = load_cifar10(tmp_path, train=True, download=False)
    assert np.array_equal(images.numpy(), expected_images) and np.array_equal(labels.numpy(), expected_labels)


# ----------------------------------------------------------------------------- STL round trips


def test_stl10_train_and_test_exact_pixels_orientation_and_shifted_labels(tmp_path: Path) -> None:
    train = known_images(3, 96, seed=1)
    test = known_images(2, 96, seed=2)
    write_stl(tmp_path, "train", train, np.array([1, 10, 5]))
    write_stl(tmp_path, "test", test, np.array([2, 3]))
    images, labels = load_stl10(tmp_path, "train", download=False)
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 96, 96)
    assert np.array_equal(images.numpy(), train)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 9, 4]
    # R grows down the rows: without the transpose this pixel would read 0.
    assert images[0, 0, 5, 0] == 10 and images[0, 0, 0, 5] == 0
    assert images[1, 1, 0, 7] == (100 + 7 + 3) and images[1, 1, 7, 0] == 103
    assert images.is_contiguous()
    test_images, test_labels = load_stl10(tmp_path, "test", download=False)
    assert np.array_equal(test_images.numpy(), test) and test_labels.tolist() == [1, 2]


def test_stl10_unlabeled_labels_are_minus_one(tmp_path: Path) -> None:
    unlabeled = known_images(4, 96, seed=5)
    write_stl(tmp_path, "unlabeled", unlabeled, None)
    images, labels = load_stl10(tmp_path, "unlabeled", download=False)
    assert np.array_equal(images.numpy(), unlabeled)
    assert labels.dtype == torch.int64 and labels.tolist() == [-1] * 4


def test_stl10_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load_stl10(tmp_path, "validation")


# ----------------------------------------------------------------------------- missing files


def test_missing_cifar10_names_path_url_and_extraction(tmp_path: Path, no_torchvision: None) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, train=True, download=True)
    message = str(info.value)
    first = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    assert isinstance(info.value, FileNotFoundError)
    assert str(first) in message and str(tmp_path / "cifar-10-batches-py" / "data_batch_5") in message
    assert CIFAR10_URL in message and "cifar-10-python.tar.gz" in message
    assert f"extract it under {tmp_path} so that {first} exists" in message
    assert "torchvision is not installed" in message


def test_missing_single_cifar10_batch_is_named(tmp_path: Path, no_torchvision: None) -> None:
    write_cifar10(tmp_path, {name: 1 for name in CIFAR10_BATCHES if name != "data_batch_3"})
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, train=True)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in message
    assert "data_batch_1" not in message


def test_missing_cifar100_and_stl10(tmp_path: Path, no_torchvision: None) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar100(tmp_path, train=False)
    path = tmp_path / "cifar-100-python" / "test"
    assert str(path) in str(info.value) and CIFAR100_URL in str(info.value)
    assert f"extract it under {tmp_path} so that {path}" in str(info.value)

    with pytest.raises(DatasetNotFoundError) as info:
        load_stl10(tmp_path, "train")
    for name in ("train_X.bin", "train_y.bin"):
        assert str(tmp_path / "stl10_binary" / name) in str(info.value)
    assert STL10_URL in str(info.value) and "stl10_binary.tar.gz" in str(info.value)

    write_stl(tmp_path, "test", known_images(1, 96, 0), None)  # images but no labels
    with pytest.raises(DatasetNotFoundError) as info:
        load_stl10(tmp_path, "test")
    assert str(tmp_path / "stl10_binary" / "test_y.bin") in str(info.value)
    assert "test_X.bin" not in str(info.value)


def test_download_through_torchvision_fetches_the_official_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def download_and_extract_archive(url, download_root, filename=None, md5=None):
        calls.append((url, download_root, filename, md5))
        write_cifar10(Path(download_root), {"test_batch": 2})

    fake_torchvision(monkeypatch, download_and_extract_archive)
    images, labels = load_cifar10(tmp_path, train=False, download=True)
    assert images.shape == (2, 3, 32, 32) and labels.shape == (2,)
    assert calls == [(CIFAR10_URL, str(tmp_path), "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")]
    load_cifar10(tmp_path, train=False, download=True)  # files present now: no second download
    assert len(calls) == 1


def test_failed_or_disabled_download_still_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def unreachable(url, download_root, filename=None, md5=None):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    fake_torchvision(monkeypatch, unreachable)
    with pytest.raises(DatasetNotFoundError) as info:
        load_stl10(tmp_path, "unlabeled", download=True)
    assert calls == [STL10_URL]
    assert "URLError" in str(info.value) and str(tmp_path / "stl10_binary" / "unlabeled_X.bin") in str(info.value)

    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_cifar10(tmp_path, train=True, download=False)
    assert calls == [STL10_URL]  # download=False never calls the downloader


# ----------------------------------------------------------------------------- corrupt files


def test_truncated_cifar_pickle(tmp_path: Path) -> None:
    write_cifar10(tmp_path, {"test_batch": 3})
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match="not a readable CIFAR batch") as info:
        load_cifar10(tmp_path, train=False)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="EOFError"):
        load_cifar10(tmp_path, train=False)


@pytest.mark.parametrize(
    ("batch", "complaint"),
    [
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"shape \(2, 3071\)"),
        ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"labels": [0, 1]}, r"shape \(2, 32, 32, 3\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "dtype float32"),
        ({b"data": b"\x00" * 6144, b"labels": [0, 1]}, "dtype bytes"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, "2 images but 3 entries"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"expected 0\.\.9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1]]}, "flat list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key 'labels'"),
        ([np.zeros((2, 3072), np.uint8), [0, 1]], "expected a pickled dict"),
    ],
)
def test_wrong_cifar_contents(tmp_path: Path, batch: object, complaint: str) -> None:
    path = write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(DatasetFormatError, match=complaint) as info:
        load_cifar10(tmp_path, train=False)
    assert str(path) in str(info.value)


def test_wrong_cifar100_label_range(tmp_path: Path) -> None:
    rows = np.zeros((2, 3072), np.uint8)
    path = write_pickle(tmp_path / "cifar-100-python" / "train", {b"data": rows, b"fine_labels": [5, 99], b"coarse_labels": [5, 20]})
    assert load_cifar100(tmp_path, train=True)[1].tolist() == [5, 99]
    with pytest.raises(DatasetFormatError, match=r"expected 0\.\.19") as info:
        load_cifar100(tmp_path, train=True, label="coarse")
    assert str(path) in str(info.value)


def test_truncated_or_inconsistent_stl_files(tmp_path: Path) -> None:
    write_stl(tmp_path, "train", known_images(2, 96, 0), np.array([1, 2]))
    images_path = tmp_path / "stl10_binary" / "train_X.bin"
    labels_path = tmp_path / "stl10_binary" / "train_y.bin"
    full = images_path.read_bytes()

    images_path.write_bytes(full[:-1])
    with pytest.raises(DatasetFormatError, match="not a positive multiple of 3·96·96") as info:
        load_stl10(tmp_path, "train")
    assert str(images_path) in str(info.value) and str(len(full) - 1) in str(info.value)

    images_path.write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=str(images_path).replace("\\", "\\\\")):
        load_stl10(tmp_path, "train")

    images_path.write_bytes(full)
    labels_path.write_bytes(bytes([1, 2, 3]))
    with pytest.raises(DatasetFormatError, match="3 labels but") as info:
        load_stl10(tmp_path, "train")
    assert str(labels_path) in str(info.value)

    for bad in ([0, 5], [3, 11]):
        labels_path.write_bytes(bytes(bad))
        with pytest.raises(DatasetFormatError, match=r"expected 1\.\.10"):
            load_stl10(tmp_path, "train")


# ----------------------------------------------------------------------------- malicious pickles


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ExecsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _OddCodec:
    def __reduce__(self):
        return (codecs.encode, (b"payload", "zlib"))


@pytest.mark.parametrize("payload", ["system", "exec", "nested"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    if payload == "system":
        obj: object = _RunsCommand(marker)
    elif payload == "exec":
        obj = _ExecsCode(marker)
    else:  # hidden inside an otherwise valid batch
        obj = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"batch_label": _RunsCommand(marker)}
    path = write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", obj)
    with pytest.raises(DatasetFormatError, match="refused to load global") as info:
        load_cifar10(tmp_path, train=False)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_codec_other_than_latin1_is_refused(tmp_path: Path) -> None:
    write_pickle(tmp_path / "cifar-100-python" / "test", {b"data": _OddCodec()})
    with pytest.raises(DatasetFormatError, match=r"refused _codecs\.encode"):
        load_cifar100(tmp_path, train=False)
