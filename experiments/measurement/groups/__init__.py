"""The term groups of ``clbounds measure``, one module each: ``fn(ctx) -> [(name, value, protocol)]``.

A new group is one module here plus its name in ``registry.GROUP_NAMES`` (and, where a
control should measure it again, in ``registry.CONTROL_GROUPS``); the table below maps each
name to its function, and the import check keeps the two equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ...store.db import Row
from ..context import Context
from ..registry import CONTROL_GROUPS, GROUP_NAMES
from .adversarial import adversarial_terms
from .autoattack import autoattack_terms, autoattack_unavailable_here
from .bounds import arora_and_huang_terms, arora_terms, bounds_terms
from .cacr_weights import cacr_weight_terms
from .geometry import geometry_terms
from .information import information_terms
from .lipschitz import lipschitz_terms
from .losses import losses_terms
from .optimization import optimization_terms
from .sharpness import sharpness_terms
from .shift import shift_terms
from .sigma import sigma_terms

Group = Callable[[Context], list[Row]]

TERM_GROUPS: dict[str, Group] = {
    "losses": losses_terms,
    "geometry": geometry_terms,
    "sigma": sigma_terms,
    "lipschitz": lipschitz_terms,
    "sharpness": sharpness_terms,
    "shift": shift_terms,
    "adversarial": adversarial_terms,
    "autoattack": autoattack_terms,
    "optimization": optimization_terms,
    "information": information_terms,
    "cacr_weights": cacr_weight_terms,
    "bounds": bounds_terms,
}
if tuple(TERM_GROUPS) != GROUP_NAMES:
    raise ImportError(f"groups.TERM_GROUPS {tuple(TERM_GROUPS)} and registry.GROUP_NAMES {GROUP_NAMES} differ")

#: Groups that cannot run on some contexts: group -> why not on this one (None: it can).
UNAVAILABLE: dict[str, Callable[[Context], str | None]] = {"autoattack": autoattack_unavailable_here}

#: Where a control runs less than the group: random init re-measures only the two sharpness
#: terms a check reads and the robust-CL checks' rows of "adversarial"; shuffled labels only the Arora part (the label-dependent one) of "bounds";
#: the BatchNorm-recalibrated init its Arora and Huang parts.
_CONTROL_VARIANTS: dict[tuple[str, str], Group] = {
    ("random_init", "sharpness"): functools.partial(sharpness_terms, only=("sharpness", "sharpness_average")),
    ("random_init", "adversarial"): functools.partial(adversarial_terms, checked_only=True),
    ("shuffled_labels", "bounds"): arora_terms,
    ("random_init_bn", "bounds"): arora_and_huang_terms,
}

#: control -> group -> the function it runs on the control's context.
CONTROL_PLAN: dict[str, dict[str, Group]] = {
    control: {name: _CONTROL_VARIANTS.get((control, name), TERM_GROUPS[name]) for name in names} for control, names in CONTROL_GROUPS.items()
}
