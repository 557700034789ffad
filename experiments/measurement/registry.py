"""What measure knows before it runs anything (torch-free): the settled estimator budgets.

The budgets come from the convergence study ``benchmarks/studies/convergence.py`` (a script,
not library code), which regenerates ``docs/estimators.md``; measure's protocols name any
setting below them.
"""

from __future__ import annotations

#: Settled budgets found by benchmarks/studies/convergence.py on `quick-simclr-synthetic` (docs/estimators.md); the
#: `cpu` preset uses them and measure's protocols name a budget below them.
SETTLED = {"sigma_per_class": 8, "views": 16, "trace_samples": 4, "hessian_iters": 4, "sharpness_batches": 4, "mi_samples": 512}


def below_settled(key: str, value: int) -> str:
    """A protocol note when a measure setting is below its settled budget (empty otherwise).

    Example:
        >>> below_settled("views", 4)
        ' (below the settled budget 16 of docs/estimators.md)'
    """
    settled = SETTLED.get(key)
    return f" (below the settled budget {settled} of docs/estimators.md)" if settled is not None and value < settled else ""
