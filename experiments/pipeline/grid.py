"""Running a grid of runs: train → eval → measure, each step skipped when already stored.

Runs go through a small executor interface, so the same grid can later be handed to a
cluster scheduler (e.g. submitit's SLURM executor has the same ``submit``/``result`` shape)
or to torchrun. The default runs them one after another in this process: on a 2-core CPU,
torch already uses both cores for one run, and parallel runs would only fight over them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import Config, ConfigError, SlurmConfig
from ..store.spool import import_spool, open_store
from ..store.db import RunRecord, Store


class Executor(Protocol):
    """Anything with ``submit(fn, *args) -> Future`` (concurrent.futures, submitit, …)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...


class InlineExecutor:
    """Runs each job immediately in this process (the default)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(err, KeyboardInterrupt):
                raise
            future.set_exception(err)
        return future


def local_processes(workers: int) -> Executor:
    """Local worker processes; each run then writes to the store from its own process."""
    return ProcessPoolExecutor(max_workers=workers)


@dataclass
class GridItem:
    label: str
    config: Config


@dataclass
class GridResult:
    label: str
    run_id: str
    status: str  # done or failed
    message: str = ""


def run_pipeline(cfg: Config, store_root: str, terms: Sequence[str] | None, progress: bool, on_step: Callable[[str], None] | None = None) -> tuple[str, dict[str, float]]:
    """Train (or skip), evaluate and measure one run; returns its id and the wall seconds of
    each step it ran. Runs in any process; ``on_step(name)`` is called as each step starts
    (inline only: a callback does not cross a process boundary)."""
    step = on_step or (lambda name: None)
    from .bounds_step import evaluate_bounds
    from ..measurement.accuracy import evaluate
    from ..measurement.measure import measure
    from ..measurement.registry import default_groups
    from ..training.loop import train

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
    done = _measured_with(store, record.id)
    if done.get("eval") != record.config["eval"]:
        t = time.perf_counter()
        step("eval")
        evaluate(record, store)
        _record_settings(store, record.id, "eval", record.config["eval"])
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


def _measured_with(store: Store, run_id: str) -> dict[str, Any]:
    """The eval and measure settings a run's stored results were computed with (``{}``: unknown)."""
    path = store.run_dir(run_id) / "measured_with.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _group_settings(store: Store, run_id: str) -> dict[str, Any]:
    """Term group -> the measure settings its stored rows came from. A store written before
    groups were recorded one by one holds a single ``measure`` entry for every group."""
    from ..measurement.registry import GROUP_NAMES

    done = _measured_with(store, run_id)
    legacy = {g: done["measure"] for g in GROUP_NAMES} if "measure" in done else {}
    return legacy | done.get("measure_groups", {})


def measured_groups(store: Store, run_id: str, settings: dict[str, Any]) -> set[str]:
    """The term groups whose stored rows were measured under ``settings`` (the measure section)."""
    return {g for g, s in _group_settings(store, run_id).items() if s == settings}


def record_measured(store: Store, run_id: str, groups: Sequence[str], settings: dict[str, Any]) -> None:
    """Note that ``groups`` were (re)measured under ``settings``, so a sweep re-measures a group
    exactly when its stored rows came from other settings (e.g. `clbounds measure RUN
    measure.eps=0.8` between two `verify` calls)."""
    _record_settings(store, run_id, "measure_groups", _group_settings(store, run_id) | {g: settings for g in groups})


def _record_settings(store: Store, run_id: str, section: str, settings: dict[str, Any]) -> None:
    path = store.run_dir(run_id) / "measured_with.json"
    done = _measured_with(store, run_id) | {section: settings}
    if section == "measure_groups":  # folded into the per-group record above
        done.pop("measure", None)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(done, indent=2, sort_keys=True))
    tmp.replace(path)  # atomic: an interrupted write leaves the previous file


def pipeline_complete(store: Store, cfg: Config, terms: Sequence[str] | None) -> bool:
    """Whether :func:`run_pipeline` would find nothing to do for ``cfg`` (trained, evaluated
    and measured with these settings): a cluster driver then submits no job for it."""
    from ..measurement.registry import default_groups

    record = store.get_run(cfg.run_id())
    if record is None or record.status != "done" or not (record.path / "encoder.safetensors").is_file():
        return False
    settings = cfg.to_dict()
    if _measured_with(store, record.id).get("eval") != settings["eval"]:
        return False
    covered = measured_groups(store, record.id, settings["measure"])
    return all(g in covered for g in (terms if terms is not None else default_groups(cfg)))


def run_grid(items: Sequence[GridItem], store: Store, executor: Executor | None = None, terms: Sequence[str] | None = None, progress: bool = False, log: Callable[[str], None] = print) -> list[GridResult]:
    """Runs every grid item; a run that fails (e.g. diverges) is reported and the sweep goes on.

    Each item is logged as it finishes, with the seconds of the steps it ran (train, eval,
    measure; a stored step is skipped and not listed). Inline, each step is also logged as it
    starts, so a long grid is never silent. A :class:`cluster.SubmititExecutor` gets the
    unfinished items as one job array, and they are logged as they end."""
    from .cluster import SubmititExecutor, job_result

    inline = executor is None or isinstance(executor, InlineExecutor)
    executor = executor or InlineExecutor()

    def head(i: int, item: GridItem) -> str:
        return f"  [{i + 1}/{len(items)}] {item.label:<28} {item.config.run_id()}"

    def collect(i: int, item: GridItem, result: Callable[[], tuple[str, dict[str, float]]]) -> GridResult:
        run_id = item.config.run_id()
        try:
            try:
                _, seconds = result()
            finally:  # what a job on another node wrote into its run folder; the jobs' snapshot follows
                import_spool(store, snapshot=getattr(executor, "snapshot", None))
            steps = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if v >= 0.5) or "stored"
            log(f"{head(i, item)}  done ({steps})")
            return GridResult(item.label, run_id, "done")
        except Exception as err:  # noqa: BLE001 - one failed run must not stop the sweep
            message = f"{type(err).__name__}: {err}"
            record = store.get_run(run_id)
            if record is not None and record.status != "failed":
                store.set_status(run_id, "failed", message)
            log(f"{head(i, item)}  FAILED: {message}")
            if "--debug" in sys.argv:
                traceback.print_exc()
            return GridResult(item.label, run_id, "failed", message)

    if isinstance(executor, SubmititExecutor):
        results: list[GridResult | None] = [None] * len(items)
        import_spool(store)  # what the jobs of an earlier driver wrote
        todo = []
        for i, item in enumerate(items):
            if pipeline_complete(store, item.config, terms):
                results[i] = collect(i, item, lambda: ("", {}))
            else:
                todo.append(i)
        settings = {json.dumps(dataclasses.asdict(items[i].config.slurm), sort_keys=True) for i in todo}
        if len(settings) > 1:
            raise ConfigError(f"the runs of one grid are one job array and need the same slurm settings; these differ: {' | '.join(sorted(settings))}")
        slurm = items[todo[0]].config.slurm if todo else SlurmConfig()
        if todo and not executor.dry_run:
            store.write_snapshot(executor.snapshot)  # the database the jobs start from
        jobs = executor.submit_grid([(items[i].config.run_id(), (items[i].config, str(store.root), terms)) for i in todo], slurm)
        for k in executor.as_completed(jobs):
            results[todo[k]] = collect(todo[k], items[todo[k]], lambda job=jobs[k]: job_result(job, executor.cluster))
        return [r for r in results if r is not None]

    def submit(i: int, item: GridItem) -> Future:
        if inline:
            return executor.submit(run_pipeline, item.config, str(store.root), terms, progress, lambda name: log(f"{head(i, item)}  {name} ..."))
        return executor.submit(run_pipeline, item.config, str(store.root), terms, progress)

    # Inline, each item runs when its result is asked for, so progress shows as it happens.
    futures = [(item, None if inline else submit(i, item)) for i, item in enumerate(items)]
    return [collect(i, item, (future or submit(i, item)).result) for i, (item, future) in enumerate(futures)]
