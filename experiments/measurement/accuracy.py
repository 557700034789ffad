"""`clbounds eval`: probe a trained encoder and store every accuracy with its protocol."""

from __future__ import annotations

import torch

from ..config import ConfigError, EvalConfig, config_from_dict
from ..data_option import data_section
from ..data import ImageDataset
from ..store.db import RunRecord, Store
from ..training.resources import image_shape
from ..training.runs import load_encoder, load_run_data, resolve_device
from .probes import extract_features, knn_predict, linear_probe, nearest_center_accuracy


def probe_rows(model: torch.nn.Module, data: ImageDataset, e: EvalConfig, weights: str, split: str = "test") -> list[tuple[str, float, str]]:
    """kNN, linear and nearest-centre accuracy of ``model``'s frozen features on ``data``,
    with protocols naming k, t, the probe's steps and weight decay, and ``weights``."""
    f_tr = extract_features(model, data.x_train)
    f_te = extract_features(model, data.x_test)
    k = data.num_classes
    knn = knn_predict(f_tr, data.y_train, f_te, k, k=e.knn_k, t=e.knn_t)
    knn_acc = (knn == data.y_test).float().mean().item()
    lin = linear_probe(f_tr, data.y_train, f_te, data.y_test, k, steps=e.linear_steps, weight_decay=e.linear_weight_decay)
    nc_acc = nearest_center_accuracy(f_tr, data.y_train, f_te, data.y_test, k)
    lin_protocol = f"linear offline lbfgs steps={e.linear_steps} wd={e.linear_weight_decay:g} {weights} {split}"
    return [
        ("knn_accuracy", knn_acc, f"knn k={e.knn_k} t={e.knn_t:g} cosine-weighted offline {weights} {split}"),
        ("linear_accuracy", lin["accuracy"], lin_protocol),
        ("linear_cross_entropy", lin["cross_entropy"], lin_protocol),
        ("nearest_center_accuracy", nc_acc, f"nearest-centre normalised offline {weights} {split}"),
    ]


def evaluate(record: RunRecord, store: Store, random_init: bool = False) -> list[tuple[str, float, str]]:
    """Runs the offline probes on ``record`` and stores (name, value, protocol) rows.

    With ``random_init`` the same architecture at its initial weights is probed instead,
    the baseline that a trained encoder must beat; its protocols say ``random-init``.
    """
    cfg = config_from_dict(record.config)
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    model = load_encoder(record, data.image_shape, random_init).to(device)
    rows = probe_rows(model, data, cfg.eval, "random-init" if random_init else "final-epoch")
    store.add_measurements(record.id, rows)
    if not random_init:
        write_embedding_map(model, data, record.path / "tsne.csv", cfg.seed)
    return rows


def evaluate_transfer(record: RunRecord, store: Store, probe_data: str) -> list[tuple[str, float, str]]:
    """Transfer probes: the run's frozen encoder, probes fitted on the training split of
    another dataset ``probe_data`` and scored on its test split (robust CL, PAPERS §1).

    The other dataset is drawn at the run's image size (``synthetic`` and ``digits`` are
    resized; CIFAR and STL have fixed sizes and must match). The encoder keeps the input
    normalisation it was trained with. Rows are named ``<probe>@<dataset>``, e.g.
    ``knn_accuracy@digits``, and every protocol names both datasets.
    """
    from ..data import dataset_names, dataset_spec

    section = data_section(probe_data)  # "npz:PATH" and "folder:PATH": the user's own data
    name = section["name"]
    if name not in dataset_names():
        raise ConfigError(f"--probe-data {probe_data!r} is not a dataset; choose one of {', '.join(dataset_names())} (npz and folder as npz:PATH, folder:PATH)")
    cfg = config_from_dict(record.config)
    device = resolve_device(cfg.device)
    shape = image_shape(cfg)
    side = shape[-1]
    raw = cfg.to_dict()
    raw["data"] = {**raw["data"], **section, "image_size": side if dataset_spec(name).resizable else None, "imbalanced": False}
    probe_cfg = config_from_dict(raw)
    probe_side = image_shape(probe_cfg)[-1]
    if probe_side != side:
        raise ConfigError(f"--probe-data {probe_data}: its images are {probe_side}x{probe_side}, the run's encoder takes {side}x{side}")
    data = load_run_data(probe_cfg).to(device)
    model = load_encoder(record, shape).to(device)
    weights = f"final-epoch encoder trained on {cfg.data.name}; transfer: probes fitted on {probe_data} train (n={data.x_train.shape[0]}, {side}x{side})"
    split = f"and scored on {probe_data} test (n={data.x_test.shape[0]})"
    rows = [(f"{name}@{probe_data}", value, protocol) for name, value, protocol in probe_rows(model, data, cfg.eval, weights, split)]
    store.add_measurements(record.id, rows)
    return rows


TSNE_POINTS = 300  # test inputs in the per-run t-SNE map: enough to see the classes, about a second


def write_embedding_map(model: torch.nn.Module, data: ImageDataset, path, seed: int) -> None:
    """A 2-D t-SNE map (scikit-learn) of the normalised test features of up to ``TSNE_POINTS``
    inputs, with their labels, for the report's per-run embedding figure (figures/ draws it)."""
    import csv

    from sklearn.manifold import TSNE

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.x_test.shape[0], generator=g)[:TSNE_POINTS].to(data.x_test.device)
    feats = torch.nn.functional.normalize(extract_features(model, data.x_test[idx]), dim=1).cpu().double().numpy()
    if feats.shape[0] < 5:
        return
    xy = TSNE(n_components=2, perplexity=min(30.0, (feats.shape[0] - 1) / 3), init="pca", random_state=seed, max_iter=500).fit_transform(feats)
    labels = data.y_test[idx].cpu().tolist()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "label"])
        w.writerows([float(a), float(b), int(c)] for (a, b), c in zip(xy, labels))
    tmp.replace(path)
