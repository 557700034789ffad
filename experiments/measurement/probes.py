"""Offline probes on frozen features: weighted kNN, a linear probe, the nearest class centre.

"Offline" means the features are computed once from the final encoder, with no
augmentation and the encoder in eval mode; the protocol strings say so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.theory.geometry import class_centers, nearest_center_predict


@torch.no_grad()
def extract_features(encoder: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Backbone features of uint8 or [0, 1] images, in eval mode, batch by batch.

    The encoder's train/eval mode is restored afterwards.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        feats = []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            xb = xb.float().div(255) if xb.dtype == torch.uint8 else xb.float()
            feats.append(encoder(xb).float())
        return torch.cat(feats)
    finally:
        encoder.train(was_training)


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    weighted: bool = True,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Cosine kNN classifier with exp(s/t) vote weights (Wu et al. 2018), as SSL papers report.

    Each test point takes its k most cosine-similar training points; neighbour j votes for its
    class with weight exp(s_j / t) (or 1 when ``weighted`` is False). Test points are processed
    ``chunk_size`` at a time, so memory is O(chunk_size × N_train) whatever the test size.

    Example:
        >>> tr = torch.eye(3); y = torch.tensor([0, 1, 2])
        >>> knn_predict(tr, y, torch.tensor([[0.9, 0.1, 0.0]]), num_classes=3, k=1).tolist()
        [0]
    """
    if k < 1 or t <= 0:
        raise ValueError(f"kNN needs k >= 1 and t > 0, got k={k}, t={t}")
    k = min(k, train_features.shape[0])
    train_n = F.normalize(train_features, dim=1)
    # One similarity buffer for every chunk: allocating a fresh chunk × N_train matrix each
    # time costs page faults comparable to the matmul itself on a CPU.
    buffer = train_n.new_empty(min(chunk_size, test_features.shape[0]), train_n.shape[0])
    preds = []
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size], dim=1)
        sim = torch.mm(query, train_n.T, out=buffer[: query.shape[0]])
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / t).exp() if weighted else torch.ones_like(top_sim)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


# Stopping tolerance of the linear probe: scikit-learn's default `tol` for lbfgs, which bounds
# max |∇| of the same mean objective. Iterating further moves test accuracy by noise only.
_GRAD_TOL = 1e-4


class LinearProbe(nn.Module):
    """A linear classifier on standardised features: logits = W·(h − mean)/std + b."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = nn.Linear(mean.shape[0], num_classes).to(mean.device, mean.dtype)
        nn.init.zeros_(self.head.weight), nn.init.zeros_(self.head.bias)  # convex problem: a fixed start keeps it deterministic

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head((h - self.mean) / self.std)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int = 200, weight_decay: float = 1e-4) -> LinearProbe:
    """Multinomial logistic regression on standardised frozen features, by full-batch L-BFGS.

    The objective is mean cross-entropy + (weight_decay/2)·‖W‖². It is convex, so L-BFGS
    reaches the solution of scikit-learn's ``LogisticRegression`` with C = 1/(n·λ), whose
    lbfgs solver minimises this same mean objective. Like it, the fit stops once
    max |∇| ≤ 1e-4 (scikit-learn's default ``tol``) or after ``steps`` iterations.
    """
    probe = LinearProbe(features.mean(0), features.std(0).clamp_min(1e-6), num_classes)
    opt = torch.optim.LBFGS(probe.head.parameters(), lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=_GRAD_TOL, tolerance_change=1e-10)
    x = (features - probe.mean) / probe.std

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe.head(x), labels) + 0.5 * weight_decay * probe.head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe.requires_grad_(False)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    steps: int = 200,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """Fits :func:`fit_linear_probe` on the train features and scores it.

    Returns:
        accuracy and cross_entropy on the test set, and train_accuracy.
    """
    probe = fit_linear_probe(train_features, train_labels, num_classes, steps, weight_decay)
    with torch.no_grad():
        logits = probe(test_features)
        return {
            "accuracy": (logits.argmax(1) == test_labels).float().mean().item(),
            "cross_entropy": F.cross_entropy(logits, test_labels).item(),
            "train_accuracy": (probe(train_features).argmax(1) == train_labels).float().mean().item(),
        }


def nearest_center_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int) -> float:
    """Accuracy of Huang et al.'s G_f(x) = argmin_k ‖f(x) − μ_k‖ on L2-normalised features,
    with the centres μ_k estimated on the training split."""
    centers = class_centers(F.normalize(train_features, dim=1), train_labels, num_classes)
    pred = nearest_center_predict(F.normalize(test_features, dim=1), centers)
    return (pred == test_labels).float().mean().item()
