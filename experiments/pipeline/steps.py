"""One grid item's steps: train → eval → measure → bounds, each skipped when it is stored
under the item's settings. Runs in any process: inline, in a worker, or as a cluster job."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Config
from ..store.db import RunRecord, Store
from ..store.settings import measured_with, record_settings
from ..store.spool import open_store


def run_pipeline(cfg: Config, store_root: str, terms: Sequence[str] | None, progress: bool, on_step: Callable[[str], None] | None = None) -> tuple[str, dict[str, float]]:
    """Train (or skip), evaluate and measure one run; returns its id and the wall seconds of
    each step it ran. Runs in any process; ``on_step(name)`` is called as each step starts
    (inline only: a callback does not cross a process boundary)."""
    step = on_step or (lambda name: None)
    from ..measurement.accuracy import evaluate
    from ..measurement.measure import measure
    from ..measurement.registry import default_groups
    from ..training.loop import train
    from .bounds_step import evaluate_bounds

    store = open_store(store_root)  # in a cluster job, a SpoolStore: rows go to the run folder
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    stored = store.get_run(cfg.run_id())
    if stored is None or stored.status != "done":
        step("train")
    record: RunRecord = train(cfg, store, progress=progress)
    seconds["train"] = time.perf_counter() - t
    # The run id leaves eval and measure out, so a stored run may have been evaluated and
    # measured under other settings: use this item's, and redo a step whose settings differ.
    record = dataclasses.replace(record, config=cfg.to_dict())
    if measured_with(store, record.id).get("eval") != record.config["eval"]:
        t = time.perf_counter()
        step("eval")
        evaluate(record, store)
        record_settings(store, record.id, "eval", record.config["eval"])
        seconds["eval"] = time.perf_counter() - t
    settings = record.config["measure"]
    covered = measured_groups(store, record.id, settings)
    missing = [g for g in (terms if terms is not None else default_groups(cfg)) if g not in covered]
    if missing:
        t = time.perf_counter()
        step("measure")
        measure(record, store, missing)
        record_measured(store, record.id, missing, settings)
        seconds["measure"] = time.perf_counter() - t
    evaluate_bounds(record, store)
    return record.id, seconds


def _group_settings(store: Store, run_id: str) -> dict[str, Any]:
    """Term group -> the measure settings its stored rows came from. A store written before
    groups were recorded one by one holds a single ``measure`` entry for every group."""
    from ..measurement.registry import GROUP_NAMES

    done = measured_with(store, run_id)
    legacy = {g: done["measure"] for g in GROUP_NAMES} if "measure" in done else {}
    return legacy | done.get("measure_groups", {})


def measured_groups(store: Store, run_id: str, settings: dict[str, Any]) -> set[str]:
    """The term groups whose stored rows were measured under ``settings`` (the measure section)."""
    return {g for g, s in _group_settings(store, run_id).items() if s == settings}


def record_measured(store: Store, run_id: str, groups: Sequence[str], settings: dict[str, Any]) -> None:
    """Note that ``groups`` were (re)measured under ``settings``, so a sweep re-measures a group
    exactly when its stored rows came from other settings (e.g. `clbounds measure RUN
    measure.eps=0.8` between two `verify` calls)."""
    record_settings(store, run_id, "measure_groups", _group_settings(store, run_id) | {g: settings for g in groups})


def pipeline_complete(store: Store, cfg: Config, terms: Sequence[str] | None) -> bool:
    """Whether :func:`run_pipeline` would find nothing to do for ``cfg`` (trained, evaluated
    and measured with these settings): a cluster driver then submits no job for it."""
    from ..measurement.registry import default_groups

    record = store.get_run(cfg.run_id())
    if record is None or record.status != "done" or not (record.path / "encoder.safetensors").is_file():
        return False
    settings = cfg.to_dict()
    if measured_with(store, record.id).get("eval") != settings["eval"]:
        return False
    covered = measured_groups(store, record.id, settings["measure"])
    return all(g in covered for g in (terms if terms is not None else default_groups(cfg)))
