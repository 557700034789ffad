"""The examples in the docstrings of the pure layers run and give what they show (a broken
example is a wrong statement in the documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import clbounds.bounds
import clbounds.theory

MODULES = sorted(
    [f"clbounds.bounds.{m.name}" for m in pkgutil.iter_modules(clbounds.bounds.__path__)]
    + [f"clbounds.theory.{m.name}" for m in pkgutil.iter_modules(clbounds.theory.__path__)]
    + ["clbounds.figures.statistics"]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} fail (run pytest --doctest-modules on it)"
