"""What measure knows before it runs anything (torch-free): the names of its term groups, the
control plan, the groups that need the training loss, and the settled estimator budgets.

The budgets come from the convergence study ``benchmarks/studies/convergence.py`` (a script,
not library code), which regenerates ``docs/estimators.md``; measure's protocols name any
setting below them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config import Config, ConfigError

#: Settled budgets found by benchmarks/studies/convergence.py on `quick-simclr-synthetic` (docs/estimators.md); the
#: `cpu` preset uses them and measure's protocols name a budget below them.
#: R_ε's M is the largest settled one over the ε where it is neither saturated nor unsettled
#: (ε = 0.75 on that run; at ε = 1 it still rises at 32 views, so a bound built on it is optimistic).
SETTLED = {"sigma_per_class": 30, "views": 24, "trace_samples": 16, "hessian_iters": 4, "sharpness_batches": 4, "mi_samples": 128}


def below_settled(key: str, value: int) -> str:
    """A protocol note when a measure setting is below its settled budget (empty otherwise).

    Example:
        >>> below_settled("views", 4)
        ' (below the settled budget 24 of docs/estimators.md)'
    """
    settled = SETTLED.get(key)
    return f" (below the settled budget {settled} of docs/estimators.md)" if settled is not None and value < settled else ""


#: The term groups of ``clbounds measure``, in the order they are measured (one module each in
#: ``groups/``). AutoAttack is opt-in (``measure.autoattack``): minutes per run on a CPU.
GROUP_NAMES = ("losses", "geometry", "sigma", "lipschitz", "sharpness", "shift", "adversarial", "autoattack", "optimization", "information", "cacr_weights", "bounds")
OPT_IN = ("autoattack",)

#: What each control measures again, by term group (bounds/common.CONTROLS says what each control
#: is). Random init: every group that depends on the encoder (σ does not: it is pixel space)
#: and that a check declaring the control reads (not "optimization", whose Wen checks take the
#: initial gradient norm training logged, nor "information", whose CACR check declares no control;
#: tests/test_control_plan.py checks that every control group is read).
#: Random init with BatchNorm recalibrated: the groups its checks read.
#: Shuffled labels: the groups whose terms use the labels, and of "bounds" only its Arora part.
#: Random embedding: CACR's weight statistics. A check is evaluated on a control only where it
#: reads a term the control measured again (experiments/pipeline/bounds_step.py). Which function
#: a control runs for a group is ``groups.CONTROL_PLAN``'s.
CONTROL_GROUPS: dict[str, tuple[str, ...]] = {
    "random_init": tuple(g for g in GROUP_NAMES if g not in ("sigma", "autoattack", "optimization", "information")),
    # BatchNorm recalibrated: the groups of the checks that declare it (Arora, Huang, SSA-CLR's
    # Arora and shift parts); of "bounds" only its Arora and Huang parts, not the PAC-Bayes ascent.
    "random_init_bn": ("losses", "geometry", "lipschitz", "shift", "bounds"),
    "shuffled_labels": ("geometry", "sigma", "bounds"),
    "random_embedding": ("cacr_weights",),
}

#: The groups that differentiate the training loss: a foreign encoder needs ``loss_fn`` or ``method``.
NEEDS_TRAINING_LOSS = ("sharpness", "optimization")


def check_groups(names: Iterable[str] | None) -> None:
    """Raises a ConfigError (a ValueError) naming every unknown group and the choices: the one
    check of a group list, for the CLI (exit 2) and the Python API alike."""
    unknown = sorted(set(names or []) - set(GROUP_NAMES))
    if unknown:
        raise ConfigError(f"unknown term group(s) {', '.join(unknown)}; choose from {', '.join(GROUP_NAMES)}")


def default_groups(cfg: Config) -> list[str]:
    """The groups measured when none are named: all but the opt-in AutoAttack, unless ``measure.autoattack``."""
    return [g for g in GROUP_NAMES if g not in OPT_IN or cfg.measure.autoattack]


def control_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    """Each control of :data:`CONTROL_GROUPS` with the groups of ``names`` it measures again, in measure's order."""
    return [(control, todo) for control, plan in CONTROL_GROUPS.items() if (todo := [n for n in names if n in plan])]
