"""AutoAttack (an optional extra) and the RobustBench sanity checks that go with it.

RobustBench's convention (Croce et al. 2021) is that a robust accuracy without AutoAttack is
an upper estimate: PGD with one loss and one start can miss adversarial points that a
parameter-free ensemble finds. The robust-CL paper (PAPERS.md §1) reports AutoAttack as an
*unseen* attack, through torchattacks.

torchattacks is an optional extra: ``make autoattack`` installs it with ``pip install
--no-deps`` (its declared dependencies would pull torchvision and a CUDA torch; the attacks
here import neither, which ``tests/test_robustness.py`` checks). Without it, AutoAttack is
skipped with one line and PGD stays the estimate.

The standard version (Croce & Hein 2020) is four attacks run in turn on the inputs that
are still classified correctly: APGD-CE (100 iterations), APGD-T (DLR loss, 100 iterations
against each of the 9 runner-up classes), FAB-T (100 iterations, 9 targets) and Square (5,000
queries), one restart each, at the ε of the config. The attacks are torchattacks' own, run
with these budgets: torchattacks' ``AutoAttack`` class gives its gradient attacks 10
iterations, not the 100 of the original standard version. A sample is robust only if it is
classified correctly at x and at every attack's output. APGD-T's DLR loss needs at least 4
classes.

Three sanity checks run in the same call, each stored as a row (1 = pass, 0 = fail, the
measured numbers in its protocol); a failure is logged as a finding and written into the
AutoAttack row's protocol, so the number is never kept silently:

- ``sanity_autoattack_le_pgd``: AutoAttack's accuracy is at most PGD's on the same inputs
  (the stronger attack cannot do worse; if it does, one of them is broken);
- ``sanity_deterministic_forward``: two forward passes in eval mode give the same logits
  (a random forward makes gradients meaningless and accuracies unrepeatable);
- ``sanity_nonzero_input_gradients``: every input has a non-zero gradient of its
  cross-entropy (zero gradients are the mark of gradient masking, under which gradient
  attacks fail while the model is not robust; RobustBench's check). A float32 softmax
  saturated by a logit margin above about 100 also has an exactly zero gradient, so a
  failure is a finding to inspect, not proof of masking.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..store.db import Row


TORCHATTACKS_PIN = "torchattacks==3.5.1"
INSTALL_HINT = f"make autoattack, or pip install --no-deps {TORCHATTACKS_PIN}"
STANDARD_ITERATIONS = 100  # of APGD-CE, APGD-T and FAB-T, per target (the original standard version)
SQUARE_QUERIES = 5000
STANDARD_ATTACKS = f"APGD-CE, APGD-T, FAB-T {STANDARD_ITERATIONS} iterations, min(9, K-1) targets, Square {SQUARE_QUERIES} queries, 1 restart each"


def autoattack_unavailable() -> str | None:
    """Why AutoAttack cannot run here (one line), or None when it can."""
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        return f"AutoAttack skipped: the optional torchattacks extra is not installed ({INSTALL_HINT}); PGD stays the robust-accuracy estimate"
    return None


def autoattack_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, n_classes: int, seed: int,
                      norm: str = "Linf", batch_size: int = 256) -> torch.Tensor:
    """AutoAttack's adversarial points (the standard version, torchattacks' attacks) for inputs
    ``x`` in [0, 1]. The global random state is restored afterwards (torchattacks seeds it).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).eval()
        >>> x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 4, (8,))
        >>> autoattack_points(model, x, y, eps=8 / 255, n_classes=4, seed=0).shape  # doctest: +SKIP
        torch.Size([8, 3, 2, 2])
    """
    import torchattacks

    if n_classes < 4:
        raise ValueError(f"AutoAttack needs at least 4 classes (APGD-T's DLR loss reads the 4th-largest logit), got {n_classes}")
    devices = [x.device] if x.device.type == "cuda" else []
    was_training = model.training
    model.eval()
    targets = min(9, n_classes - 1)
    try:
        with torch.random.fork_rng(devices=devices):
            attack = torchattacks.MultiAttack([
                torchattacks.APGD(model, norm=norm, eps=eps, steps=STANDARD_ITERATIONS, n_restarts=1, loss="ce", seed=seed),
                torchattacks.APGDT(model, norm=norm, eps=eps, steps=STANDARD_ITERATIONS, n_restarts=1, n_classes=targets + 1, seed=seed),
                torchattacks.FAB(model, norm=norm, eps=eps, steps=STANDARD_ITERATIONS, n_restarts=1, multi_targeted=True, n_classes=targets + 1, seed=seed),
                torchattacks.Square(model, norm=norm, eps=eps, n_queries=SQUARE_QUERIES, n_restarts=1, seed=seed),
            ])
            return torch.cat([attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size] for i in range(0, x.shape[0], batch_size)])


def nonzero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of inputs whose cross-entropy has a non-zero gradient in the input."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return float((grad.flatten(1).abs().amax(1) > 0).double().mean())


def forward_difference(model: nn.Module, x: torch.Tensor) -> float:
    """The largest difference between two forward passes on the same inputs."""
    with torch.no_grad():
        return float((model(x) - model(x)).abs().max())


def autoattack_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, eps: float, seed: int,
                    pgd_accuracy: float, pgd_name: str, where: str, prefix: str = "",
                    log: Callable[[str], None] | None = None) -> list[Row]:
    """AutoAttack's robust accuracy of the classifier ``model`` (logits) and the three sanity
    rows; ``pgd_accuracy`` is PGD's robust accuracy on the same inputs, ``pgd_name`` its
    protocol (e.g. "PGD-20 Linf eps=8/255"), ``where`` the model and split (for protocols)."""
    import torchattacks

    model.eval()
    n = x.shape[0]
    x_adv = autoattack_points(model, x, y, eps, n_classes, seed)
    robust = _correct(model, x, y) & _correct(model, x_adv, y)  # x itself lies in the ball
    accuracy = float(robust.double().mean())
    attack = f"AutoAttack standard ({STANDARD_ATTACKS}), torchattacks {torchattacks.__version__} attacks, Linf eps={eps * 255:.3g}/255, seed={seed}, test n={n}"

    difference = forward_difference(model, x)
    gradients = nonzero_gradient_fraction(model, x, y)
    checks = {
        "sanity_autoattack_le_pgd": (accuracy <= pgd_accuracy, f"AutoAttack accuracy {accuracy:.4f} vs {pgd_name} {pgd_accuracy:.4f} on the same {n} inputs"),
        "sanity_deterministic_forward": (difference == 0.0, f"largest logit difference between two eval forward passes {difference:.3g}, {n} inputs"),
        "sanity_nonzero_input_gradients": (gradients == 1.0, f"{gradients:.4f} of {n} inputs have a non-zero input gradient of their cross-entropy"),
    }
    failed = [f"{name[len('sanity_'):]} ({note})" for name, (ok, note) in checks.items() if not ok]
    if failed and log:
        log(f"  finding: a RobustBench sanity check failed for the AutoAttack accuracy of {where}: {'; '.join(failed)}")
    flag = f"; SANITY CHECK FAILED: {'; '.join(failed)}" if failed else "; sanity checks passed"
    rows = [(f"{prefix}autoattack_robust_accuracy", accuracy, f"{where}, {attack}{flag}")]
    rows += [(f"{prefix}{name}", float(ok), f"{where}, {note}: {'pass' if ok else 'FAIL'}") for name, (ok, note) in checks.items()]
    return rows
