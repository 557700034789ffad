"""`clbounds measure`: every empirical term of the theorems, for one trained encoder.

Each term group (``groups/``, one module each, named in ``registry.GROUP_NAMES``) computes a
handful of terms with the pure functions of `theory/` and returns (name, value, protocol)
rows; :func:`measure` stores them in the run store, then measures the groups again on the
controls of the control plan. Protocols name the split, the number of inputs, the features
used and every estimator setting, so a stored number can always be reproduced.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from clbounds.bounds.common import UNAVAILABLE_SUFFIX
from clbounds.bounds.evaluate import CONTROL_SEP  # controls are stored as "<control>/<term>"

from ..store.db import Row, RunRecord, Store
from ..store.settings import progress, record_progress
from .context import Context, ControlNotApplicable, build_context
from .cost import Estimate, Sizes, forward_seconds, skipped_ascents
from .groups import CONTROL_PLAN, TERM_GROUPS, UNAVAILABLE
from .registry import NEEDS_TRAINING_LOSS, check_groups, control_groups, default_groups

__all__ = ["control_rows", "measure", "measure_context", "skipped_groups"]


def _group(ctx: Context, name: str, fn: Callable[[Context], list[Row]]) -> list[Row]:
    try:
        rows = fn(ctx)
    except (RuntimeError, ValueError) as err:
        where = f" on the {ctx.control_name} control" if ctx.control_name else ""
        raise RuntimeError(f"term group {name!r} failed{where}: {err}; the groups before it were stored") from err
    bad = [r for r in rows if not math.isfinite(r[1])]
    if bad:
        raise RuntimeError(f"term group {name!r} gave non-finite values{' on the ' + ctx.control_name + ' control' if ctx.control_name else ''}: {bad}")
    return rows


def control_rows(ctx: Context, name: str, rows: list[Row]) -> list[Row]:
    """``rows`` renamed ``<control>/<name>``, the control named in front of each protocol."""
    from clbounds.bounds.common import CONTROLS

    return [(f"{name}{CONTROL_SEP}{term}", value, f"control {name} ({CONTROLS[name]}); {protocol}") for term, value, protocol in rows]


def skipped_groups(ctx: Context, names: list[str]) -> dict[str, str]:
    """The groups that cannot be computed for this encoder, or here, each with the reason."""
    skipped = {name: why for name in names if name in UNAVAILABLE and (why := UNAVAILABLE[name](ctx))}
    if ctx.loss_name is None:
        skipped |= {name: "needs the training loss, which this encoder does not record: pass loss_fn or method (simclr, barlow_twins)" for name in names if name in NEEDS_TRAINING_LOSS}
    return skipped


def _estimate(ctx: Context, todo: list[str], names: list[str], done: frozenset[str]) -> Estimate | None:
    """The cost model's estimate of this measure (None when a count or the timing fails: an
    estimate never stops a measure)."""
    plan = [("", n) for n in todo]
    if ctx.cfg.measure.controls:
        plan += [(control, n) for control, groups in control_groups(names) for n in groups if f"{control}{CONTROL_SEP}{n}" not in done]
    try:
        sizes = Sizes(n_train=int(ctx.data.x_train.shape[0]), n_test=int(ctx.data.x_test.shape[0]))
        per_image = forward_seconds(ctx.model, ctx.x[:64].float() / 255)
        return Estimate(plan, ctx.cfg, sizes, per_image)
    except (ValueError, RuntimeError):
        return None


def measure_context(ctx: Context, names: list[str], write: Callable[[list[Row]], None], log: Callable[[str], None] | None = None,
                    run_group: Callable[[str, str, Callable[[], list[Row]]], list[Row]] | None = None,
                    done: frozenset[str] = frozenset(), on_done: Callable[[str, str], None] | None = None) -> tuple[list[Row], dict[str, str]]:
    """Every group of ``names`` on ``ctx``, then on the controls (``measure.controls``); each
    group's rows go to ``write`` as soon as they exist. Returns (own rows, skipped groups).

    ``run_group(control, name, compute)`` runs each group (``control`` is "" for the encoder's
    own); by default it just calls ``compute``. The measure-scaling benchmark times groups there.
    ``done`` holds the groups (``name``) and control groups (``control/name``) already stored
    with these settings, which are kept, not recomputed; ``on_done(control, name)`` is called
    as each one is stored, so a stopped measure resumes after it. Each group logs its time.
    """
    run = run_group or (lambda control, name, compute: compute())
    skipped = skipped_groups(ctx, names)
    names = [n for n in names if n not in skipped]
    ctx.log = log
    rows: list[Row] = []
    todo = [n for n in names if n not in done]
    if log and len(todo) < len(names):
        log(f"  kept, stored with these settings: {', '.join(n for n in names if n in done)}")
    spent = 0.0
    estimate = _estimate(ctx, todo, names, done) if log else None
    if estimate is not None and log:
        log(f"  to measure: {len(todo)} groups{' and the controls' if ctx.cfg.measure.controls else ''}, {estimate.text()} (cost model, measurement/cost.py)")
    for i, name in enumerate(todo):
        t0 = time.perf_counter()
        group = run("", name, lambda: _group(ctx, name, TERM_GROUPS[name]))
        write(group)
        rows += group
        if on_done:
            on_done("", name)
        # a term this encoder does not allow is a stored row with its reason, and listed here
        skipped |= {f"{name}/{term[: -len(UNAVAILABLE_SUFFIX)]}": why for term, _, why in group if term.endswith(UNAVAILABLE_SUFFIX)}
        spent += time.perf_counter() - t0
        if estimate is not None:
            estimate.finished("", name, time.perf_counter() - t0, skipped_ascents(group))
        if log:
            log(f"  measured {name} ({i + 1}/{len(todo)}): {len(group)} terms in {time.perf_counter() - t0:.1f} s ({spent:.0f} s so far"
                + (f", {estimate.text()})" if estimate is not None else ")"))
    if ctx.cfg.measure.controls:
        for control, todo in control_groups(names):
            try:
                cctx = ctx.control(control)
            except ControlNotApplicable as err:  # not a gap: another control already covers it
                if log:
                    log(f"  control {control} left out: {err}")
                continue
            pending = [n for n in todo if f"{control}{CONTROL_SEP}{n}" not in done]
            for j, name in enumerate(pending):
                t0 = time.perf_counter()
                try:
                    crows = control_rows(ctx, control, run(control, name, lambda: _group(cctx, name, CONTROL_PLAN[control][name])))
                    write(crows)
                except RuntimeError as err:  # the run's own terms stand; its checks just lack this control
                    skipped[f"{control}/{name}"] = str(err)
                    if log:
                        log(f"  control {control}, group {name} failed and is left out: {err}")
                    continue
                if on_done:
                    on_done(control, name)
                spent += time.perf_counter() - t0
                if estimate is not None:
                    estimate.finished(control, name, time.perf_counter() - t0, skipped_ascents(crows))
                if log:  # the controls report like the groups: a long one is never silent
                    log(f"  measured control {control}/{name} ({j + 1}/{len(pending)}): {time.perf_counter() - t0:.1f} s ({spent:.0f} s so far"
                        + (f", {estimate.text()})" if estimate is not None else ")"))
    for name, why in skipped.items():
        if log:
            log(f"  skipped {name}: {why}")
    return rows, skipped


def measure(record: RunRecord, store: Store, terms: list[str] | None = None, log: Callable[[str], None] | None = None, force: bool = False) -> list[Row]:
    """Computes the chosen term groups (by default all but AutoAttack, which ``measure.autoattack``
    adds) for a finished run and stores them.

    With ``measure.controls`` (the default) each group is then measured again on the controls
    of ``registry.CONTROL_GROUPS``, stored as ``<control>/<term>`` rows, so that every bound check can
    say whether it also holds without learned structure. Returns the rows computed now.

    Each group and control group is recorded in ``measured_with.json`` as it is stored, so a
    measure that is stopped resumes where it stopped: a group already stored with the same
    settings is kept (``force`` recomputes everything).
    """
    check_groups(terms)
    ctx = build_context(record)
    if not ctx.cfg.measure.controls:  # stale control rows would be read as this measurement's controls
        store.delete_measurements(record.id, f"%{CONTROL_SEP}%")
    settings = record.config["measure"]
    done = frozenset() if force else frozenset(progress(store, record.id, "measure_own", settings) | progress(store, record.id, "measure_controls", settings))

    def on_done(control: str, name: str) -> None:
        if control:
            record_progress(store, record.id, "measure_controls", f"{control}{CONTROL_SEP}{name}", settings)
        else:
            record_progress(store, record.id, "measure_own", name, settings)

    rows, _ = measure_context(ctx, terms or default_groups(ctx.cfg), lambda group: store.add_measurements(record.id, group), log, done=done, on_done=on_done)
    return rows
