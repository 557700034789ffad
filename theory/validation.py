"""What the public terms accept: one decorator checks every argument against its annotation.

A term handed NaN, an integer tensor or ``t = inf`` would return a silent NaN (or torch's
own error deep inside); :func:`validated` turns each into a ``ValueError`` that names the
argument, before any work starts:

- a ``Tensor`` argument must be a real floating tensor (float16, bfloat16, float32, float64)
  with finite entries; the arguments declared as labels must be integer tensors with
  entries >= 0;
- a ``float`` argument must be a finite real number (an ``int`` or a 0-d floating tensor is
  fine, a ``bool`` is not), an ``int`` argument an integer;
- declared ranges, e.g. ``@validated(t="> 0", block_size=">= 1")``, are checked too.

Checking the entries of a tensor costs one pass over it and, on a GPU, a device-to-host
sync. The trainer calls the losses every step and checks its weights and loss itself
(non-finite ones fail the run), so it runs its loop inside :func:`unchecked_values`, which
skips the entry check and keeps the dtype and parameter checks (which cost nothing).

Example:
    >>> @validated(t="> 0")
    ... def spread(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    ...     return (t * z).std()
    >>> spread(torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    ValueError: spread: z has 1 non-finite entry (NaN or inf); the term is undefined there
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import numbers
import operator
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

_check_values = contextvars.ContextVar("clbounds_check_values", default=True)


@contextlib.contextmanager
def unchecked_values() -> Iterator[None]:
    """Within this block, tensor entries are not checked for NaN/inf (dtypes and parameters
    still are): for a caller that checks its own results, such as the training loop."""
    token = _check_values.set(False)
    try:
        yield
    finally:
        _check_values.reset(token)


def check_tensor(where: str, name: str, x: Any, labels: bool = False, infinite: bool = False) -> None:
    """A floating tensor with finite entries (±inf allowed with ``infinite``), or, with
    ``labels``, integers >= 0. Entries of meta tensors (shapes only) are not checked."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{where}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if labels:
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise ValueError(f"{where}: {name} must be an integer tensor of class labels, got {x.dtype}")
        if _check_values.get() and x.device.type != "meta" and x.numel() and int(x.min()) < 0:
            raise ValueError(f"{where}: {name} must be >= 0 (class labels), got {int(x.min())}")
        return
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{where}: {name} must be a real floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}")
    if _check_values.get() and x.device.type != "meta":
        bad = int((x.isnan() if infinite else ~torch.isfinite(x)).sum())
        if bad:
            what = "NaN" if infinite else "non-finite"
            raise ValueError(f"{where}: {name} has {bad} {what} entr{'y' if bad == 1 else 'ies'} ({'NaN' if infinite else 'NaN or inf'}); the term is undefined there")


def check_number(where: str, name: str, value: Any, integer: bool = False, bound: str | None = None) -> None:
    """A finite real number (an integer with ``integer``), within ``bound`` such as ``"> 0"``."""
    if not integer and isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point():
        # a 0-d tensor, e.g. a learnable temperature: a parameter, so checked even inside
        # unchecked_values (one scalar; the trainer passes floats)
        if value.device.type == "meta":
            return
        value = float(value.detach())
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where}: {name} must be {'an integer' if integer else 'a real number'}, got {value!r}")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):  # an int is finite (and 10**400 would overflow a float)
        raise ValueError(f"{where}: {name} must be finite, got {value}")
    for condition in bound.split(",") if bound else ():
        symbol, limit = condition.split()
        if not _OPS[symbol](value, float(limit)):
            raise ValueError(f"{where}: {name} must be {' and '.join(c.strip() for c in bound.split(','))}, got {value}")


def _kind(annotation: Any) -> tuple[str | None, bool]:
    """('tensor' | 'tensors' | 'float' | 'int' | None, optional) of an annotation."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return None, optional
        annotation = args[0]
    if annotation is torch.Tensor:
        return "tensor", optional
    if typing.get_origin(annotation) is tuple and all(a is torch.Tensor for a in typing.get_args(annotation)):
        return "tensors", optional
    if annotation is float:
        return "float", optional
    if annotation is int:
        return "int", optional
    return None, optional


def validated(_fn: F | None = None, *, labels: tuple[str, ...] = (), infinite: tuple[str, ...] = (), **bounds: str) -> Any:
    """Decorates a public term so that its arguments are checked against its annotations
    (see the module docstring) and ``bounds``, e.g. ``@validated(temperature="> 0")`` or
    ``@validated(holdout=">= 0, < 1")``; the tensors named in ``labels`` are class labels,
    and those named in ``infinite`` may hold ±inf (not NaN)."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        kinds = {name: _kind(p.annotation) for name, p in signature.parameters.items()}
        unknown = (set(bounds) | set(labels) | set(infinite)) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{fn.__name__} has no argument(s) {sorted(unknown)} to bound")
        where = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(f"{where}: {err}") from None
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                kind, optional = kinds[name]
                if kind is None or (optional and value is None):
                    continue
                if kind == "tensor":
                    check_tensor(where, name, value, labels=name in labels, infinite=name in infinite)
                elif kind == "tensors":
                    for i, item in enumerate(value):
                        check_tensor(where, f"{name}[{i}]", item)
                else:
                    check_number(where, name, value, integer=kind == "int", bound=bounds.get(name))
            return fn(*args, **kwargs)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__validated__ = {"labels": labels, "infinite": infinite, "bounds": bounds}  # type: ignore[attr-defined]  # for the tests
        return wrapper  # type: ignore[return-value]

    return decorate(_fn) if _fn is not None else decorate
