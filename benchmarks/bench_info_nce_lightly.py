"""``info_nce`` forward + backward against lightly's ``NTXentLoss``, the SimCLR loss researchers use.

lightly's ``NTXentLoss(temperature)`` takes the two views' projections (out0, out1), builds
the [2B, 2B − 1] logits of every anchor against its positive and its 2B − 2 negatives, and
returns their mean cross-entropy: NT-Xent, the same quantity as ``info_nce``, with the same
O(B²) memory. Unlike pytorch-metric-learning's loss (the other ``info_nce`` row), this peer
is the fair one, and the issue's B = 512 fits.

lightly is installed by ``make bench`` with ``--no-deps``: it declares torchvision, which
would pull a CUDA torch. Its package ``__init__`` files import torchvision (models, data,
transforms), while the loss module needs only ``lightly.utils.dist`` and the memory-bank
module, whose ``lightly.models.utils`` imports ``torchvision.ops.StochasticDepth`` at the top
and uses it only in a ViT helper. :func:`lightly_ntxent` therefore imports the loss module
with lightly's package ``__init__`` files skipped and a placeholder standing in for that one
torchvision import, removed again afterwards; the loss code that runs is lightly's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch

from clbounds.theory.losses import info_nce

from .bench_info_nce import agree, loss_and_grads
from .harness import Case

D, TEMPERATURE = 128, 0.5
SIZES = {"full": 512, "tiny": 16}
PACKAGES = ("lightly", "lightly.loss", "lightly.models", "lightly.models.modules", "lightly.utils")


def lightly_ntxent() -> type:
    """lightly's NTXentLoss class, imported without lightly's torchvision-importing package files."""
    if "lightly.loss.ntx_ent_loss" in sys.modules:
        return sys.modules["lightly.loss.ntx_ent_loss"].NTXentLoss
    spec = importlib.util.find_spec("lightly")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lightly is not installed (`make bench` installs it with --no-deps)")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.ops")}
    stub_vision, stub_ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    stub_ops.StochasticDepth = None  # only lightly.models.utils.add_stochastic_depth_to_blocks uses it
    stub_vision.ops = stub_ops
    try:
        if saved["torchvision"] is None:
            sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub_vision, stub_ops
        for name in PACKAGES:  # namespace-like packages: their submodules import, their __init__ files do not run
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = package
        return importlib.import_module("lightly.loss.ntx_ent_loss").NTXentLoss
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)


def version() -> str:
    from importlib.metadata import version as v

    return v("lightly")


def case(size: str = "full") -> Case:
    peer_class: Any = lightly_ntxent()
    b = SIZES[size]
    d = D if size != "tiny" else 8
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(b, d, generator=g).requires_grad_(True)
    z2 = torch.randn(b, d, generator=g).requires_grad_(True)
    peer_loss = peer_class(temperature=TEMPERATURE)

    def ours() -> tuple[torch.Tensor, ...]:
        return loss_and_grads(info_nce(z1, z2, temperature=TEMPERATURE), z1, z2)

    def peer() -> tuple[torch.Tensor, ...]:
        return loss_and_grads(peer_loss(z1, z2), z1, z2)

    return Case(
        name="`info_nce` forward+backward", peer=f"lightly `NTXentLoss` ({version()})", ours=ours, run_peer=peer, agree=agree, target=1.0,
        size=f"B={b}, D={d}, float32", number=50,
        note="lightly is imported with its package files skipped and a placeholder for the one torchvision import its loss path never uses (benchmarks/bench_info_nce_lightly.py).",
    )
