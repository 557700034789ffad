"""One distributed step of each loss, for tests/test_distributed.py (run under torchrun, or
called in-process as the one-process reference).

Each rank takes its shard of a fixed global batch, projects it with a small float64 network
with BatchNorm (globalised across ranks), evaluates the loss on the gathered projections,
backpropagates and sums the gradients. Rank 0 saves the loss and the gradients, and the
gradients before the sum (what a rank holds alone), so a test can show the sum is needed.
"""

from __future__ import annotations

import sys
from functools import partial

import torch
from torch import nn

from clbounds.experiments.training import distributed
from clbounds.theory.losses import barlow_twins, cacr, info_nce

LOSSES = {
    "info_nce": (partial(info_nce, temperature=0.5), 2, 0),
    "barlow_twins": (partial(barlow_twins, lambd=5e-3), 2, 0),
    "cacr": (partial(cacr, tau_pos=1.0, tau_neg=0.9), 3, 1),  # 3 views stacked as [K+1, B, D]: the batch axis is 1
}
BATCH = 12


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 6)).double()


def step(name: str) -> dict[str, object]:
    """Loss and gradients of one step of ``name`` on this process's share of the global batch."""
    ctx, _ = distributed.init_from_env(torch.device("cpu"))
    loss_fn, views, dim = LOSSES[name]
    model = network()
    if ctx.world > 1:
        distributed.globalise_batchnorm(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(views, BATCH, 5, generator=g, dtype=torch.float64)  # the global batch, the same on every rank
    zs = [model(ctx.shard(v)) for v in x]
    loss = distributed.gathered(loss_fn, dim)(torch.stack(zs)) if dim == 1 else distributed.gathered(loss_fn, dim)(*zs)
    loss.backward()
    alone = [p.grad.clone() for p in model.parameters()]
    distributed.sum_gradients(model.parameters())
    return {"loss": loss.detach(), "grads": [p.grad.clone() for p in model.parameters()], "alone": alone,
            "running_mean": model[1].running_mean.clone(), "world": ctx.world}


if __name__ == "__main__":
    out = {name: step(name) for name in LOSSES}
    if distributed.init_from_env(torch.device("cpu"))[0].main:
        torch.save(out, sys.argv[1])
    distributed.shutdown()  # a gloo group left alive at exit can abort the process after its work is done
