"""The training loop: one readable top-down flow from config to checkpointed encoder.

    config → data (uint8, on device) → encoder → optimizer
    for each epoch:  shuffle → two augmented views → loss → step   (cosine lr)
                     checkpoint (atomic) → progress

Determinism: the batch order and every augmentation of epoch e come from a generator
seeded by (seed, e), and a checkpoint is written at the end of every epoch. A resumed run
therefore replays exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import torch
from tqdm.auto import tqdm

from theory.losses import barlow_twins, info_nce

from .augment import Augment
from .checkpoint import load_training_state, save_training_state, save_weights
from .config import Config, dump_config
from .data import CHANNEL_STATS, ImageDataset, load_dataset
from .encoders import Encoder
from .optim import build_optimizer, cosine_lr
from .store import RunRecord, Store


class DivergenceError(RuntimeError):
    """The loss became non-finite; the run is marked failed and its last good checkpoint kept."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_run_data(cfg: Config) -> ImageDataset:
    d = cfg.data
    return load_dataset(
        d.name, root=d.root, image_size=d.image_size, num_classes=d.num_classes, n_train=d.n_train,
        n_test=d.n_test, seed=cfg.seed, synthetic=vars(d.synthetic),
    )


def build_encoder(cfg: Config, image_shape: tuple[int, int, int]) -> Encoder:
    mean, std = CHANNEL_STATS[cfg.data.name]
    e = cfg.encoder
    return Encoder(e.arch, image_shape, width=e.width, proj_hidden=e.proj_hidden, proj_dim=e.proj_dim, mean=mean, std=std)


def ssl_loss(cfg: Config) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The self-supervised loss of the method, as a function of the two projections."""
    m = cfg.method
    if m.name == "simclr":
        return partial(info_nce, temperature=m.temperature)
    if m.name == "barlow_twins":
        return partial(barlow_twins, lambd=m.lambd)
    raise ValueError(f"unknown method {m.name!r}")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch (batch order and views), independent of any other epoch."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train(cfg: Config, store: Store, progress: bool = True) -> RunRecord:
    """Trains (or resumes, or skips) the run that ``cfg`` defines, and returns its record."""
    run_id = cfg.run_id()
    run_dir = store.run_dir(run_id)
    weights_path, state_path = run_dir / "encoder.safetensors", run_dir / "state.safetensors"
    existing = store.get_run(run_id)
    if existing is not None and existing.status == "done" and weights_path.is_file():
        return existing
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    store.upsert_run(run_id, cfg.to_dict(), status="running")

    # ---- hyperparameters, all from the config --------------------------------------------
    device = resolve_device(cfg.device)
    o = cfg.optim
    torch.manual_seed(cfg.seed)  # fixes the initial weights

    data = load_run_data(cfg).to(device)  # uint8 images stay on the device
    model = build_encoder(cfg, data.image_shape).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(o.name, model, o.lr, o.momentum, o.weight_decay)
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    loss_fn = ssl_loss(cfg)

    n = data.x_train.shape[0]
    batch_size = min(o.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the last partial batch: every step sees B negatives
    total_steps, warmup_steps = o.epochs * steps_per_epoch, o.warmup_epochs * steps_per_epoch

    start_epoch = 0
    if state_path.is_file():
        start_epoch = load_training_state(model, optimizer, state_path)["epoch"]

    # ---- the loop ------------------------------------------------------------------------
    bar = tqdm(range(start_epoch, o.epochs), desc=f"train {run_id}", disable=not progress, initial=start_epoch, total=o.epochs)
    for epoch in bar:
        model.train()
        g = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(n, generator=g).to(device)
        loss_sum = torch.zeros((), device=device)
        first_bad_step = torch.full((), -1, device=device)  # tracked on device: no sync per step
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, o.lr, warmup_steps)
            x = data.x_train[order[i * batch_size : (i + 1) * batch_size]]
            v1, v2 = augment(x, g), augment(x, g)
            if device.type == "cuda":
                v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z1, z2 = model.projector(model(v1)), model.projector(model(v2))
            loss = loss_fn(z1.float(), z2.float())

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            loss = loss.detach()
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step, first_bad_step)
            loss_sum += loss

        if int(first_bad_step) >= 0:
            kept = f"the checkpoint after epoch {epoch} was kept" if epoch > 0 else "no checkpoint had been written yet"
            message = f"loss became non-finite at step {int(first_bad_step)} (epoch {epoch + 1}); {kept}"
            store.set_status(run_id, "failed", message)
            raise DivergenceError(f"run {run_id}: {message}")
        seconds = time.perf_counter() - t0
        mean_loss = float(loss_sum) / steps_per_epoch
        views_per_s = 2 * steps_per_epoch * batch_size / seconds

        save_training_state(model, optimizer, state_path, {"epoch": epoch + 1, "loss": mean_loss})
        save_weights(model, weights_path, {"run": run_id, "epoch": str(epoch + 1)})
        bar.set_postfix(loss=f"{mean_loss:.4f}", views_per_s=f"{views_per_s:.0f}")

    if start_epoch < o.epochs:  # something was trained in this call
        store.add_measurements(run_id, [
            ("train_loss", mean_loss, f"{cfg.method.name} loss, mean over the final epoch"),
            ("train_views_per_s", views_per_s, f"final epoch, device={device.type}"),
        ])
    store.set_status(run_id, "done")
    record = store.get_run(run_id)
    assert record is not None
    return record
