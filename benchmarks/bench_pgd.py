"""PGD-20 L∞ robust accuracy of encoder + linear probe against torchattacks' ``PGD``.

The classifier is the project's ``convnet`` encoder (random initialisation, eval mode)
followed by a linear probe fitted on its frozen features of synthetic training images. Both
sides attack the same test images in batches of 256 with the same ε, step α and number of
steps, from a uniform random start, and both count a sample as robustly correct when the
clean and the attacked image are both classified correctly (``robust_accuracy``'s
definition). The random starts come from different generators, so the two accuracies agree
up to the attack's randomness, not exactly.

ε is 2/255 (step 0.2/255, so 20 steps can cross the ball) rather than the 8/255 of the
robust-learning papers: an undefended encoder has 0% robust accuracy at 8/255 on both sides,
which agrees trivially and checks nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from clbounds.experiments.data import dataset_spec, load_dataset
from clbounds.experiments.models.encoders import Encoder
from clbounds.experiments.measurement.probes import extract_features, fit_linear_probe
from clbounds.theory.adversarial import robust_accuracy

from .harness import Agreement, Case

SIZES = {"full": (2000, 512, 0.5), "tiny": (200, 40, 0.125)}  # n_train, n_test, width
EPS, ALPHA, STEPS, BATCH = 2 / 255, 0.2 / 255, 20, 256


def probed_encoder(n_train: int, n_test: int, width: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """encoder + linear probe (eval mode) and the [0, 1] test images with their labels."""
    data = load_dataset("synthetic", image_size=32, n_train=n_train, n_test=n_test, seed=0)
    torch.manual_seed(0)
    encoder = Encoder("convnet", data.image_shape, width=width, mean=dataset_spec("synthetic").channel_stats[0], std=dataset_spec("synthetic").channel_stats[1])
    probe = fit_linear_probe(extract_features(encoder, data.x_train), data.y_train, data.num_classes)
    return nn.Sequential(encoder, probe).eval(), data.x_test.float() / 255, data.y_test


def case(size: str = "full") -> Case:
    import torchattacks

    n_train, n_test, width = SIZES[size]
    model, x, y = probed_encoder(n_train, n_test, width)

    def ours() -> float:
        g = torch.Generator().manual_seed(0)
        return robust_accuracy(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, batch_size=BATCH, generator=g)["robust_accuracy"]

    def peer() -> float:
        torch.manual_seed(0)  # torchattacks draws its random start from the global RNG
        attack = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
        correct = 0
        for start in range(0, len(x), BATCH):
            xb, yb = x[start : start + BATCH], y[start : start + BATCH]
            x_adv = attack(xb, yb)
            with torch.no_grad():
                correct += int(((model(xb).argmax(1) == yb) & (model(x_adv).argmax(1) == yb)).sum())
        return correct / len(x)

    def agree(a: float, p: float) -> Agreement:
        gap = 100 * abs(a - p)
        return gap <= 1.0, f"robust accuracy {100 * a:.1f}% vs {100 * p:.1f}%"

    return Case(
        name="PGD-20 L∞ robust accuracy (encoder + linear probe)", peer="torchattacks `PGD`",
        ours=ours, run_peer=peer, agree=agree, target=1.0,
        size=f"ConvNet (width {width:g}) + probe, {n_test:,} test images 32×32, ε = 2/255, α = 0.2/255",
        note=(
            "ε = 2/255 because an undefended encoder has 0% robust accuracy at 8/255 on both sides. Both sides make the "
            "same 21 forward and 20 backward passes per batch, so the ratio stays near 1; ours saves only elementwise work."
        ),
    )
