"""``hessian_top_eigenvalue`` against PyHessian's ``hessian(...).eigenvalues(top_n=1)``.

The model is a small ConvNet classifier (the project's ``convnet`` encoder at width 0.25 and
a linear head) fitted for a few steps on one batch of synthetic images, so that the Hessian
of its cross-entropy has a clear top eigenvalue, as near a minimum. Both sides run in eval
mode on the same batch, with the same iteration cap (100) and tolerance (1e-3): PyHessian's
is on the relative change of the power-iteration estimate, ours on the Lanczos residual.
PyHessian's time includes building its ``hessian`` object (the first backward pass).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbounds.experiments.data import load_dataset
from clbounds.experiments.models.encoders import Encoder
from clbounds.theory.sharpness import hessian_top_eigenvalue

from .harness import Agreement, Case

SIZES = {"full": (512, 16, 0.25), "tiny": (32, 8, 0.125)}  # batch, image side, width
ITERS, TOL = 100, 1e-3


def fitted_convnet(batch: int, side: int, width: float, fit_steps: int = 100) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A ConvNet classifier fitted by ``fit_steps`` Adam steps on one synthetic batch, in eval mode."""
    data = load_dataset("synthetic", image_size=side, n_train=batch, n_test=10, seed=0)
    x, y = data.x_train.float() / 255, data.y_train
    torch.manual_seed(0)
    encoder = Encoder("convnet", data.image_shape, width=width)
    # Without the projection head, which a classifier does not use (PyHessian needs every
    # parameter to receive a gradient).
    model = nn.Sequential(encoder.normalize, encoder.backbone, nn.Linear(encoder.feature_dim, data.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(fit_steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), x, y


def case(size: str = "full") -> Case:
    from pyhessian import hessian

    batch, side, width = SIZES[size]
    model, x, y = fitted_convnet(batch, side, width, fit_steps=100 if size == "full" else 50)
    n_params = sum(p.numel() for p in model.parameters())

    def ours() -> float:
        loss_fn = lambda m, b: F.cross_entropy(m(b[0]), b[1])  # noqa: E731
        return hessian_top_eigenvalue(model, loss_fn, [(x, y)], iters=ITERS, tol=TOL)

    def peer() -> float:
        torch.manual_seed(0)  # PyHessian draws its start vector from the global RNG
        top = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False).eigenvalues(maxIter=ITERS, tol=TOL, top_n=1)[0][0]
        model.zero_grad(set_to_none=True)  # PyHessian leaves graph-carrying .grad behind
        return float(top)

    def agree(a: float, p: float) -> Agreement:
        rel = abs(a - p) / abs(p)
        return rel <= 0.01, f"λ_max {a:.4g} vs {p:.4g}, rel. diff {rel:.1e}"

    return Case(
        name="`hessian_top_eigenvalue`", peer="PyHessian `eigenvalues(top_n=1)`",
        ours=ours, run_peer=peer, agree=agree, target=0.5,
        size=f"ConvNet, {n_params:,} parameters, batch {batch} of {side}×{side}",
        note=(
            f"tol = {TOL:g} and at most {ITERS} Hessian-vector products on both sides. A product costs one backward "
            "pass through the kept gradient graph on both sides; ours needs fewer of them (Lanczos instead of power "
            "iteration). Power iteration finds the eigenvalue of largest magnitude, which is not λ_max where a "
            "negative eigenvalue is larger in magnitude."
        ),
    )
