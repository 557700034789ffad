"""Batched, on-device view generation with kornia.

The five transforms carry the letters Huang et al. (2023, Table 1) use, so a config can say
``augment: abcd``:

    a  random resized crop        b  Gaussian blur        c  random grayscale
    d  colour distortion (jitter, with a strength)        e  horizontal flip

They are applied in SimCLR's order (crop, flip, colour, grayscale, blur) whatever order the
string lists them in. Every call draws its randomness from an explicit ``torch.Generator``,
so a view stream is reproducible from a seed and independent of the global RNG.

On CUDA the random resized crop resamples the whole batch in one warp (kornia's
``cropping_mode="resample"``); on the CPU it slices and resizes each image (kornia's
default, which the README's CPU numbers used). The crop boxes are drawn identically; only
the interpolation of the crop onto the output grid differs, by sub-pixel rounding. The
per-image version launches about a thousand small kernels per batch of 1024: on an H100 it
made views 5× slower (22k against 108k views/s), the bottleneck of GPU training.
"""

from __future__ import annotations

import torch
import kornia.augmentation as K
from torch import nn

from ..config import AUGMENTATIONS, parse_augment  # torch-free: the config validates specs

__all__ = ["AUGMENTATIONS", "Augment", "fourier_amplitude_mix", "parse_augment"]


class Augment(nn.Module):
    """Random views of a uint8 or float image batch, as float images in [0, 1].

    Args:
        spec: letters a–e (see module docstring).
        image_size: output side; crops are resized back to it.
        color_strength: s in SimCLR's colour distortion, jitter (0.8s, 0.8s, 0.8s, 0.2s).
        crop_scale: area range of the random resized crop.

    Example:
        >>> aug = Augment("abcde", image_size=16)
        >>> x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
        >>> v1 = aug(x, torch.Generator().manual_seed(0))
        >>> v2 = aug(x, torch.Generator().manual_seed(0))
        >>> bool((v1 == v2).all()), v1.dtype
        (True, torch.float32)
    """

    def __init__(self, spec: str, image_size: int, color_strength: float = 1.0, crop_scale: tuple[float, float] = (0.2, 1.0)) -> None:
        super().__init__()
        if color_strength < 0:
            raise ValueError(f"color_strength must be >= 0, got {color_strength}")
        self.spec = parse_augment(spec)
        self.crop_scale = crop_scale
        s = color_strength
        blur_kernel = max(3, int(0.1 * image_size) // 2 * 2 + 1)  # about 10% of the side, odd
        make = {
            "a": lambda: K.RandomResizedCrop((image_size, image_size), scale=crop_scale),
            "e": lambda: K.RandomHorizontalFlip(),
            "d": lambda: K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
            "c": lambda: K.RandomGrayscale(p=0.2),
            "b": lambda: K.RandomGaussianBlur((blur_kernel, blur_kernel), (0.1, 2.0), p=0.5),
        }
        self.transforms = nn.Sequential(*(make[c]() for c in self.spec))
        # The same crop distribution, resampled batch-wise: the CUDA path (module docstring).
        self.transforms_cuda = nn.Sequential(*(
            K.RandomResizedCrop((image_size, image_size), scale=crop_scale, cropping_mode="resample") if c == "a" else t
            for c, t in zip(self.spec, self.transforms)
        ))

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if not self.spec:
            return x
        # kornia samples from the global RNG; seed it from our generator inside a fork so the
        # caller's global RNG state is untouched and the views depend on `generator` alone.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            transforms = self.transforms_cuda if x.device.type == "cuda" else self.transforms
            return transforms(x).clamp_(0.0, 1.0)


def fourier_amplitude_mix(x: torch.Tensor, eta: float, generator: torch.Generator) -> torch.Tensor:
    r"""SSA-CLR's Fourier augmentation (PAPERS.md §2, [reconstructed]): keep each image's
    phase, mix its amplitude spectrum with that of another image of the batch.

    Per image i and channel c, with F = FFT2 over (H, W):

        A = |F(x_i)|,  P = angle(F(x_i)),  Â = (1 − λ_i)·A + λ_i·|F(x_j)|,  λ_i ~ U(0, η)
        x̂_i = clamp(real(IFFT2(Â·e^{iP})), 0, 1)

    where j ≠ i is drawn by a random derangement of the batch (a cyclic shift of a random
    permutation). The phase carries the layout of the image, the amplitude mostly its style,
    so a view keeps its content and borrows another sample's style: the practical positive
    pair moves toward the ideal one (two samples of one latent class).

    Args:
        x: [B, C, H, W] float images in [0, 1] (the output of :class:`Augment`).
        eta: η ∈ [0, 1], the largest mixing weight; η = 0 returns x (up to FFT round-off).
        generator: draws the partners and the λ_i (on the CPU), so views are reproducible.

    Example:
        >>> x = torch.rand(4, 3, 8, 8)
        >>> y = fourier_amplitude_mix(x, 0.0, torch.Generator().manual_seed(0))
        >>> bool((y - x).abs().max() < 1e-5), y.shape
        (True, torch.Size([4, 3, 8, 8]))
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"fourier eta must be in [0, 1], got {eta}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected float images [B, C, H, W], got {x.dtype} {tuple(x.shape)}")
    b = x.shape[0]
    perm = torch.randperm(b, generator=generator)
    partner = torch.empty_like(perm)
    partner[perm] = perm.roll(1)  # i → another image (itself only when B = 1)
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # FFTs need single or double
    lam = (eta * torch.rand(b, generator=generator)).to(device=x.device, dtype=xf.dtype).view(b, 1, 1, 1)
    spectrum = torch.fft.fft2(xf)
    amplitude = spectrum.abs()
    mixed = (1 - lam) * amplitude + lam * amplitude[partner.to(x.device)]
    out = torch.fft.ifft2(torch.polar(mixed, spectrum.angle())).real
    return out.clamp_(0.0, 1.0).to(x.dtype)
