"""Every single-run theorem on one mapping of measured terms, with its controls.

``evaluate_all(terms)`` is what ``clbounds bounds RUN`` computes, for terms from anywhere: a
run store, ``clbounds.measure`` on a foreign encoder, or a hand-written dict. Terms named
``<control>/<term>`` are the same terms measured on a control without learned structure
(random initialisation, shuffled labels, random embeddings); each check is evaluated on every
control its module declares (``CONTROLS``) that changed something the check reads, and its
``informative`` flag says whether it also holds there. No torch here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from . import arora2019, cacr, huang2023, robust_cl, ssa_clr
from .common import BoundCheck, with_controls

SINGLE_RUN_MODULES = (arora2019, huang2023, ssa_clr, robust_cl)
CONTROL_SEP = "/"  # control rows are stored as "<control>/<term>" (experiments/measurement/measure.py)


def split_controls(terms: dict[str, float]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(the run's own terms, {control: its terms}) from one mapping with ``<control>/<term>`` names.

    Examples:
        >>> split_controls({"sigma": 0.9, "random_init/alignment": 0.1})
        ({'sigma': 0.9}, {'random_init': {'alignment': 0.1}})
    """
    own: dict[str, float] = {}
    controls: dict[str, dict[str, float]] = defaultdict(dict)
    for name, value in terms.items():
        control, sep, term = name.partition(CONTROL_SEP)
        if sep:
            controls[control][term] = value
        else:
            own[name] = value
    return own, dict(controls)


def _module_controls(theorem: str) -> tuple[str, ...]:
    module = {m.__name__.rsplit(".", 1)[-1]: m for m in (*SINGLE_RUN_MODULES, cacr)}.get(theorem.split(".", 1)[0])
    return getattr(module, "CONTROLS", {}).get(theorem, ()) if module is not None else ()


def _reads_control(check: BoundCheck, control: BoundCheck) -> bool:
    """The control changed something this check reads (else its verdict there is the run's own)."""
    return (control.bound, control.measured, control.details.get("inputs")) != (check.bound, check.measured, check.details.get("inputs"))


def attach_controls(checks: Sequence[BoundCheck], control_checks: dict[str, Sequence[BoundCheck]]) -> list[BoundCheck]:
    """Each check with ``informative`` from the same check on the controls its module declares
    (``CONTROLS``) and that changed something it reads."""
    by_control = {name: {c.theorem: c for c in cs} for name, cs in control_checks.items()}
    out = []
    for check in checks:
        found = {name: by_control[name][check.theorem] for name in _module_controls(check.theorem) if check.theorem in by_control.get(name, {})}
        found = {name: c for name, c in found.items() if _reads_control(check, c)}
        out.append(with_controls(check, found) if found else check)
    return out


def evaluate_all(terms: Mapping[str, float]) -> list[BoundCheck]:
    """Every single-run theorem of every module on ``terms``, each evaluated on the controls too.

    A control's terms are the run's own with the control's rows in their place.

    Examples:
        >>> checks = evaluate_all({"arora_unsupervised_loss": 1.0, "arora_mean_classifier_loss": 0.4, "arora_collision": 0.1,
        ...                        "random_init/arora_unsupervised_loss": 0.9, "random_init/arora_mean_classifier_loss": 0.7})
        >>> one = next(c for c in checks if c.theorem == "arora2019.one_negative")
        >>> one.holds, one.informative
        (True, False)
    """
    own, controls = split_controls(dict(terms))
    checks = [check for module in SINGLE_RUN_MODULES for check in module.evaluate_all(own)]
    control_checks = {name: [c for module in SINGLE_RUN_MODULES for c in module.evaluate_all(own | rows)] for name, rows in controls.items()}
    return attach_controls(checks, control_checks)
