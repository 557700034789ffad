"""Subsets of a training set that a config asks for (``data.imbalanced``)."""

from __future__ import annotations

import torch


def imbalanced_indices(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the imbalanced variant of a training set (CACR, PAPERS.md §4): class i keeps
    round((i+1)/K · n_i) of its n_i samples (at least one), chosen at random; order is kept.

    Example:
        >>> y = torch.arange(4).repeat_interleave(8)
        >>> idx = imbalanced_indices(y, 4, torch.Generator().manual_seed(0))
        >>> torch.bincount(y[idx]).tolist()
        [2, 4, 6, 8]
    """
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        if members.numel() == 0:
            continue
        n_keep = max(1, round((c + 1) / num_classes * members.numel()))
        chosen = members[torch.randperm(members.numel(), generator=generator)[:n_keep].to(members.device)]
        keep[chosen] = True
    return torch.nonzero(keep).flatten()
