"""The `synthetic` dataset: latent classes with a known ground truth.

Each of K latent classes has a smooth random colour template. A sample is its class
template under a per-sample nuisance: a circular shift, a contrast change and pixel noise.
Because the generator knows every sample's class and nuisance, it can

- draw *ideal positive pairs* (two independent samples of one class, Arora et al. 2019),
  which real data cannot;
- mark each sample as belonging to the class's *main part* C_k⁰ (Huang et al. 2023) or not:
  a fraction ``main_fraction`` of samples get the nominal nuisance, the rest an
  ``outlier_scale`` times larger one.

Whether the main parts are the (σ, δ)-augmentation's main parts depends on the augmentation.
Crops undo the main part's circular shifts (two crops of one size, moved by the shift, show
the same content) but not the outliers' larger contrast and noise, so at the generator's δ
(the largest augmented distance inside a main part) σ(δ) is ``main_fraction``: σ̂ recovers it
within 0.05 under crop + flip and under abcde, at 16 and 32 px (``tests/test_verdicts.py``,
``docs/estimators.md``; d̂_A from
:func:`clbounds.experiments.measurement.context.augmented_distances`). At 2δ outliers come
within reach of the whole main part and σ̂ exceeds ``main_fraction``.

Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import DatasetSpec, ImageDataset


@dataclass(frozen=True)
class SyntheticSample:
    """Images with the nuisance that made them."""

    x: torch.Tensor  # uint8 [N, 3, S, S]
    y: torch.Tensor  # int64 [N]
    main: torch.Tensor  # bool [N]: in the class's main part C_k⁰
    shift: torch.Tensor  # int64 [N, 2]: circular shift (dy, dx) in pixels
    contrast: torch.Tensor  # float [N]: contrast factor around the mean grey level
    noise: torch.Tensor  # float [N, 3, S, S]: additive pixel noise before clamping


class SyntheticGenerator:
    """Sampler of the synthetic latent-class distribution.

    Args:
        num_classes: K.
        image_size: S; images are 3×S×S.
        shift: largest circular shift in pixels (nominal nuisance).
        contrast: contrast factor drawn from U(1 − contrast, 1 + contrast).
        noise: standard deviation of the additive pixel noise, in [0, 1] units.
        main_fraction: probability that a sample lies in its class's main part.
        outlier_scale: how much larger the nuisance is outside the main part.
        template_resolution: the templates are random fields at this resolution, upsampled;
            smaller means smoother templates.
        seed: fixes the class templates.

    Example:
        >>> gen = SyntheticGenerator(num_classes=3, image_size=16, seed=0)
        >>> s = gen.sample(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(1))
        >>> s.x.shape, s.x.dtype
        (torch.Size([3, 3, 16, 16]), torch.uint8)
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        shift: int = 4,
        contrast: float = 0.3,
        noise: float = 0.08,
        main_fraction: float = 0.9,
        outlier_scale: float = 3.0,
        template_resolution: int = 4,
        seed: int = 0,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 < main_fraction <= 1.0:
            raise ValueError(f"main_fraction must be in (0, 1], got {main_fraction}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.shift = shift
        self.contrast = contrast
        self.noise = noise
        self.main_fraction = main_fraction
        self.outlier_scale = outlier_scale
        g = torch.Generator().manual_seed(seed)
        field = torch.randn(num_classes, 3, template_resolution, template_resolution, generator=g)
        field = F.interpolate(field, size=(image_size, image_size), mode="bicubic", align_corners=False)
        # Per-template standardisation keeps every class equally bright and contrasted, so
        # classes differ in pattern and colour, not in a trivial global statistic.
        field = (field - field.mean(dim=(1, 2, 3), keepdim=True)) / field.std(dim=(1, 2, 3), keepdim=True)
        self.templates = (0.5 + 0.18 * field).clamp(0.0, 1.0)  # float [K, 3, S, S]

    def sample(self, y: torch.Tensor, generator: torch.Generator, main: torch.Tensor | None = None) -> SyntheticSample:
        """Draws one independent sample for each label in ``y``.

        ``main`` ([N] bool) fixes which samples lie in the main part instead of drawing it with
        probability ``main_fraction``: a test of σ̂ then knows each class's exact main fraction,
        free of the binomial scatter of 40 draws (the data sets themselves draw it).
        """
        y = y.to(torch.int64)
        n, s = y.shape[0], self.image_size
        drawn = torch.rand(n, generator=generator) < self.main_fraction  # drawn either way: the stream does not depend on `main`
        if main is not None and (main.shape != (n,) or main.dtype != torch.bool):
            raise ValueError(f"main must be a bool tensor of shape ({n},), got {main.dtype} {tuple(main.shape)}")
        main = drawn if main is None else main
        scale = torch.where(main, 1.0, self.outlier_scale)
        max_shift = (self.shift * scale).round().to(torch.int64)
        shift = (torch.rand(n, 2, generator=generator) * (2 * max_shift[:, None] + 1)).floor().to(torch.int64) - max_shift[:, None]
        contrast = 1.0 + self.contrast * scale * (2 * torch.rand(n, generator=generator) - 1)
        noise = self.noise * scale[:, None, None, None] * torch.randn(n, 3, s, s, generator=generator)

        rows = (torch.arange(s)[None, :] - shift[:, :1]) % s  # [N, S]
        cols = (torch.arange(s)[None, :] - shift[:, 1:]) % s
        img = self.templates[y]  # [N, 3, S, S]
        img = img.gather(2, rows[:, None, :, None].expand(n, 3, s, s))
        img = img.gather(3, cols[:, None, None, :].expand(n, 3, s, s))
        img = 0.5 + contrast[:, None, None, None] * (img - 0.5) + noise
        x = (img.clamp(0.0, 1.0) * 255).round().to(torch.uint8)
        return SyntheticSample(x=x, y=y, main=main, shift=shift, contrast=contrast, noise=noise)

    def balanced_labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n labels with every class equally often (up to n mod K), in random order."""
        y = torch.arange(n) % self.num_classes
        return y[torch.randperm(n, generator=generator)]

    def ideal_pairs(self, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Ideal positive pairs: two *independent* samples of each class in ``y``."""
        return self.sample(y, generator).x, self.sample(y, generator).x


def _load(*, image_size: int | None, num_classes: int, n_train: int, n_test: int, seed: int, synthetic: dict | None, **_: object) -> ImageDataset:
    gen = SyntheticGenerator(num_classes=num_classes, image_size=image_size or SPEC.side, seed=seed, **(synthetic or {}))
    g = torch.Generator().manual_seed(seed + 1)
    train = gen.sample(gen.balanced_labels(n_train, g), g)
    test = gen.sample(gen.balanced_labels(n_test, g), g)
    return ImageDataset("synthetic", train.x, train.y, test.x, test.y, num_classes, generator=gen, train_main=train.main)


SPEC = DatasetSpec("synthetic", side=32, channel_stats=((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)), load=_load, resizable=True)
