"""The training loop: one readable top-down flow from config to checkpointed encoder.

    config → data (uint8, on device) → networks → optimizer (+ SAM)
    for each epoch:  shuffle → views (K+1 augmentations, Fourier mixing, a PGD view)
                     → [discriminator step] → L_sharp + L_rest → step (SAM on L_sharp)   (cosine lr)
                     checkpoint (atomic) → progress

What differs between methods each method declares in its module under ``methods/`` (a
``Method``: criterion, losses, views, networks, SAM, Fourier, a PGD view; the table in
``methods/__init__.py`` says which method uses what); this loop is the same for all of them.

Networks: ``encoder`` is what ``encoder.safetensors`` holds, what the probes and ``measure``
load. two_network adds a ``key`` network (the encoder is then the *query* network) and
robust_cl a ``discriminator``; both live in ``state.safetensors`` with the optimizer, so a
resumed run is bitwise the run that was not interrupted. One optimizer holds them all (the
discriminator as its own parameter group with its own learning rate): a step moves only the
parameters that have gradients, so the discriminator's update and the encoder's are
separate ``optimizer.step()`` calls.

Determinism: the batch order, every augmentation, Fourier partner and PGD start of epoch e
come from a generator seeded by (seed, e), and a checkpoint is written at the end of every
epoch. A resumed run therefore replays exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm  # plain text everywhere: tqdm.auto warns in a notebook without ipywidgets

from clbounds.theory.optimization import relative_weight_movement
from clbounds.theory.validation import unchecked_values

from ..config import Config, dump_config
from ..data import ImageDataset
from ..errors import CheckpointError
from ..models.checkpoint import load_training_state, save_training_state, save_weights
from ..models.encoders import Encoder
from ..store.db import RunRecord, Store
from ..store.locks import mark_orphaned_runs, run_lock as _run_lock
from . import distributed
from .augment import Augment, fourier_amplitude_mix
from .methods import adversarial_view, discriminator_step_loss, get_method, method_losses, ssl_loss, uses_fourier, uses_sam, views_per_image
from .optim import build_optimizer, cosine_lr
from .resources import check_fits
from .runs import batch_size_of, build_networks, load_run_data, resolve_device
from .sam import SAM, sam_update

__all__ = ["DivergenceError", "build_run_optimizer", "epoch_generator", "log_epoch", "mark_orphaned_runs", "train", "train_in_memory"]


class DivergenceError(RuntimeError):
    """The loss became non-finite; the run is marked failed and its last good checkpoint kept."""


def build_run_optimizer(cfg: Config, nets: nn.ModuleDict) -> torch.optim.Optimizer:
    """The optimizer of ``optim`` over the encoder (and key network); the discriminator is a
    second parameter group with lr ``method.disc_lr``. Each group keeps its ``base_lr``."""
    o = cfg.optim
    networks = nn.ModuleDict({k: v for k, v in nets.items() if k != "discriminator"})
    optimizer = build_optimizer(o.name, networks, o.lr, o.momentum, o.weight_decay)
    optimizer.param_groups[0]["base_lr"] = o.lr
    if "discriminator" in nets:
        optimizer.add_param_group({"params": list(nets["discriminator"].parameters()), "lr": cfg.method.disc_lr, "base_lr": cfg.method.disc_lr})
    return optimizer


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch (batch order and views), independent of any other epoch."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _dynamics_protocol(cfg: Config, batch_size: int, n: int) -> str:
    kind = "full-batch" if batch_size == n else f"batch {batch_size}"
    views = "fixed views" if cfg.method.fixed_views else "fresh views each epoch"
    return f"two-network {kind} {cfg.optim.name} lr={cfg.optim.lr:g}, {views}, query+key networks, all parameters"


METRICS_FIELDS = ("epoch", "loss", "lr", "epoch_seconds", "views_per_s")


def log_epoch(run_dir: Path, row: dict[str, float], tensorboard: Any = None) -> None:
    """One row per epoch in ``<run>/metrics.csv`` (and TensorBoard scalars when it is installed).

    The file is rewritten with the rows of earlier epochs only, then this one: an epoch replayed
    after a crash replaces its row instead of repeating it. Written to a temporary file and
    renamed, like the checkpoints."""
    path = run_dir / "metrics.csv"
    kept = []
    if path.is_file():
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) < row["epoch"]]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_FIELDS)
        writer.writeheader()
        writer.writerows(kept)
        writer.writerow({k: row[k] for k in METRICS_FIELDS})
    os.replace(tmp, path)
    if tensorboard is not None:
        for k in METRICS_FIELDS[1:]:
            tensorboard.add_scalar(f"train/{k}", row[k], int(row["epoch"]))
        tensorboard.flush()


def _tensorboard(run_dir: Path, start_epoch: int) -> Any:
    """A TensorBoard writer, or None without the optional package. A resumed run purges the
    events at and after its first replayed epoch (as metrics.csv replaces its rows), and
    :func:`log_epoch` flushes every epoch, so a crash loses nothing written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: `pip install tensorboard` turns it on
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_epoch + 1 if start_epoch else None)


def train(cfg: Config, store: Store, progress: bool = True) -> RunRecord:
    """Trains (or resumes, or skips) the run that ``cfg`` defines, and returns its record."""
    get_method(cfg.method.name)  # a config error (exit 2) for a method that is not trained here
    run_id = cfg.run_id()
    run_dir = store.run_dir(run_id)
    weights_path, state_path = run_dir / "encoder.safetensors", run_dir / "state.safetensors"
    if distributed.world_size_from_env() > 1:
        return _train_distributed(cfg, store, run_id, run_dir, weights_path, state_path, progress)
    if (done := _finished(store, run_id, weights_path)) is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir, run_id):  # a second trainer of this run waits here, then finds it done
        if (done := _finished(store, run_id, weights_path)) is not None:
            return done
        _remove_stale(run_dir)
        return _train_marked(cfg, store, run_id, run_dir, weights_path, state_path, progress)


def _train_distributed(cfg: Config, store: Store, run_id: str, run_dir: Path, weights_path: Path, state_path: Path, progress: bool) -> RunRecord:
    """:func:`train` under torchrun: every rank joins the group first; rank 0 takes the run's
    lock, decides (trained already, or train) and tells the others, so no rank can wait in a
    collective that another skipped."""
    ctx, _ = distributed.init_from_env(resolve_device(cfg.device))
    try:
        return _decide_and_train(cfg, store, ctx, run_id, run_dir, weights_path, state_path, progress)
    finally:
        distributed.shutdown()  # every rank, once the run is done (or failed): nothing of gloo outlives it


def _decide_and_train(cfg: Config, store: Store, ctx: distributed.RankContext, run_id: str, run_dir: Path, weights_path: Path, state_path: Path,
                      progress: bool) -> RunRecord:
    """Rank 0 decides under the run's lock and tells the others; then every rank trains, or returns the record."""
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with _run_lock(run_dir, run_id):
            existing = _finished(store, run_id, weights_path)
            if existing is None:
                _remove_stale(run_dir)  # before the others start reading the run folder
            distributed.from_rank0(existing is not None)
            if existing is not None:
                return existing
            return _train_marked(cfg, store, run_id, run_dir, weights_path, state_path, progress)
    if distributed.from_rank0(None):
        return _record(store, run_id)
    with unchecked_values():  # the other ranks: rank 0 marks and writes
        return _train(cfg, store, run_id, run_dir, weights_path, state_path, progress=False)


def _finished(store: Store, run_id: str, weights_path: Path) -> RunRecord | None:
    """The run's record when it is done and its weights are there, else None."""
    existing = store.get_run(run_id)
    return existing if existing is not None and existing.status == "done" and weights_path.is_file() else None


def _remove_stale(run_dir: Path) -> None:
    """Temporary files of a write cut short by a crash; the caller holds the run's lock, so no one else is writing."""
    for stale in run_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _train_marked(cfg: Config, store: Store, run_id: str, run_dir: Path, weights_path: Path, state_path: Path, progress: bool) -> RunRecord:
    """:func:`_train` with the run marked running, and failed (with the reason) on any exception."""
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    store.upsert_run(run_id, cfg.to_dict(), status="running")
    try:
        # The losses' NaN/inf check of their inputs would sync a GPU every step; the loop
        # tracks a non-finite loss on the device and checks the weights each epoch instead.
        with unchecked_values():
            return _train(cfg, store, run_id, run_dir, weights_path, state_path, progress)
    except DivergenceError:
        raise  # already marked failed, with the step and what was kept
    except BaseException as err:  # noqa: BLE001 - any failure, Ctrl-C included: the run is not running any more
        kept = "the last completed epoch's checkpoint is kept; rerun to resume" if state_path.is_file() else "no checkpoint had been written"
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
        with contextlib.suppress(Exception):  # a broken store cannot record it; the original error still surfaces
            store.set_status(run_id, "failed", f"{reason}; {kept}")
        raise


@dataclass
class _Run:
    """Everything the epochs of one training need, built from the config by :func:`_setup`."""

    ctx: distributed.RankContext
    device: torch.device
    data: ImageDataset
    nets: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    sam: SAM | None
    augment: Augment
    loss_fn: Callable[..., torch.Tensor]
    n_views: int  # augmented views per image
    fourier: bool
    adversarial: bool
    log_dynamics: bool  # Wen (PAPERS §3): gradient norm and weight movement per step
    initial: dict[str, torch.Tensor]  # the initial weights, for the weight movement
    batch_size: int
    steps_per_epoch: int
    start_epoch: int = 0
    train_seconds: float = 0.0
    info: dict = field(default_factory=dict)  # the resumed state's info

    @property
    def model(self) -> nn.Module:
        return self.nets["encoder"]

    @property
    def n(self) -> int:
        return self.data.x_train.shape[0]


def _setup(cfg: Config, state_path: Path | None, data: ImageDataset | None = None) -> _Run:
    """Device, data, networks, optimizer (+ SAM), views and loss of the method, and the resumed
    state; in this order, since the seed fixes the initial weights. ``data`` replaces the run's
    own (a part of its training split, for the training-sample certificate's prior)."""
    ctx, device = distributed.init_from_env(resolve_device(cfg.device))  # rank 0 of 1 without torchrun
    check_fits(cfg, device)  # a config error now, not an allocation failure minutes in
    o, m, method = cfg.optim, cfg.method, get_method(cfg.method.name)
    torch.manual_seed(cfg.seed)  # fixes the initial weights

    data = (load_run_data(cfg) if data is None else data).to(device)  # uint8 images stay on the device
    nets = build_networks(cfg, data.image_shape).to(device)
    if ctx.world > 1:  # BatchNorm over the global batch, before the optimizer sees the parameters
        distributed.globalise_batchnorm(nets)
    if device.type == "cuda":
        nets = nets.to(memory_format=torch.channels_last)
    if cfg.compile:  # in place: parameter names, and so checkpoints, are unchanged
        for net in nets.values():
            net.compile()
            if isinstance(net, Encoder):
                net.projector.compile()  # called on its own: project() runs projector(encoder(x))
    optimizer = build_run_optimizer(cfg, nets)
    sam = SAM(nets["encoder"].parameters(), optimizer, m.rho, adaptive=m.adaptive) if uses_sam(cfg) else None
    augment = Augment(cfg.augment, image_size=data.image_shape[-1], color_strength=cfg.color_strength)
    loss_fn = ssl_loss(cfg)
    if ctx.world > 1:  # the loss of the global batch, on the projections of every rank
        loss_fn = distributed.gathered(loss_fn, dim=method.gather_dim)
    log_dynamics = method.logs_dynamics
    initial = {k: p.detach().clone() for k, p in nets.named_parameters()} if log_dynamics else {}

    n = data.x_train.shape[0]
    batch_size = batch_size_of(cfg, n)
    if ctx.world > 1:
        distributed.check_supported(cfg, batch_size, ctx.world)
    run = _Run(ctx, device, data, nets, optimizer, sam, augment, loss_fn, views_per_image(cfg), uses_fourier(cfg), method.adversarial,
               log_dynamics, initial, batch_size, steps_per_epoch=n // batch_size)  # drop the last partial batch: every step sees B negatives

    if state_path is not None and state_path.is_file():
        run.info = load_training_state(nets, optimizer, state_path)
        run.start_epoch, run.train_seconds = run.info["epoch"], run.info.get("seconds", 0.0)
    if len(set(distributed.every_rank(run.start_epoch))) > 1:  # each rank read the state: a rank that saw another would train other steps
        raise CheckpointError(f"the ranks read different training states from {state_path} (epochs {distributed.every_rank(run.start_epoch)}); "
                              "the run folder must be one shared folder")
    if run.start_epoch > o.epochs:
        raise CheckpointError(f"training state {state_path} is at epoch {run.start_epoch}, past this config's {o.epochs}; delete it to retrain")
    return run


def _epoch(cfg: Config, run: _Run, epoch: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, torch.Tensor, float]]]:
    """One epoch of steps; returns (sum of the step losses, the first step with a non-finite
    loss or -1, the dynamics rows), all kept on the device: no sync per step."""
    o, m, nets, optimizer, device = cfg.optim, cfg.method, run.nets, run.optimizer, run.device
    model, discriminator = run.model, nets["discriminator"] if "discriminator" in nets else None
    total_steps, warmup_steps = o.epochs * run.steps_per_epoch, o.warmup_epochs * run.steps_per_epoch
    nets.train()
    g = epoch_generator(cfg.seed, 0 if m.fixed_views else epoch)
    order = torch.randperm(run.n, generator=g).to(device)
    loss_sum = torch.zeros((), device=device)
    first_bad_step = torch.full((), -1, device=device)
    dynamics: list[tuple[int, torch.Tensor, float]] = []
    for i in range(run.steps_per_epoch):
        step = epoch * run.steps_per_epoch + i
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total_steps, group["base_lr"], warmup_steps)
        x = run.data.x_train[order[i * run.batch_size : (i + 1) * run.batch_size]]

        # views: K+1 augmentations (2 but for CACR), Fourier mixing (SSA-CLR), a PGD view (robust)
        views = [run.augment(x, g) for _ in range(run.n_views)]
        if run.fourier:
            views = [fourier_amplitude_mix(v, m.fourier_eta, g) for v in views]
        if run.ctx.world > 1:  # the global batch's views, as on one device; this rank's rows of each
            views = [run.ctx.shard(v) for v in views]
        if device.type == "cuda":
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        if run.adversarial:
            x_adv = adversarial_view(cfg, model, discriminator, views[0], views[1], g)
            if discriminator is not None:  # the discriminator's own step, on detached features
                optimizer.zero_grad(set_to_none=True)
                discriminator_step_loss(model, discriminator, views[1], x_adv).backward()
                optimizer.step()  # only the discriminator has gradients
            views.append(x_adv)

        # the update: minimise L_sharp + L_rest, with SAM/ASAM on L_sharp where the method has it
        optimizer.zero_grad(set_to_none=True)
        sharp, rest = method_losses(cfg, nets, views, run.loss_fn)
        loss = sharp if rest is None else sharp + rest
        if run.sam is not None:
            sam_update(run.sam, model, sharp, rest, lambda: method_losses(cfg, nets, views, run.loss_fn, sharp_only=True)[0])
        else:
            loss.backward()
            if run.ctx.world > 1:
                distributed.sum_gradients(nets.parameters())
            if run.log_dynamics:  # at (W_t, V_t), before the update
                grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in nets.parameters() if p.grad is not None]))
                dynamics.append((step, grad_norm, relative_weight_movement(nets, run.initial)))
            optimizer.step()

        loss = loss.detach()
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step, first_bad_step)
        loss_sum += loss
    return loss_sum, first_bad_step, dynamics


def _nonfinite(run: _Run, epoch: int, first_bad_step: torch.Tensor) -> str | None:
    """What became non-finite in the epoch: its loss at a step or, after its last update, the weights; None if nothing."""
    if int(first_bad_step) >= 0:
        return f"loss became non-finite at step {int(first_bad_step)} (epoch {epoch + 1})"
    if not bool(torch.stack([torch.isfinite(p).all() for p in run.nets.parameters()]).all()):  # an overflow in the epoch's last update
        return f"the weights became non-finite in epoch {epoch + 1} while the loss stayed finite"
    return None


def _check_finite(store: Store, run_id: str, run: _Run, epoch: int, first_bad_step: torch.Tensor) -> None:
    """Raises :class:`DivergenceError` (the run marked failed, the last checkpoint kept) when :func:`_nonfinite` finds something."""
    if (problem := _nonfinite(run, epoch, first_bad_step)) is None:
        return
    kept = f"the checkpoint after epoch {epoch} was kept" if epoch > 0 else "no checkpoint had been written yet"
    message = f"{problem}; {kept}"
    if run.ctx.main:
        store.set_status(run_id, "failed", message)
    raise DivergenceError(f"run {run_id}: {message}")


def _epoch_rows(cfg: Config, run: _Run, epoch: int, mean_loss: float, dynamics: list[tuple[int, torch.Tensor, float]]) -> list[tuple[str, float, str]]:
    """The rows an epoch stores: its mean loss, and for two_network the dynamics of its steps."""
    rows = [("train_epoch_loss", mean_loss, f"epoch={epoch + 1} {cfg.method.name} loss, mean over the epoch's {run.steps_per_epoch} steps")]
    if dynamics:
        proto = _dynamics_protocol(cfg, run.batch_size, run.n)
        rows += [
            row for t, gn, wm in dynamics for row in (
                ("train_gradient_norm", float(gn), f"step={t} ||grad_(W,V) L||_F at (W_t, V_t), {proto}"),
                ("train_weight_movement", wm, f"step={t} ||(W_t,V_t)-(W_0,V_0)||_F / ||(W_0,V_0)||_F, {proto}"),
            )
        ]
    return rows


def _train(cfg: Config, store: Store, run_id: str, run_dir: Path, weights_path: Path, state_path: Path, progress: bool) -> RunRecord:
    """The training itself (see :func:`train`): setup, then epochs, each checkpointed."""
    run = _setup(cfg, state_path)
    o, ctx = cfg.optim, run.ctx
    tensorboard = _tensorboard(run_dir, run.start_epoch) if ctx.main else None  # None unless the optional tensorboard package is installed
    mean_loss, views_per_s = run.info.get("loss", math.nan), run.info.get("views_per_s", math.nan)

    bar = tqdm(range(run.start_epoch, o.epochs), desc=f"train {run_id}", disable=not (progress and ctx.main), initial=run.start_epoch, total=o.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        loss_sum, first_bad_step, dynamics = _epoch(cfg, run, epoch)
        _check_finite(store, run_id, run, epoch, first_bad_step)
        seconds = time.perf_counter() - t0
        run.train_seconds += seconds
        mean_loss = float(loss_sum) / run.steps_per_epoch
        views_per_s = (run.n_views + run.adversarial) * run.steps_per_epoch * run.batch_size / seconds

        # measurements first: a crash before the checkpoint replays this epoch and rewrites them
        if ctx.main:  # the other ranks hold the same weights and state
            store.add_measurements(run_id, _epoch_rows(cfg, run, epoch, mean_loss, dynamics))
            log_epoch(run_dir, {"epoch": epoch + 1, "loss": mean_loss, "lr": run.optimizer.param_groups[0]["lr"], "epoch_seconds": seconds, "views_per_s": views_per_s}, tensorboard)
            save_training_state(run.nets, run.optimizer, state_path, {"epoch": epoch + 1, "loss": mean_loss, "seconds": run.train_seconds, "views_per_s": views_per_s})
            save_weights(run.model, weights_path, {"run": run_id, "epoch": str(epoch + 1)})
        bar.set_postfix(loss=f"{mean_loss:.4f}", views_per_s=f"{views_per_s:.0f}")

    if tensorboard is not None:
        tensorboard.close()
    if not ctx.main:  # rank 0 writes the final weights and rows; wait for them
        distributed.barrier()
        return _record(store, run_id)
    if run.start_epoch == o.epochs:
        # A crash after the final state but before the final weights or rows: the state holds
        # the final model, so write both from it (the weights bitwise those of an uninterrupted run).
        save_weights(run.model, weights_path, {"run": run_id, "epoch": str(o.epochs)})
    _finish(cfg, store, run_id, run, mean_loss, views_per_s)
    return _record(store, run_id)


def train_in_memory(cfg: Config, data: ImageDataset) -> nn.Module:
    """The run's training flow on ``data`` (same seed, initial weights, augmentations and schedule), held in memory:
    no store, checkpoint or rows (the training-sample certificate's prior encoder, on part of the split). Returns the
    encoder in eval mode; a non-finite loss or weights raise :class:`DivergenceError`."""
    run = _setup(cfg, None, data)
    for epoch in range(cfg.optim.epochs):
        _, first_bad_step, _ = _epoch(cfg, run, epoch)
        if (problem := _nonfinite(run, epoch, first_bad_step)) is not None:
            raise DivergenceError(f"training on {run.n} images: {problem}")
    return run.model.eval()


def _finish(cfg: Config, store: Store, run_id: str, run: _Run, mean_loss: float, views_per_s: float) -> None:
    """The final rows (unless stored already and nothing was trained), then the run is done."""
    o, m, ctx = cfg.optim, cfg.method, run.ctx
    have_final_rows = any(r["name"] == "train_loss" for r in store.measurements(run_id))
    if run.start_epoch < o.epochs or not have_final_rows:  # something was trained in this call, or its final rows were lost
        rows = [
            ("train_loss", mean_loss, f"{m.name} loss, mean over the final epoch"),
            ("train_views_per_s", views_per_s, f"final epoch, device={run.device.type}, processes={ctx.world}"),
            ("train_wall_s", run.train_seconds, f"sum of epoch wall times over {o.epochs} epochs, device={run.device.type}, processes={ctx.world}, torch threads={torch.get_num_threads()}"),
        ]
        if run.log_dynamics:
            proto = _dynamics_protocol(cfg, run.batch_size, run.n)
            total_steps = o.epochs * run.steps_per_epoch
            norms = [r["value"] for r in store.measurements(run_id) if r["name"] == "train_gradient_norm"]
            rows += [
                ("min_gradient_norm", min(norms), f"min over steps t < T={total_steps} of ||grad_(W,V) L(W_t, V_t)||_F, {proto}"),
                ("weight_movement", relative_weight_movement(run.nets, run.initial), f"||(W_T,V_T)-(W_0,V_0)||_F / ||(W_0,V_0)||_F after T={total_steps} steps, {proto}"),
            ]
        store.add_measurements(run_id, [r for r in rows if math.isfinite(r[1])])  # a state from before views/s was kept has none
    store.set_status(run_id, "done")
    distributed.barrier()  # the other ranks return once the run is done


def _record(store: Store, run_id: str) -> RunRecord:
    record = store.get_run(run_id)
    assert record is not None
    return record
