"""An adversarially trained linear probe, the evaluation option of robust contrastive
learning (PAPERS.md §1: "Linear probe ... Optionally trained adversarially (PGD-10, ε 8/255)").

The encoder stays frozen (eval mode, benign BatchNorm branch); only the linear head learns.
Each training batch is replaced by its PGD-10 L∞ adversarial examples against the current
probe on top of the frozen encoder (Madry et al. 2018), so the probe learns to use the
directions of h that a bounded pixel perturbation cannot move much.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory.adversarial import EVAL_ALPHA, EVAL_EPS, EVAL_STEPS, pgd, robust_accuracy

from ..training.optim import cosine_lr
from .probes import LinearProbe, extract_features
from ..store.db import Row, RunRecord, Store



def fit_adversarial_linear_probe(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
) -> LinearProbe:
    r"""Linear probe on frozen features h = f(x), trained on PGD adversarial inputs (PAPERS.md §1).

    Minimises E_(x,y) max_{‖δ‖∞≤ε, x+δ∈[0,1]} CE(W·(f(x+δ) − m)/s + b, y) by SGD (momentum
    0.9, cosine learning rate over all steps), the inner max by ``steps`` steps of PGD with
    step ``alpha`` from a random start. m and s standardise the *clean* training features,
    as in :func:`experiments.probes.fit_linear_probe`.

    Args:
        encoder: maps [B, C, H, W] images in [0, 1] to features; kept in eval mode and frozen.
        x: uint8 or [0, 1] float training images; y: int64 labels.
        eps, alpha, steps: the training attack (PGD-10, ε = 8/255, step 2/255 by default).
        epochs, lr, batch_size, weight_decay: the probe's SGD.
        generator: batch order and PGD random starts (a fixed seed when None).

    Returns:
        The fitted :class:`LinearProbe` (requires_grad off), on the encoder's device.

    Example:
        >>> enc = nn.Flatten()
        >>> x, y = torch.rand(32, 1, 2, 2), torch.randint(0, 2, (32,))
        >>> probe = fit_adversarial_linear_probe(enc, x, y, 2, steps=2, epochs=1)
        >>> probe(enc(x)).shape
        torch.Size([32, 2])
    """
    if epochs < 1 or batch_size < 1 or steps < 1:
        raise ValueError(f"epochs, batch_size and steps must be >= 1, got {epochs}, {batch_size}, {steps}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    was_training = encoder.training
    encoder.eval()
    features = extract_features(encoder, x)
    probe = LinearProbe(features.mean(0), features.std(0).clamp_min(1e-6), num_classes)
    classifier = nn.Sequential(encoder, probe)
    optimizer = torch.optim.SGD(probe.head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    n = x.shape[0]
    steps_per_epoch = max(1, -(-n // batch_size))
    total = epochs * steps_per_epoch
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=g).to(x.device)
            for i in range(steps_per_epoch):
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(epoch * steps_per_epoch + i, total, lr)
                idx = order[i * batch_size : (i + 1) * batch_size]
                x_adv = pgd(classifier, x[idx], y[idx], eps, alpha, steps, generator=g)
                with torch.no_grad():
                    h = encoder(x_adv).float()
                loss = F.cross_entropy(probe(h), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        encoder.train(was_training)
    return probe.requires_grad_(False)


def adversarial_probe_terms(
    record: RunRecord,
    store: Store,
    epochs: int = 10,
    n_test: int = 256,
    train_eps: float = 8 / 255,
    train_alpha: float = 2 / 255,
    train_steps: int = 10,
) -> list[Row]:
    """Fits the adversarially trained probe on the run's training split and stores its clean
    and PGD-20 robust accuracy on ``n_test`` test inputs (the measure protocol's attack:
    L∞, ε = 8/255, step 0.8/255, random start). Returns the (name, value, protocol) rows."""
    from ..training.runs import open_run

    run = open_run(record)
    cfg, device, data, model = run.cfg, run.device, run.data, run.encoder
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 12)
    probe = fit_adversarial_linear_probe(model, data.x_train, data.y_train, data.num_classes, train_eps, train_alpha, train_steps, epochs=epochs, generator=g)
    pick = torch.randperm(data.x_test.shape[0], generator=g)[: min(n_test, data.x_test.shape[0])].to(device)
    x, y = data.x_test[pick].float() / 255, data.y_test[pick]
    result = robust_accuracy(nn.Sequential(model, probe).eval(), x, y, EVAL_EPS, EVAL_ALPHA, EVAL_STEPS, generator=g)
    train_proto = f"linear probe adversarially trained (PGD-{train_steps} Linf eps={train_eps * 255:.3g}/255 step={train_alpha * 255:.3g}/255, SGD {epochs} epochs cosine)"
    rows = [
        ("adversarial_probe_clean_accuracy", result["clean_accuracy"], f"{train_proto}, test n={x.shape[0]}"),
        ("adversarial_probe_robust_accuracy", result["robust_accuracy"], f"{train_proto}, PGD-{EVAL_STEPS} Linf eps={EVAL_EPS * 255:.3g}/255 step={EVAL_ALPHA * 255:.3g}/255 random start, test n={x.shape[0]}"),
    ]
    store.add_measurements(record.id, rows)
    return rows
