"""One epoch of SimCLR training with ``clbounds train`` against a plain single-file loop.

The peer is what a researcher writes without clbounds: the same data (``load_run_data``),
the same network and initialisation (``build_networks`` after ``torch.manual_seed``), the same
kornia views drawn from the same generator, the same ``info_nce``, ``torch.optim.SGD`` with
the same cosine learning rate, then ``torch.save`` of the weights: a naive loop with nothing
else. Ours is ``train()`` on the same config into a fresh store, with everything it adds:
the config and memory checks, the run's lock and status rows, the non-finite tracking, the
epoch's rows, ``metrics.csv``, and the atomic safetensors checkpoint and weights.

Both compute the same steps, so the check is that their mean loss over the epoch agrees.
The timed call is the whole run, start-up and writes included; the note gives the ratio of
the step loops alone (clbounds' ``train_wall_s`` against the peer's loop timer).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from clbounds.experiments.config import load_config
from clbounds.experiments.store.db import Store
from clbounds.experiments.training.loop import epoch_generator, train
from clbounds.experiments.training.runs import build_networks, load_run_data
from clbounds.experiments.training.augment import Augment
from clbounds.experiments.training.optim import cosine_lr
from clbounds.theory.losses import info_nce

from .harness import Agreement, Case

SIZES = {"full": (256, 20, 0.5), "tiny": (32, 2, 0.125)}  # batch, steps, encoder width


def config(size: str):
    b, steps, width = SIZES[size]
    return load_config("quick-simclr-synthetic", ["device=cpu", "data.image_size=16", f"data.n_train={b * steps}", "data.n_test=20",
                                                   "optim.epochs=1", f"optim.batch_size={b}", f"encoder.width={width}"])


def plain_simclr_epoch(cfg, out: Path) -> tuple[float, float]:
    """The naive loop; returns (mean loss, seconds of the step loop)."""
    data = load_run_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_networks(cfg, data.image_shape)["encoder"]
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    o = cfg.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    n, b = data.x_train.shape[0], o.batch_size
    steps = n // b
    g = epoch_generator(cfg.seed, 0)
    order = torch.randperm(n, generator=g)
    losses = []
    t0 = time.perf_counter()
    model.train()
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(i, steps, o.lr)
        x = data.x_train[order[i * b : (i + 1) * b]]
        v1, v2 = augment(x, g), augment(x, g)
        loss = info_nce(model.projector(model(v1)), model.projector(model(v2)), cfg.method.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    torch.save(model.state_dict(), out / "encoder.pt")
    return sum(losses) / steps, seconds


def case(size: str = "full") -> Case:
    cfg = config(size)
    b, steps, width = SIZES[size]
    scratch = Path(tempfile.mkdtemp(prefix="clbounds-bench-train-"))
    calls = {"ours": 0}
    loops: dict[str, list[float]] = {"ours": [], "peer": []}

    def ours() -> float:
        calls["ours"] += 1
        store = Store(scratch / f"store{calls['ours']}")
        record = train(cfg, store, progress=False)
        rows = {m["name"]: m["value"] for m in store.measurements(record.id)}
        loops["ours"].append(rows["train_wall_s"])
        return rows["train_loss"]

    def peer() -> float:
        loss, seconds = plain_simclr_epoch(cfg, scratch)
        loops["peer"].append(seconds)
        return loss

    def agree(a: float, p: float) -> Agreement:
        return abs(a - p) <= 1e-4 * max(1.0, abs(p)), f"mean loss {a:.6f} vs {p:.6f}"

    def note() -> str:
        if not loops["ours"] or not loops["peer"]:
            return ""
        ours_loop, peer_loop = sorted(loops["ours"])[len(loops["ours"]) // 2], sorted(loops["peer"])[len(loops["peer"]) // 2]
        return (f"the step loops alone: {ours_loop / steps * 1e3:.0f} ms against {peer_loop / steps * 1e3:.0f} ms a step, ratio {ours_loop / peer_loop:.2f} "
                "(medians); the rest of the whole-run ratio is clbounds' start-up checks and its writes (rows, checkpoint, weights)")

    return Case(name="one epoch of SimCLR training (`train()`)", peer="a plain PyTorch loop of the same steps", ours=ours, run_peer=peer, agree=agree,
                target=1.0, size=f"ConvNet ×{width}, {steps} steps of batch {b}, 16×16, kornia views (augment {cfg.augment}), CPU float32", note_fn=note)
