"""One training across processes: ``torchrun --nproc_per_node=N $(which clbounds) train ...``.

A run trained on N processes is the *same computation* as on one device, so it keeps its run
id (the config decides it; the process count is not in the config):

- **Data.** Every rank draws the same global batch and the same views (one generator,
  seeded by (seed, epoch), as on one device) and keeps its contiguous shard of B/N rows of
  each view. The views are augmented for the global batch on every rank: kornia draws a
  batch's random parameters from one seed, so only this keeps each row's view identical to
  one device's. The encoder's forward and backward, the cost that matters, are sharded.
- **Loss.** Each rank gathers the projections of all ranks (:func:`gather_with_grad`) and
  evaluates the loss of the *global* batch: InfoNCE and CACR see every rank's negatives,
  and Barlow Twins' cross-correlation is over the global batch. The gather's backward hands
  each rank the gradient of that global loss with respect to its own rows, which is complete
  because the whole loss was computed locally.
- **Gradients.** :func:`sum_gradients` sums (not averages) the parameter gradients of the
  ranks: rank r's gradient is ∂L/∂θ through rank r's rows, and the sum over r is ∂L/∂θ.
  Averaging, as DDP does, would scale the step by 1/N (the bug of lightly #1977); summing
  local losses that each count the global batch would scale it by N.
- **BatchNorm** always uses the statistics of the global batch (:class:`GlobalBatchNorm`,
  the ``sync_bn: true`` of other trainers, always on): per-rank statistics would make a
  different run under the same id. Its all-reduce is differentiable, and its backward sums
  over ranks, which is exact under the summed-gradient convention above.
- **Writes.** Only rank 0 writes checkpoints, weights and rows; every rank can resume from
  the state rank 0 wrote.

The backend is NCCL on CUDA (one device per process, ``cuda:LOCAL_RANK``) and gloo on the
CPU. Methods whose step is not a plain loss of the views' projections (SAM, PGD views, the
two-network and full-batch runs) are refused with a config error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .. import environment
from ..config import Config, ConfigError

__all__ = ["RankContext", "GlobalBatchNorm", "gather_with_grad", "gathered", "globalise_batchnorm", "init_from_env", "sum_gradients"]

@dataclass(frozen=True)
class RankContext:
    """This process's place among the ranks of one training (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this rank writes (checkpoints, weights, rows, progress)."""
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous rows of a global batch (the batch divides evenly: :func:`check_supported`)."""
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]


def world_size_from_env() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return environment.world_size()


def init_from_env(device: torch.device) -> tuple[RankContext, torch.device]:
    """The rank context from torchrun's environment, with the process group joined, and this
    rank's device (``cuda:LOCAL_RANK`` when the run's device is CUDA)."""
    world = world_size_from_env()
    if world == 1:
        return RankContext(), device
    if device.type == "cuda":
        device = torch.device("cuda", environment.local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return RankContext(dist.get_rank(), dist.get_world_size()), device


def shutdown() -> None:
    """Leaves the process group (nothing on one process). Called when a rank's training ends:
    a gloo group left alive at interpreter exit can abort the process ("terminate called without
    an active exception") after its work is done and written."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Waits for every rank (nothing on one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def from_rank0(value: object) -> object:
    """Rank 0's ``value`` on every rank (``value`` itself on one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def every_rank(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (``[value]`` on one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def check_supported(cfg: Config, batch_size: int, world: int) -> None:
    """A config error unless this run can be trained on ``world`` processes as on one device."""
    from ..catalog import METHODS
    from .methods import get_method, uses_sam

    m = cfg.method
    if not get_method(m.name).distributed or uses_sam(cfg):
        covered = [name for name in METHODS if get_method(name).distributed]
        raise ConfigError(f"method {m.name}{' with SAM' if uses_sam(cfg) else ''} cannot be trained on {world} processes: its step is not one loss of the views' "
                          f"projections; distributed training covers {', '.join(covered)} without SAM (run it on one device)")
    if batch_size % world:
        raise ConfigError(f"optim.batch_size={batch_size} does not divide into {world} equal shards; choose a multiple of {world}")


class _Gather(torch.autograd.Function):
    """all_gather along ``dim``; the backward returns this rank's slice of the incoming
    gradient, with no communication (see the module docstring for why that is exact)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.dim, ctx.start, ctx.length = dim, dist.get_rank() * x.shape[dim], x.shape[dim]
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad.narrow(ctx.dim, ctx.start, ctx.length), None


class _SumOverRanks(torch.autograd.Function):
    """all_reduce (sum); the backward sums the incoming gradients over the ranks too, since
    every rank's summed-gradient share depends on every rank's input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather_with_grad(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The concatenation over ranks (in rank order) of every rank's ``x`` along ``dim``; the
    identity on one process. Gradients flow back to the rank that made each row.

    Example (one process):
        >>> gather_with_grad(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _Gather.apply(x, dim)


def gathered(loss_fn: Callable[..., torch.Tensor], dim: int = 0) -> Callable[..., torch.Tensor]:
    """``loss_fn`` evaluated on the global batch: every tensor argument is gathered along ``dim``
    (the batch axis: 0 for (z1, z2), 1 for CACR's stacked views [K+1, B, D])."""

    def global_loss(*zs: torch.Tensor) -> torch.Tensor:
        return loss_fn(*(gather_with_grad(z, dim) for z in zs))

    return global_loss


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Sums every parameter's gradient over the ranks, in one flat all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks (training mode; eval mode and one process
    are torch's own BatchNorm). The same parameters and buffers as ``nn.BatchNorm{1,2}d``, so
    checkpoints are unchanged. Mean first, then the mean squared deviation: two all-reduces,
    the numerically stable order.

    Example (one process, the same as BatchNorm2d):
        >>> bn = GlobalBatchNorm(3); x = torch.randn(4, 3, 2, 2)
        >>> torch.allclose(bn(x), nn.BatchNorm2d(3)(x))
        True
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2-d or 4-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = _SumOverRanks.apply(x.sum(dims)) / count
        var = _SumOverRanks.apply((x - mean.view(shape)).square().sum(dims)) / count  # biased: what BatchNorm normalises by
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1), momentum)  # unbiased, as torch stores it
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def globalise_batchnorm(module: nn.Module) -> nn.Module:
    """Replaces every ``nn.BatchNorm1d``/``2d`` in ``module`` (in place) by a :class:`GlobalBatchNorm`
    holding the same parameters and buffers; returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            like = child.running_mean if child.running_mean is not None else child.weight
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats, device=like.device, dtype=like.dtype)
            bn.load_state_dict(child.state_dict())
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            globalise_batchnorm(child)
    return module
