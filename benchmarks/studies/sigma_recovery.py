"""Does σ̂ recover a known σ? The synthetic generator's ``main_fraction`` against σ̂(δ).

    python -m benchmarks.studies.sigma_recovery

The generator marks each sample as in its class's main part or not; at the generator's own δ
(the largest d̂_A between two main-part members of one class, ``reference_delta``), σ(δ) is
``main_fraction`` as long as the augmentation cannot bring an outlier within δ of the whole
main part. Each case draws ``per_class`` inputs of every class with exactly
round(main_fraction · per_class) of them in the main part (the generator's ``main``), so the
error shown is the estimator's, not the binomial scatter of a data set's draws, and measures
them with the sigma group itself. ``docs/estimators.md`` shows the table
(``benchmarks.studies.convergence`` renders it); ``tests/test_verdicts.py`` asserts it.
"""

from __future__ import annotations

import argparse
import time

import torch

from clbounds.experiments.config import config_from_dict
from clbounds.experiments.measurement.context import Context, reference_delta
from clbounds.experiments.measurement.groups.sigma import sigma_terms
from clbounds.experiments.training.augment import Augment
from clbounds.experiments.training.runs import load_run_data

FRACTIONS = (0.5, 0.7, 0.9, 1.0)


def sigma_recovery(main_fraction: float, image_size: int, augment_spec: str, per_class: int = 40, num_classes: int = 10,
                   views: int = 8, seed: int = 0) -> dict[str, float]:
    """The sigma group's rows on a synthetic sample whose classes each hold exactly
    round(``main_fraction`` · ``per_class``) main-part members, at the generator's δ under
    ``augment_spec`` (colour strength 0.5, the outlier scale and every other generator setting
    at their defaults)."""
    raw = {"name": "sigma-recovery", "seed": seed, "device": "cpu", "augment": augment_spec, "color_strength": 0.5,
           "data": {"name": "synthetic", "image_size": image_size, "num_classes": num_classes, "n_train": 64, "n_test": 64,
                    "synthetic": {"main_fraction": main_fraction}},
           "measure": {"views": views, "sigma_per_class": per_class}}
    cfg = config_from_dict(raw)
    data = load_run_data(cfg)
    n = per_class * num_classes
    y = torch.arange(n) % num_classes
    main = (torch.arange(n) // num_classes) < round(main_fraction * per_class)  # the first round(f·n) of each class
    g = torch.Generator().manual_seed(seed * 7919 + 1)
    sample = data.generator.sample(y, g, main=main)
    augment = Augment(cfg.augment, image_size=image_size, color_strength=cfg.color_strength)
    v = torch.stack([augment(sample.x, g) for _ in range(views)])
    delta, note = reference_delta(cfg, data, torch.device("cpu"), augment_spec=cfg.augment)
    ctx = Context(cfg, data, torch.nn.Identity(), torch.nn.Identity(), augment, sample.x, sample.y, v, torch.device("cpu"), delta=delta, delta_note=note)
    rows = {name: value for name, value, _ in sigma_terms(ctx)}
    rows["main_fraction_realised"] = round(main_fraction * per_class) / per_class
    return rows


def recovery_table(sizes: tuple[int, ...] = (16, 32), specs: tuple[str, ...] = ("ae", "abcde"), per_class: int = 40, num_classes: int = 10) -> str:
    """Markdown: σ̂ at δ, 0.75δ and 2δ against ``main_fraction`` for every size, augmentation and fraction."""
    t0 = time.perf_counter()
    lines = ["| image side | augmentation | main_fraction | σ̂(δ) | error | δ | σ̂(0.75δ) | σ̂(2δ) |", "|---|---|---|---|---|---|---|---|"]
    for size in sizes:
        for spec in specs:
            for f in FRACTIONS:
                r = sigma_recovery(f, size, spec, per_class, num_classes)
                lines.append(f"| {size} | {spec} | {f:g} | {r['sigma']:.3f} | {r['sigma'] - r['main_fraction_realised']:+.3f} | {r['sigma_delta']:.3f} "
                             f"| {r['sigma@delta_factor=0.75']:.3f} | {r['sigma@delta_factor=2']:.3f} |")
    head = (f"{num_classes} classes, {per_class} inputs per class, M = 8 views plus the input itself and aligned crop pairs, colour strength 0.5, "
            f"outlier scale 3 (the default), seed 0; {time.perf_counter() - t0:.0f} s.")
    return head + "\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(recovery_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
