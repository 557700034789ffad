"""The linear probe on frozen features against scikit-learn's ``LogisticRegression`` (lbfgs).

Both fit multinomial logistic regression with an L2 penalty on the same standardised
features: ours minimises mean CE + (λ/2)‖W‖² (``fit_linear_probe``), scikit-learn
C·Σ CE + ½‖W‖² with C = 1/(n·λ), the same objective times n·C. Both are given the same
iteration budget (ours ``steps``, scikit-learn ``max_iter``); scikit-learn keeps its
default tolerance. Each side's time covers standardising, fitting and scoring the test set.

The features imitate a frozen backbone's: a Gaussian class mixture seen through a random
linear map with decaying singular values, so the standardised problem is ill-conditioned
as real features are, rather than isotropic.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from clbounds.experiments.measurement.probes import linear_probe

from .harness import Agreement, Case

SIZES = {"full": (5_000, 2_000, 512), "tiny": (300, 100, 16)}
NUM_CLASSES, STEPS, WEIGHT_DECAY = 10, 200, 1e-4


def frozen_features(n: int, d: int, num_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n features of a class mixture mixed by a fixed ill-conditioned map (condition 100)."""
    fixed = torch.Generator().manual_seed(54321)
    centers = torch.randn(num_classes, d, generator=fixed) * 0.1
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=fixed))
    mixing = q * torch.logspace(0, -2, d)  # columns scaled 1 … 0.01
    y = torch.randint(0, num_classes, (n,), generator=generator)
    return (centers[y] + torch.randn(n, d, generator=generator)) @ mixing.T, y


def case(size: str = "full") -> Case:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n_train, n_test, d = SIZES[size]
    g = torch.Generator().manual_seed(0)
    x_train, y_train = frozen_features(n_train, d, NUM_CLASSES, g)
    x_test, y_test = frozen_features(n_test, d, NUM_CLASSES, g)
    xtr_np, ytr_np, xte_np, yte_np = x_train.numpy(), y_train.numpy(), x_test.numpy(), y_test.numpy()

    def ours() -> float:
        return linear_probe(x_train, y_train, x_test, y_test, NUM_CLASSES, steps=STEPS, weight_decay=WEIGHT_DECAY)["accuracy"]

    def peer() -> float:
        mean, std = xtr_np.mean(0), xtr_np.std(0, ddof=1)
        clf = LogisticRegression(C=1.0 / (n_train * WEIGHT_DECAY), max_iter=STEPS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((xtr_np - mean) / std, ytr_np)
        return float((clf.predict((xte_np - mean) / std) == yte_np).mean())

    def agree(a: float, p: float) -> Agreement:
        gap = 100 * abs(a - p)
        return gap <= 0.5, f"accuracy {100 * a:.2f}% vs {100 * p:.2f}%"

    return Case(
        name="linear probe (multinomial logistic regression)", peer="scikit-learn `LogisticRegression` (lbfgs)",
        ours=ours, run_peer=peer, agree=agree, target=0.5,
        size=f"{n_train:,} train × {n_test:,} test × {d}-d, {NUM_CLASSES} classes, ≤ {STEPS} iterations",
    )
