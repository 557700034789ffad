"""SSA-CLR: InfoNCE with SAM/ASAM on it and Fourier amplitude mixing of the views (PAPERS.md §2)."""

from __future__ import annotations

from . import Method
from .simclr import nt_xent, two_view_losses


METHOD = Method("ssa_clr", criterion=nt_xent, losses=two_view_losses, sam=True, fourier=True, distributed=True, nt_xent=True)
