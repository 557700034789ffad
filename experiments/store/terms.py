"""The one rule that picks which stored row of a term is read, by a bound check and by a figure.

A term may be stored under several protocols: measured again with other settings, or on the
initial weights (``random-init``) beside the trained ones (``final-epoch``). The row read is,
in this order of preference:

1. one whose protocol contains the protocol asked for, when one is asked for (a figure's caption);
2. not a ``random-init`` measurement (the baseline, not the encoder);
3. a ``final-epoch`` measurement;
4. the latest written (then the protocol text, so the choice never depends on row order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RANDOM_INIT, FINAL_EPOCH = "random-init", "final-epoch"


def preference(protocol: str, created: float, want: str | None = None) -> tuple:
    """The sort key of the rule (module docstring): the largest is read.

    Example:
        >>> preference("knn final-epoch", 2.0) > preference("knn random-init", 3.0)
        True
    """
    return (want is not None and want in protocol, RANDOM_INIT not in protocol, FINAL_EPOCH in protocol, created, protocol)


def pick(rows: Iterable[Mapping[str, Any]], want: str | None = None) -> Mapping[str, Any]:
    """The row the rule reads among ``rows`` of one term (each with ``protocol`` and ``created``).

    Example:
        >>> pick([{"protocol": "old", "created": 2.0}, {"protocol": "final-epoch", "created": 1.0}])["protocol"]
        'final-epoch'
    """
    return max(rows, key=lambda r: preference(r["protocol"], r["created"], want))
