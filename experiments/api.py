"""The Python API for any encoder: ``clbounds.measure`` and ``clbounds.evaluate``.

    import clbounds
    rows = clbounds.measure(my_backbone, "synthetic", projector=my_head, method="simclr")
    checks = clbounds.bounds.evaluate_all(rows.terms)

``model`` is any ``nn.Module`` from [0, 1] images [N, C, H, W] to features [N, D] (its own
normalisation inside, as clbounds' encoders have theirs), with an optional ``projector`` from
features to the projection the loss saw. The rows are the CLI's: (name, value, protocol),
with the controls as ``<control>/<name>``. For the random-initialisation control the model is
copied and every layer's ``reset_parameters()`` run under ``seed``; that copy is a control,
not the weights training started from, so without ``init_model`` the terms that compare with
θ₀ (``weight_movement``, ``weight_distance``) are ``<term>_unavailable`` rows and listed in
``rows.skipped``.

Terms that differentiate the training loss (the ``sharpness`` and ``optimization`` groups)
need ``loss_fn(model, (views1, views2)) -> scalar`` or ``method`` (``simclr`` or
``barlow_twins``); without either they are skipped and ``rows.skipped`` says why. The loss
gap of the shift, the InfoNCE terms and the PAC-Bayes inputs are NT-Xent at ``temperature``
by definition of the theorems that use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .catalog import FOREIGN_LOSSES
from .config import Config, ConfigError, config_from_dict
from .data import ImageDataset, dataset_names, load_dataset
from .models.external import ExternalEncoder, reinitialized
from .store.db import Row, Store



class Rows(list):
    """(name, value, protocol) rows, as ``clbounds measure`` prints them, plus:

    - ``terms``: {name: value}, what ``clbounds.bounds.evaluate_all`` takes;
    - ``skipped``: {group: reason} for the groups that could not be computed;
    - ``run``: the run id when the rows were written into a store.
    """

    def __init__(self, rows: Sequence[Row] = (), skipped: Mapping[str, str] | None = None, run: str | None = None) -> None:
        super().__init__(rows)
        self.skipped = dict(skipped or {})
        self.run = run

    @property
    def terms(self) -> dict[str, float]:
        return {name: value for name, value, _ in self}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def as_dataset(data: str | ImageDataset | Mapping[str, torch.Tensor] | Sequence[torch.Tensor], **load: Any) -> ImageDataset:
    """A clbounds dataset name (``load`` goes to :func:`load_dataset`), an :class:`ImageDataset`,
    or tensors: {x_train, y_train, x_test, y_test} or that 4-tuple. Images are uint8 or floats in
    [0, 1] (stored as 8-bit, as every clbounds image is), [N, C, H, W]; labels 0..K−1.

    Examples:
        >>> ds = as_dataset((torch.rand(20, 3, 8, 8), torch.arange(20) % 2, torch.rand(10, 3, 8, 8), torch.arange(10) % 2))
        >>> ds.x_train.dtype, ds.num_classes
        (torch.uint8, 2)
    """
    if isinstance(data, str):
        if data not in dataset_names():
            raise ValueError(f"unknown dataset {data!r}; give tensors or one of {', '.join(dataset_names())}")
        return load_dataset(data, **load)
    if isinstance(data, ImageDataset):
        return dataclasses.replace(data)  # a copy: moving it to a device must not move the caller's
    if isinstance(data, Mapping):
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise ValueError(f"data needs x_train, y_train, x_test and y_test; missing {', '.join(missing)}")
        parts = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    elif isinstance(data, Sequence) and len(data) == 4:
        parts = list(data)
    else:
        raise ValueError("data must be a dataset name, an ImageDataset, or tensors (x_train, y_train, x_test, y_test)")
    x_train, y_train, x_test, y_test = (torch.as_tensor(p) for p in parts)
    x_train, x_test = _images(x_train, "x_train"), _images(x_test, "x_test")
    y_train, y_test = _labels(y_train, x_train, "y_train"), _labels(y_test, x_test, "y_test")
    k = int(max(y_train.max(), y_test.max())) + 1
    if k < 2:
        raise ValueError("data needs at least 2 classes")
    return ImageDataset("tensors", x_train, y_train, x_test, y_test, num_classes=k)


def _images(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, C, H, W] image tensor, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 or floats in [0, 1], got {x.dtype}")
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(f"{name} must hold finite values in [0, 1] (clbounds models take [0, 1] images and normalise inside)")
    return (x * 255).round().to(torch.uint8)


#: The most classes a dataset may have (DataConfig.num_classes' limit).
MAX_CLASSES = 100_000


def _labels(y: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    if y.ndim != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be [N] integer labels, one per image, got {y.dtype} of shape {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError(f"{name} is empty: give at least one labelled image")
    if int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES:
        # K = max label + 1 sizes every per-class tensor: a label of 10^7 must not allocate 10^7 classes
        raise ValueError(f"{name} must be labels 0..K-1 with K <= {MAX_CLASSES} (data.num_classes' limit), got labels from {int(y.min())} to {int(y.max())}")
    return y.to(torch.int64)


def _config(method: str | None, seed: int, augment: str, color_strength: float, temperature: float, data_name: str, settings: Mapping[str, Any]) -> Config:
    """A validated config for a foreign encoder: method ``external``, its loss if known."""
    measure = {k: v for k, v in settings.items() if k not in ("knn_k", "knn_t", "linear_steps", "linear_weight_decay")}
    evaluation = {k: v for k, v in settings.items() if k in ("knn_k", "knn_t", "linear_steps", "linear_weight_decay")}
    if method is not None and method not in FOREIGN_LOSSES:
        raise ConfigError(f"method={method!r}: give {' or '.join(FOREIGN_LOSSES)} (the loss the encoder was trained with), or a loss_fn")
    raw = {
        "name": "external", "seed": seed, "augment": augment, "color_strength": color_strength,
        "data": {"name": data_name if data_name in dataset_names() else "synthetic"},
        "encoder": {"arch": "external", "external": {"format": "python", "loss": method or ""}},
        "method": {"name": "external", "temperature": temperature},
        "measure": measure, "eval": evaluation,
    }
    return config_from_dict(raw)


def _prepare(model: nn.Module, projector: nn.Module | None, init_model: nn.Module | None, seed: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    wrapped = ExternalEncoder(model, projector).to(device).eval()
    init = ExternalEncoder(init_model, projector).to(device).eval() if init_model is not None else reinitialized(wrapped, seed).eval()
    return wrapped, init


def _device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _fingerprint(model: nn.Module) -> list[float]:
    """A cheap summary of the weights: two models that differ in any tensor differ here almost surely."""
    with torch.no_grad():
        return [round(float(t.double().sum()), 10) for t in model.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]


def _register(store: str | Path | Store, run: str, cfg: Config, data: ImageDataset, model: nn.Module) -> tuple[Store, str]:
    """A store row for a foreign encoder measured in Python (no checkpoint is kept). The run id
    hashes the name, the weights, the data and every setting, so two models never share one."""
    store = store if isinstance(store, Store) else Store(store)
    shape = tuple(data.x_train.shape[1:])
    settings = {k: v for k, v in cfg.to_dict().items() if k != "slurm"}  # where it would run is not what it is (ids from before the key stay)
    key = json.dumps({"run": run, "model": type(model).__qualname__, "weights": _fingerprint(model), "data": data.name, "shape": shape,
                      "n": [data.x_train.shape[0], data.x_test.shape[0]], "config": settings}, sort_keys=True, default=str)
    run_id = "py" + hashlib.sha1(key.encode()).hexdigest()[:8]
    config = cfg.to_dict()
    config["name"] = run
    store.upsert_run(run_id, config, status="done", message=f"measured through the Python API ({type(model).__qualname__}); no checkpoint kept")
    return store, run_id


def measure(
    model: nn.Module,
    data: str | ImageDataset | Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    terms: Sequence[str] | None = None,
    projector: nn.Module | None = None,
    loss_fn: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None = None,
    method: str | None = None,
    store: str | Path | Store | None = None,
    run: str = "external",
    device: str | torch.device | None = None,
    init_model: nn.Module | None = None,
    seed: int = 0,
    augment: str = "abcde",
    color_strength: float = 0.5,
    temperature: float = 0.5,
    data_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | bool | None = True,
    **settings: Any,
) -> Rows:
    """Every empirical term of the theorems for any encoder, as ``clbounds measure`` computes them.

    Args:
        model: [0, 1] images → features; wrapped, its weights never changed (it is put in
            eval mode, and moved to ``device`` when one is given).
        data: a dataset name (``data_options`` go to ``load_dataset``) or tensors.
        terms: term groups (default all; ``clbounds measure --help`` lists them).
        projector: features → projection; ``None`` uses the features as the projection.
        loss_fn: the training loss ``loss_fn(model, (x1, x2)) -> scalar``, for the groups that differentiate it.
        method: the training method's name (a registry key, e.g. ``simclr``), for its own loss when ``loss_fn`` is None.
        store: write the rows into this run store (a folder or a ``Store``).
        run: the name of the run the rows are stored under.
        init_model: the model at its real initial weights, for the random-init control.
        seed: the seed of every random draw of the measurement, as in a config.
        augment: the augmentation letters a–e of Huang et al., as in a config.
        color_strength: the colour-jitter strength, as in a config.
        temperature: the NT-Xent temperature τ, as in a config.
        log: where each group's progress and time go, one line at a time: ``True`` (default)
            prints them to stderr, as ``clbounds measure`` does; ``False`` or ``None`` is silent; a
            callable receives each line.
        settings: ``measure`` (n_samples, views, eps, …) and ``eval`` (knn_k, linear_steps, …) keys.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 16))
        >>> rows = measure(net, "synthetic", terms=["geometry"], data_options={"image_size": 16, "n_train": 40, "n_test": 20, "num_classes": 4},
        ...                n_samples=16, views=2, center_views=1, controls=False)
        >>> 0 <= rows.terms["alignment"] <= 4
        True
    """
    from .measurement.context import make_context
    from .measurement.measure import measure_context
    from .measurement.registry import check_groups, default_groups

    check_groups(terms)
    dev = _device(device, model)
    dataset = as_dataset(data, **(data_options or {}))
    cfg = _config(method, seed, augment, color_strength, temperature, dataset.name, settings)
    wrapped, init = _prepare(model, projector, init_model, seed, dev)
    ctx = make_context(cfg, dataset.to(dev), wrapped, init, dev, loss_fn=loss_fn, init_known=init_model is not None)
    target = _register(store, run, cfg, dataset, model) if store is not None else None
    write = (lambda rows: target[0].add_measurements(target[1], rows)) if target else (lambda rows: None)
    collected: list[Row] = []

    def keep(rows: list[Row]) -> None:
        collected.extend(rows)
        write(rows)

    if log is True:  # a measure can take minutes: say what it is doing, as the command line does
        log = _to_stderr
    _, skipped = measure_context(ctx, list(terms or default_groups(cfg)), keep, log or None)
    return Rows(collected, skipped, target[1] if target else None)


def evaluate(
    model: nn.Module,
    data: str | ImageDataset | Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    store: str | Path | Store | None = None,
    run: str = "external",
    device: str | torch.device | None = None,
    seed: int = 0,
    data_options: Mapping[str, Any] | None = None,
    knn_k: int = 200,
    knn_t: float = 0.1,
    linear_steps: int = 200,
    linear_weight_decay: float = 1e-4,
) -> Rows:
    """The offline probes of ``clbounds eval`` on any encoder's frozen features: kNN, linear, nearest centre.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 16))
        >>> rows = evaluate(net, "synthetic", data_options={"image_size": 16, "n_train": 40, "n_test": 20, "num_classes": 4}, knn_k=5, linear_steps=10)
        >>> sorted(rows.terms)
        ['knn_accuracy', 'linear_accuracy', 'linear_cross_entropy', 'nearest_center_accuracy']
    """
    from .measurement.accuracy import probe_rows

    dev = _device(device, model)
    dataset = as_dataset(data, **(data_options or {})).to(dev)
    cfg = _config(None, seed, "abcde", 0.5, 0.5, dataset.name, {"knn_k": knn_k, "knn_t": knn_t, "linear_steps": linear_steps, "linear_weight_decay": linear_weight_decay})
    wrapped, _ = _prepare(model, None, model, seed, dev)
    rows = probe_rows(wrapped, dataset, cfg.eval, "final-epoch")
    target = _register(store, run, cfg, dataset, model) if store is not None else None
    if target:
        target[0].add_measurements(target[1], rows)
    return Rows(rows, run=target[1] if target else None)
