"""Your own data from the command line: a .npz archive or a folder of images, checked on entry."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clbounds.experiments.cli import main
from clbounds.experiments.data import DatasetFormatError, load_dataset
from clbounds.experiments.data import user
from clbounds.experiments.data.cifar import DatasetNotFoundError
from clbounds.experiments.store.db import Store

from conftest import TINY_ARGS


def _npz(path: Path, **arrays) -> Path:
    g = np.random.default_rng(0)
    base = {"x_train": g.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8), "y_train": np.arange(12) % 3,
            "x_test": g.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), "y_test": np.arange(6) % 3}
    np.savez(path, **(base | arrays))
    return path


def _folder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 5, split: bool = False, side: int = 12) -> Path:
    from PIL import Image

    g = np.random.default_rng(1)
    for k, c in enumerate(classes):
        for s in (("train", "test") if split else ("",)):
            d = root / s / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = (g.integers(0, 60, (side, side + 3, 3)) + 90 * k).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
            (d / "notes.txt").write_text("not an image: ignored")
    return root


def test_npz_reads_either_layout_grey_or_float_and_resizes(tmp_path):
    ds = load_dataset("npz", root=_npz(tmp_path / "a.npz"))
    assert ds.x_train.shape == (12, 3, 8, 8) and ds.x_train.dtype == torch.uint8 and ds.num_classes == 3
    g = np.random.default_rng(0)
    grey = _npz(tmp_path / "b.npz", x_train=g.random((12, 1, 8, 8)).astype(np.float32), x_test=np.zeros((6, 1, 8, 8), np.float64))
    ds = load_dataset("npz", root=grey, image_size=16)
    assert ds.x_train.shape == (12, 3, 16, 16) and torch.equal(ds.x_train[:, 0], ds.x_train[:, 1])


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.full((12, 8, 8, 3), np.nan, np.float32)}, "non-finite"),
    ({"x_train": np.full((12, 8, 8, 3), 2.0)}, "outside [0, 1]"),
    ({"x_train": np.zeros((12, 8, 9, 3), np.uint8)}, "square"),
    ({"x_train": np.zeros((12, 64), np.uint8)}, "expected [N, C, H, W]"),
    ({"y_train": np.arange(12) - 1}, "labels from -1"),
    ({"y_train": np.arange(11)}, "one label per image"),
    ({"y_train": np.arange(12) * 0.5}, "integer class indices"),
    ({"x_train": np.array([object()] * 12)}, "pickle"),
    ({"x_test": np.zeros((6, 3, 16, 16), np.uint8)}, "data.image_size"),
    ({"y_train": np.zeros(12, np.int64), "y_test": np.zeros(6, np.int64)}, "at least 2"),
])
def test_npz_refuses_bad_arrays_with_the_file_and_the_reason(tmp_path, arrays, message):
    with pytest.raises(DatasetFormatError, match="b.npz") as err:
        load_dataset("npz", root=_npz(tmp_path / "b.npz", **arrays))
    assert message in str(err.value)


def test_npz_checks_the_archive_before_reading_it(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="no .npz file"):
        load_dataset("npz", root=tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetFormatError, match="not a .npz archive"):
        load_dataset("npz", root=tmp_path / "bad.npz")
    with zipfile.ZipFile(tmp_path / "part.npz", "w") as z:
        z.writestr("x_train.npy", b"")
    with pytest.raises(DatasetFormatError, match="has no y_train, x_test, y_test"):
        load_dataset("npz", root=tmp_path / "part.npz")
    monkeypatch.setattr(user, "MAX_ARRAY_BYTES", 100)  # sizes from the zip directory, before any array is read
    with pytest.raises(DatasetFormatError, match="above the limit of 100"):
        load_dataset("npz", root=_npz(tmp_path / "c.npz"))


def test_folder_splits_per_class_or_reads_train_and_test(tmp_path):
    ds = load_dataset("folder", root=_folder(tmp_path / "f"), image_size=8, seed=0)
    assert ds.num_classes == 3 and ds.x_train.shape[1:] == (3, 8, 8)
    assert len(ds.y_train) == 12 and len(ds.y_test) == 3 and sorted(ds.y_test.tolist()) == [0, 1, 2]  # a fifth of each class
    again = load_dataset("folder", root=tmp_path / "f", image_size=8, seed=0)
    assert torch.equal(again.x_test, ds.x_test)  # the split is the seed's
    assert ds.x_train[ds.y_train == 2].float().mean() > ds.x_train[ds.y_train == 0].float().mean()  # labels follow sorted class names
    both = load_dataset("folder", root=_folder(tmp_path / "g", split=True, per_class=2), image_size=8)
    assert len(both.y_train) == len(both.y_test) == 6


def test_folder_refuses_what_it_cannot_read_safely(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="one sub-folder of images per class"):
        load_dataset("folder", root=tmp_path / "none")
    one = _folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DatasetFormatError, match="at least 2"):
        load_dataset("folder", root=one)
    bad = _folder(tmp_path / "bad")
    (bad / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetFormatError, match="broken.png is not a readable image"):
        load_dataset("folder", root=bad)
    monkeypatch.setattr(user, "MAX_PIXELS", 100)  # from the header, before decoding
    with pytest.raises(DatasetFormatError, match="declares 15x12 pixels"):
        load_dataset("folder", root=_folder(tmp_path / "big"))
    monkeypatch.setattr(user, "MAX_IMAGES", 7)
    with pytest.raises(DatasetFormatError, match="more than 7 images"):
        load_dataset("folder", root=_folder(tmp_path / "many"))


def test_train_eval_measure_on_a_folder_of_images_from_the_command_line(tmp_path, capsys, monkeypatch):
    root = _folder(tmp_path / "imgs", per_class=6)
    _npz(tmp_path / "other.npz")
    store = str(tmp_path / "s")
    monkeypatch.chdir(tmp_path)  # relative paths: the run keeps them absolute, so eval and measure find them from anywhere
    args = [a for a in TINY_ARGS if not a.startswith("data.num_classes")]
    assert main(["--store", store, "train", "quick-simclr-synthetic", *args, "--data", "folder:imgs", "optim.epochs=1",
                 "optim.batch_size=8", "--quiet", "--eval"]) == 0
    (record,) = Store(store).runs()
    assert record.dataset == "folder" and record.config["data"]["root"] == str(root.resolve())
    monkeypatch.chdir(root)
    assert main(["--store", store, "eval", record.id[:6], "--probe-data", f"npz:{tmp_path / 'other.npz'}"]) == 0
    assert "knn_accuracy@npz" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--store", store, "eval", record.id, "--probe-data", "npz"])
    assert exit_.value.code == 2 and "npz:PATH" in capsys.readouterr().err
    assert main(["--store", store, "measure", record.id, "--terms", "geometry", "measure.n_samples=8", "measure.views=2",
                 "measure.center_views=1", "measure.controls=false"]) == 0
    names = {m["name"] for m in Store(store).measurements(record.id)}
    assert {"knn_accuracy", "center_max_inner"} <= names
    assert main(["--store", store, "train", "quick-simclr-synthetic", *args, "data.name=folder", f"data.root={tmp_path / 'nowhere'}", "--quiet"]) == 1
    assert "one sub-folder of images per class" in capsys.readouterr().err


def test_import_takes_npz_and_folder_data_and_refuses_a_bare_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--store", str(tmp_path / "s"), "import", "x.pth", "--format", "torchvision", "--arch", "resnet18", "--data", "npz"])
    assert exit_.value.code == 2 and "npz:PATH" in capsys.readouterr().err


def test_an_imported_resnet_is_probed_on_a_folder_of_images(tmp_path):
    from test_import import write_checkpoint

    path, _, _ = write_checkpoint(tmp_path, "torchvision")
    root = _folder(tmp_path / "imgs", per_class=4)
    store = str(tmp_path / "s")
    assert main(["--store", store, "import", str(path), "--format", "torchvision", "--arch", "resnet18", "--data", f"folder:{root}",
                 "--image-size", "16", "eval.knn_k=3", "eval.linear_steps=5"]) == 0
    (record,) = Store(store).runs()
    assert record.config["data"] == record.config["data"] | {"name": "folder", "root": str(root.resolve()), "image_size": 16}
    assert main(["--store", store, "eval", record.id]) == 0
    assert any(m["name"] == "knn_accuracy" for m in Store(store).measurements(record.id))


DOC = Path(__file__).resolve().parents[1] / "docs" / "bring_your_own_encoder.md"


def _doc_block(marker: str) -> str:
    text = DOC.read_text()
    after = text[text.index(f"<!-- walkthrough: {marker} -->"):]
    start = after.index("```") + after[after.index("```"):].index("\n") + 1
    return after[start:after.index("```", start)]


#: Tiny sizes for the walk-through: config overrides the import takes (data, eval, measure).
TINY_WALKTHROUGH = ["eval.knn_k=3", "eval.linear_steps=5", "measure.n_samples=8", "measure.views=2", "measure.center_views=1",
                    "measure.sigma_per_class=2", "measure.batch_size=8", "measure.attack_steps=2", "measure.hessian_iters=2", "measure.trace_samples=2",
                    "measure.sharpness_steps=1", "measure.sharpness_m=4", "measure.pac_bayes_units=2"]


@pytest.mark.slow
def test_the_bring_your_own_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/bring_your_own_encoder.md §5: the module as printed, the commands as printed (the
    import given tiny sizes), on a tiny folder of images."""
    import shlex
    import sys

    (tmp_path / "mynets.py").write_text(_doc_block("mynets.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    import mynets

    torch.manual_seed(0)
    torch.save(mynets.small_cnn().state_dict(), "small_init.pth")
    torch.save(mynets.small_cnn().state_dict(), "small.pth")  # "trained elsewhere": other weights of the same network
    _folder(tmp_path / "imgs", classes=("cat", "dog"), per_class=20, side=16)
    lines = [line for line in _doc_block("commands").splitlines() if line.strip()]
    assert [shlex.split(line)[1] for line in lines] == ["import", "eval", "measure", "bounds", "report"]
    store = str(tmp_path / "runs")
    for line in lines:
        args = shlex.split(line)[1:]
        if args[0] == "import":
            args = [a if a != "32" else "16" for a in args] + TINY_WALKTHROUGH
        assert main(["--store", store, *args]) == 0, (line, capsys.readouterr().err[-2000:])
    (record,) = Store(store).runs()
    names = {m["name"] for m in Store(store).measurements(record.id)}
    assert {"lipschitz_upper", "weight_movement", "knn_accuracy", "center_max_inner"} <= names  # theta_0 given, the CNN certified
    assert (tmp_path / "runs" / "report" / "report.md").is_file()


@pytest.mark.parametrize("arch, module, code, message", [
    ("os:getcwd", None, 2, "standard library"),
    ("nosuchmodule:net", None, 2, "cannot import nosuchmodule"),
    ("badnets:not_a_net", "def not_a_net():\n    return 3\n", 2, "not a torch nn.Module"),
    ("badnets:image_map", "from torch import nn\ndef image_map():\n    return nn.Conv2d(3, 4, 3)\n", 1, "must return features [N, D]"),
    ("badnets:other", "from torch import nn\ndef other():\n    return nn.Sequential(nn.Flatten(), nn.Linear(5, 2))\n", 1, "checkpoint"),
    ("os.system", None, 2, "module.path:callable"),
])
def test_a_user_architecture_that_cannot_be_built_or_loaded_is_refused(tmp_path, monkeypatch, capsys, arch, module, code, message):
    import sys

    from torch import nn

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "badnets", raising=False)
    if module:
        (tmp_path / "badnets.py").write_text(module)
    ckpt = tmp_path / "net.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3)).state_dict() if "image_map" not in arch else nn.Conv2d(3, 4, 3).state_dict(), ckpt)
    assert main(["--store", str(tmp_path / "s"), "import", str(ckpt), "--format", "torchvision", "--arch", arch, "--image-size", "8"]) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists() or Store(tmp_path / "s").runs() == []
