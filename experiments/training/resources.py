"""Will a run fit in memory? Checked from the config, before anything large is allocated.

A config with ``data.n_train=10**9`` or ``encoder.width=60`` is valid key by key, but the
run would die minutes later in an allocation (or take the machine down with it). This
module prices the two allocations that a config decides up front, and raises a
:class:`ConfigError` naming the keys when they exceed the memory that is free:

- the generated dataset (``synthetic``): uint8 images plus the float32 noise that
  :class:`SyntheticGenerator` keeps with each sample, and the float32 temporaries of the
  draw (the other datasets are as large as their files, which the readers check);
- the networks: weights, gradients and optimizer state, counted on the ``meta`` device,
  where building a network allocates nothing.

Activations are not priced: they depend on the batch, the views and the architecture in
ways only a forward pass shows. The ranges of ``optim.batch_size`` and ``measure.views`` in
:mod:`config` bound them instead.

Example:
    >>> from clbounds.experiments.config import Config
    >>> required_bytes(Config())["data"] > 0
    True
"""

from __future__ import annotations

import os

import torch

from ..config import Config, ConfigError

# Bytes per pixel of a generated sample while it is drawn: the kept uint8 image (1) and
# float32 noise (4), plus two float32 temporaries of the composition (8).
_SYNTHETIC_BYTES_PER_PIXEL = 13
# Copies of each weight during training: the weight, its gradient, and up to two optimizer
# buffers (momentum; Adam's two moments), plus SAM's saved perturbation.
_WEIGHT_COPIES = {"sgd": 4, "lars": 4, "adam": 5}
FRACTION_USABLE = 0.8  # leave room for activations and everything else the process holds


def image_shape(cfg: Config) -> tuple[int, int, int]:
    """The (C, H, W) of the run's images, from the config alone."""
    from ..data import dataset_spec

    spec = dataset_spec(cfg.data.name)
    side = (cfg.data.image_size or spec.side) if spec.resizable else spec.side
    return (3, side, side)


def _parameter_count(cfg: Config) -> int:
    from .runs import build_networks  # torch-heavy: only when a size is asked

    with torch.device("meta"):  # shapes only: nothing is allocated, no random number drawn
        nets = build_networks(cfg, image_shape(cfg))
    return sum(p.numel() for p in nets.parameters())


def required_bytes(cfg: Config) -> dict[str, int]:
    """The bytes a run needs for its generated data (host) and its networks' training state."""
    c, h, w = image_shape(cfg)
    data = (cfg.data.n_train + cfg.data.n_test) * c * h * w * _SYNTHETIC_BYTES_PER_PIXEL if cfg.data.name == "synthetic" else 0
    networks = 0 if cfg.encoder.arch == "external" else _parameter_count(cfg) * 4 * _WEIGHT_COPIES[cfg.optim.name]
    return {"data": data, "networks": networks}


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (host memory for the CPU), or None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_fits(cfg: Config, device: torch.device) -> None:
    """Raises a :class:`ConfigError` naming the keys when the run's data or networks would
    not fit in the memory free now (80% of it, to leave room for activations)."""
    need = required_bytes(cfg)
    host = available_bytes(torch.device("cpu"))
    if host is not None and need["data"] > FRACTION_USABLE * host:
        raise ConfigError(
            f"data.n_train={cfg.data.n_train} + data.n_test={cfg.data.n_test} generated images of shape {image_shape(cfg)} "
            f"need about {_gib(need['data'])} while they are drawn; this machine has {_gib(host)} free: lower them or data.image_size"
        )
    free = available_bytes(device)
    if free is not None and need["networks"] > FRACTION_USABLE * free:
        raise ConfigError(
            f"encoder.arch={cfg.encoder.arch} at encoder.width={cfg.encoder.width} (proj_hidden={cfg.encoder.proj_hidden}, "
            f"proj_dim={cfg.encoder.proj_dim}) needs about {_gib(need['networks'])} for weights, gradients and "
            f"{cfg.optim.name} state; {device} has {_gib(free)} free: lower encoder.width"
        )
