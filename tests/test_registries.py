"""Adding a method or a dataset is one module plus one registry line: a toy method, written here as a
module of its own and registered in ``experiments/catalog.py``'s ``METHODS``, is validated by
the config, trained by the loop with its own number of views, and measured; a toy dataset
likewise is loaded, trained on and probed."""

from __future__ import annotations

import textwrap

import pytest

from clbounds.experiments import catalog
from clbounds.experiments.config import ConfigError, config_from_dict
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.training.loop import train
from clbounds.experiments.training.methods import get_method, views_per_image

from conftest import CHEAP_MEASURE, tiny_raw

TOY = '''
"""Toy: InfoNCE averaged over the consecutive pairs of three views (tests only)."""
from functools import partial

from clbounds.experiments.training.methods import Method, project
from clbounds.theory.losses import info_nce

SEEN = []  # the number of views of every step


def _losses(cfg, nets, views, loss_fn, sharp_only=False):
    SEEN.append(len(views))
    z = [project(nets["encoder"], v) for v in views]
    return (loss_fn(z[0], z[1]) + loss_fn(z[1], z[2])) / 2, None


METHOD = Method("toy", criterion=lambda m: partial(info_nce, temperature=m.temperature), losses=_losses, views=lambda m: 3)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(catalog.METHODS, "toy", "toy_method")  # the one registry line
    import toy_method

    yield toy_method


def test_a_method_added_as_one_module_and_one_registry_line_trains_and_is_measured(toy, store):
    cfg = config_from_dict(tiny_raw(method__name="toy", measure=dict(CHEAP_MEASURE)))
    assert views_per_image(cfg) == 3 and get_method("toy") is toy.METHOD
    record = train(cfg, store, progress=False)
    assert record.status == "done" and (record.path / "encoder.safetensors").is_file()
    steps = cfg.optim.epochs * (cfg.data.n_train // cfg.optim.batch_size)
    assert toy.SEEN == [3] * steps  # the loop drew the method's three views at every step
    names = {r["name"] for r in store.measurements(record.id)}
    assert {"train_loss", "train_epoch_loss"} <= names
    rows = measure(record, store, ["losses", "sharpness"])
    assert any(name == "sharpness" for name, _, _ in rows)  # measure differentiates the method's criterion


def test_an_unregistered_method_is_a_config_error_with_the_registered_names():
    with pytest.raises(ConfigError, match=r"method.name='toy' is not allowed: choose one of simclr, .*two_network, external"):
        config_from_dict(tiny_raw(method__name="toy"))
    with pytest.raises(ConfigError, match="not registered"):
        get_method("toy")
    with pytest.raises(ConfigError, match="trained elsewhere"):
        get_method("external")


def test_every_registered_method_declares_itself_under_its_name():
    for name in catalog.METHODS:
        assert get_method(name).name == name


TOY_DATA = '''
"""Toy data: two classes of constant images, dark and bright, with noise (tests only)."""
import torch

from clbounds.experiments.data.base import DatasetSpec, ImageDataset


def _split(n, g):
    y = torch.arange(n) % 2
    x = (60 + 120 * y[:, None, None, None] + torch.randint(0, 40, (n, 3, 8, 8), generator=g)).to(torch.uint8)
    return x, y


def _load(*, seed, n_train, n_test, **_):
    g = torch.Generator().manual_seed(seed)
    return ImageDataset("toy_data", *_split(n_train, g), *_split(n_test, g), num_classes=2)


SPEC = DatasetSpec("toy_data", side=8, channel_stats=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), load=_load)
'''


def test_a_dataset_added_as_one_module_and_one_registry_line_trains(tmp_path, monkeypatch, store):
    from clbounds.experiments.data import load_dataset
    from clbounds.experiments.measurement.accuracy import evaluate
    from clbounds.experiments.training.resources import image_shape

    (tmp_path / "toy_data.py").write_text(textwrap.dedent(TOY_DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(catalog.DATASETS, "toy_data", "toy_data:SPEC")  # the one registry line
    data = load_dataset("toy_data", n_train=64, n_test=32)
    assert data.image_shape == (3, 8, 8) and data.num_classes == 2
    cfg = config_from_dict(tiny_raw(data={"name": "toy_data", "n_train": 64, "n_test": 32}, encoder__arch="mlp"))
    assert image_shape(cfg) == (3, 8, 8)  # the spec's fixed side, not data.image_size
    record = train(cfg, store, progress=False)
    rows = dict((name, value) for name, value, _ in evaluate(record, store))
    assert record.status == "done" and 0.0 <= rows["knn_accuracy"] <= 1.0


def test_an_unregistered_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.name='toy_data' is not allowed: choose one of synthetic, digits, cifar10, cifar100, stl10"):
        config_from_dict(tiny_raw(data__name="toy_data"))


def test_an_executor_added_as_one_class_and_one_registry_line_runs_a_grid(monkeypatch, store, tmp_path):
    from clbounds.experiments.pipeline import executors
    from clbounds.experiments.pipeline.grid import GridItem, run_grid

    ran = []

    class Recording(executors.InlineExecutor):  # the protocol: remote, snapshot, run
        def run(self, store, calls, progress, on_step):
            for i, result in super().run(store, calls, progress, on_step):
                ran.append(calls[i][0].run_id())
                yield i, result

    monkeypatch.setitem(executors.EXECUTORS, "recording", lambda folder, name, workers, dry_run: Recording())  # the one registry line
    cfg = config_from_dict(tiny_raw(optim__epochs=1, measure=dict(CHEAP_MEASURE)))
    results = run_grid([GridItem("tiny", cfg)], store, executors.make_executor("recording", tmp_path / "jobs", "g"), terms=["losses"], log=lambda s: None)
    assert [r.status for r in results] == ["done"] and ran == [cfg.run_id()]
    with pytest.raises(ConfigError, match="choose one of local, slurm, submitit-local, recording"):
        executors.make_executor("nope", tmp_path, "g")
