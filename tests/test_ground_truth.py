"""Estimators against the ground truth the synthetic generator knows (issue 3).

The embedding is the identity on pixels (flattened, in [0, 1]), so every quantity the
generator defines has a value computable from its parameters and its own record of each
sample's class and main-part membership.
"""

import math

import pytest
import torch

from clbounds.experiments.data.synthetic import SyntheticGenerator
from clbounds.theory import geometry, shift


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).double() / 255


def test_class_centres_recover_the_templates():
    # Zero-mean nuisance (noise, contrast symmetric around 1, no shift): E[x | class k] is the template.
    gen = SyntheticGenerator(num_classes=4, image_size=8, shift=0, contrast=0.2, noise=0.05, main_fraction=1.0, seed=0)
    g = torch.Generator().manual_seed(1)
    s = gen.sample(gen.balanced_labels(8000, g), g)
    centers = geometry.class_centers(_pixels(s.x), s.y, 4)
    templates = gen.templates.flatten(1).double()
    # Clamping to [0, 1] biases pixels near the ends; within [0.25, 0.75] a sample leaves [0, 1]
    # only beyond 3.5 sd (contrast moves at most 0.05, noise sd 0.05), so there E[x] = template.
    inner = (templates > 0.25) & (templates < 0.75)
    assert inner.double().mean() > 0.7
    # Per-pixel sd <= 0.06, so 4 sd / sqrt(2000) = 0.0054, plus uint8 rounding 1/510.
    assert (centers - templates).abs()[inner].max() < 0.01


def test_sigma_delta_equals_the_generators_main_part():
    # Main part: template + N(0, 0.01^2) noise; outside it: noise 20x larger. Pairwise pixel distances
    # are about 0.2 inside the main part and > 2 to anything outside it, so at delta = 1 the largest
    # clique of each class is exactly its main part.
    gen = SyntheticGenerator(num_classes=3, image_size=8, shift=0, contrast=0.0, noise=0.01, main_fraction=0.7, outlier_scale=20.0, seed=2)
    g = torch.Generator().manual_seed(3)
    s = gen.sample(gen.balanced_labels(150, g), g)
    d_a = geometry.augmented_distance(_pixels(s.x)[None])  # M = 1: the identity augmentation
    result = geometry.sigma_delta(d_a, s.y, delta=1.0, num_classes=3)
    truth = torch.stack([s.main[s.y == k].double().mean() for k in range(3)])
    assert torch.equal(result["per_class"].double(), truth)
    assert result["sigma"] == pytest.approx(truth.min().item())
    assert abs(truth.mean().item() - gen.main_fraction) < 4 * math.sqrt(0.7 * 0.3 / 150)
    assert set(result["method"]) <= {"exact", "greedy"}


def _pairs(gen, n, g):
    y = gen.balanced_labels(n, g)
    x1, x2 = gen.ideal_pairs(y, g)
    return _pixels(x1), _pixels(x2)


def test_shift_estimates_vanish_when_practical_pairs_are_ideal():
    gen = SyntheticGenerator(num_classes=4, image_size=8, seed=4)
    g = torch.Generator().manual_seed(5)
    ideal, practical = _pairs(gen, 1024, g), _pairs(gen, 1024, g)
    joint = lambda p: torch.cat(p, dim=1)  # noqa: E731
    assert abs(shift.mmd2(joint(ideal), joint(practical)).item()) < 2e-3
    assert abs(shift.positive_cosine_gap(ideal, practical).item()) < 5e-3
    gaps = [shift.positive_pair_loss_gap((ideal[0][i:i + 256], ideal[1][i:i + 256]), (practical[0][i:i + 256], practical[1][i:i + 256])).item() for i in range(0, 1024, 256)]
    low, high = shift.infonce_range(2 * 256 - 2, 0.5)
    assert abs(sum(gaps) / 4) < 0.02 * (high - low)


def test_shift_estimates_grow_as_practical_pairs_leave_the_ideal():
    # Practical pair = an input and a copy with extra pixel noise of sd s: s = 0 is a duplicate
    # (far from ideal, too easy), and the positive cosine gap shrinks as s grows toward the
    # within-class spread the ideal pairs have.
    gen = SyntheticGenerator(num_classes=4, image_size=8, seed=6)
    g = torch.Generator().manual_seed(7)
    ideal = _pairs(gen, 1024, g)
    x = ideal[0]
    gaps = []
    for s in (0.0, 0.05, 0.1):
        practical = (x, x + s * torch.randn(x.shape, generator=g, dtype=x.dtype))
        gaps.append(shift.positive_cosine_gap(ideal, practical).item())
    assert gaps[0] > gaps[1] > gaps[2]
    # Duplicates: every practical cosine is 1, so the gap is 1 - mean ideal cosine exactly.
    cos_ideal = torch.nn.functional.cosine_similarity(*ideal).mean().item()
    assert gaps[0] == pytest.approx(1 - cos_ideal, abs=1e-12)
