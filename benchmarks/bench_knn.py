"""Uniform cosine kNN (k = 20) against scikit-learn's ``KNeighborsClassifier``.

scikit-learn runs brute force with the cosine metric and uniform weights, the same
classifier as ``knn_predict(..., weighted=False)``; both break vote ties toward the smaller
label. The features are a Gaussian mixture, so that the neighbourhoods are mixed and the vote
matters. The peer's time includes ``fit`` (for brute force it only stores the data).
"""

from __future__ import annotations

import numpy as np
import torch

from clbounds.experiments.measurement.probes import knn_predict

from .harness import Agreement, Case

SIZES = {"full": (50_000, 10_000, 128), "tiny": (500, 100, 16)}
NUM_CLASSES, K = 10, 20


def mixture(n: int, d: int, num_classes: int, generator: torch.Generator, spread: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of a Gaussian mixture with unit-variance classes around fixed random centres."""
    centers = torch.randn(num_classes, d, generator=torch.Generator().manual_seed(12345)) * spread / d**0.5 * 4
    y = torch.randint(0, num_classes, (n,), generator=generator)
    return centers[y] + torch.randn(n, d, generator=generator), y


def case(size: str = "full") -> Case:
    from sklearn.neighbors import KNeighborsClassifier

    n_train, n_test, d = SIZES[size]
    g = torch.Generator().manual_seed(0)
    x_train, y_train = mixture(n_train, d, NUM_CLASSES, g)
    x_test, _ = mixture(n_test, d, NUM_CLASSES, g)
    xtr_np, ytr_np, xte_np = x_train.numpy(), y_train.numpy(), x_test.numpy()

    def ours() -> np.ndarray:
        return knn_predict(x_train, y_train, x_test, NUM_CLASSES, k=K, weighted=False).numpy()

    def peer() -> np.ndarray:
        clf = KNeighborsClassifier(n_neighbors=K, algorithm="brute", metric="cosine", weights="uniform")
        return clf.fit(xtr_np, ytr_np).predict(xte_np)

    def agree(a: np.ndarray, p: np.ndarray) -> Agreement:
        same = int((a == p).sum())
        return same == len(p), f"{same}/{len(p)} predictions identical"

    return Case(
        name="kNN probe (cosine, uniform, k=20)", peer="scikit-learn `KNeighborsClassifier` (brute, cosine)",
        ours=ours, run_peer=peer, agree=agree, target=0.5, size=f"{n_train:,} train × {n_test:,} test × {d}-d, float32",
    )
