"""clbounds: put the theory of contrastive self-supervised learning to the test.

One import name for the whole toolkit. The repository's folders install under it:

- ``clbounds.theory``: the losses and every empirical term of the theorems (tensors in, tensors out);
- ``clbounds.bounds``: one module per theorem (numbers in, numbers out, no torch);
- ``clbounds.experiments``: data, encoders, training, probes, the run store and the CLI;
- ``clbounds.figures``: plots and the report.

This file is the package's ``__init__`` (pyproject maps ``clbounds`` to the repository root),
so ``import clbounds`` stays light: subpackages load on first use, and nothing here imports
torch (``bounds`` must stay importable without it).

Bring your own encoder: ``clbounds.measure(model, data, projector=..., method=...)`` and
``clbounds.evaluate(model, data)`` take any ``nn.Module`` from [0, 1] images to features, and
``clbounds.bounds.evaluate_all(rows.terms)`` gives the bound checks (experiments/api.py).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_SUBPACKAGES = ("theory", "bounds", "experiments", "figures")
# The Python API for any encoder (experiments/api.py), loaded on first use.
_API = ("measure", "evaluate", "as_dataset", "Rows")

__all__ = ["__version__", *_SUBPACKAGES, *_API]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.experiments.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
