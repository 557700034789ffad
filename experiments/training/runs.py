"""A run's config made concrete: its device, its data, its networks; and a stored run opened.

Training builds its networks here, and every step after it (eval, measure, certify, the
adversarial probe) opens a finished run with :func:`open_run`, so none of them imports the
training loop. The initial weights are a function of the seed alone: ``build_encoder`` right
after ``torch.manual_seed(seed)``, which :func:`load_encoder` replays for the random-init control.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config, ConfigError, config_from_dict
from ..data import ImageDataset, dataset_spec, load_dataset
from ..models.checkpoint import load_weights
from ..models.encoders import Encoder
from ..store.db import RunRecord
from ..data.subsets import imbalanced_indices
from .methods import get_method

__all__ = ["OpenRun", "batch_size_of", "build_encoder", "build_networks", "load_encoder", "load_run_data", "open_run", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU; a device this machine does
    not have is a config error (exit 2), not torch's assertion deep in the first ``.to()``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: this torch ({torch.__version__}) sees no CUDA device; use device=cpu or device=auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device={name!r}: MPS is not available on this machine; use device=cpu or device=auto")
    return device


def load_run_data(cfg: Config) -> ImageDataset:
    """The run's dataset; with ``data.imbalanced`` class i keeps (i+1)/K of its training samples."""
    d = cfg.data
    data = load_dataset(
        d.name, root=d.root, image_size=d.image_size, num_classes=d.num_classes, n_train=d.n_train,
        n_test=d.n_test, seed=cfg.seed, synthetic=vars(d.synthetic),
    )
    if d.imbalanced:
        keep = imbalanced_indices(data.y_train, data.num_classes, torch.Generator().manual_seed(cfg.seed))
        data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
        if data.train_main is not None:
            data.train_main = data.train_main[keep]
    return data


def batch_size_of(cfg: Config, n: int) -> int:
    """The batch a run trains with on n images: all n for a full-batch method, else
    ``optim.batch_size`` (at most n). An epoch is n // that many steps."""
    return n if get_method(cfg.method.name).full_batch(cfg.method) else min(cfg.optim.batch_size, n)


def build_encoder(cfg: Config, image_shape: tuple[int, int, int]) -> Encoder:
    """The encoder the config describes (dual BatchNorm; the method's initialisation, e.g.
    Gaussian for two_network; an imported encoder's architecture from ``encoder.external``)."""
    e = cfg.encoder
    if e.arch == "external":
        from ..models.external import build_external

        return build_external(e.external)
    mean, std = dataset_spec(cfg.data.name).channel_stats
    model = Encoder(e.arch, image_shape, width=e.width, proj_hidden=e.proj_hidden, proj_dim=e.proj_dim, mean=mean, std=std, dual_bn=e.dual_bn)
    init = get_method(cfg.method.name).encoder_init
    return init(model) if init is not None else model


def build_networks(cfg: Config, image_shape: tuple[int, int, int]) -> nn.ModuleDict:
    """``encoder`` (built first, so its initial weights are those of ``build_encoder`` right
    after ``torch.manual_seed(seed)``), plus the method's own networks, e.g. ``key``
    (two_network) or ``discriminator`` (robust_cl)."""
    nets = nn.ModuleDict({"encoder": build_encoder(cfg, image_shape)})
    nets.update(get_method(cfg.method.name).networks(cfg, lambda: build_encoder(cfg, image_shape)))
    return nets


def load_encoder(record: RunRecord, image_shape: tuple[int, int, int], random_init: bool = False) -> nn.Module:
    """The run's encoder with its final weights, or with its seed's initial weights."""
    cfg = config_from_dict(record.config)
    torch.manual_seed(cfg.seed)  # the same initialisation the training started from
    model = build_encoder(cfg, image_shape)
    if not random_init:
        load_weights(model, record.path / "encoder.safetensors")
    elif (record.path / INIT_WEIGHTS).is_file():  # an import given its real θ₀ (`clbounds import --init`)
        load_weights(model, record.path / INIT_WEIGHTS)
    return model


#: An imported encoder's initial weights (`clbounds import --init`), beside encoder.safetensors.
INIT_WEIGHTS = "init_encoder.safetensors"


def initial_weights_known(record: RunRecord) -> bool:
    """Whether the run's initial weights are the ones its training started from: clbounds' own
    runs (seeded), or an import given them with ``--init``."""
    return record.config.get("encoder", {}).get("arch") != "external" or (record.path / INIT_WEIGHTS).is_file()


@dataclass
class OpenRun:
    """A finished run, ready to measure: its config, device, data and trained encoder."""

    cfg: Config
    device: torch.device
    data: ImageDataset  # on ``device``
    encoder: nn.Module  # the final weights, on ``device``, in eval mode


def open_run(record: RunRecord) -> OpenRun:
    """The run's config, device (``cfg.device``), data (moved to the device) and final encoder,
    in the order every step has always loaded them (the encoder last: it reseeds torch)."""
    cfg = config_from_dict(record.config)
    device = resolve_device(cfg.device)
    data = load_run_data(cfg).to(device)
    encoder = load_encoder(record, data.image_shape).to(device).eval()
    return OpenRun(cfg, device, data, encoder)
