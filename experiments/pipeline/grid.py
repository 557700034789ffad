"""Running a grid of runs: each item trained, evaluated and measured (``steps.run_pipeline``,
every step skipped when stored), through an executor (``executors.py``: this process, local
processes, or SLURM jobs through submitit); a run that fails is reported and the grid goes on.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import Config
from ..store.db import Store
from ..store.spool import import_spool
from .executors import Executor, InlineExecutor
from .steps import pipeline_complete


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


def run_grid(items: Sequence[GridItem], store: Store, executor: Executor | None = None, terms: Sequence[str] | None = None, progress: bool = False, log: Callable[[str], None] = print) -> list[GridResult]:
    """Runs every grid item; a run that fails (e.g. diverges) is reported and the sweep goes on.

    Each item is logged as it finishes, with the seconds of the steps it ran (train, eval,
    measure; a stored step is skipped and not listed). Inline, each step is also logged as it
    starts, so a long grid is never silent. A remote executor (cluster jobs) gets only the
    unfinished items, and they are logged as they end."""
    executor = executor or InlineExecutor()

    def head(i: int, item: GridItem) -> str:
        return f"  [{i + 1}/{len(items)}] {item.label:<28} {item.config.run_id()}"

    def collect(i: int, item: GridItem, result: Callable[[], tuple[str, dict[str, float]]]) -> GridResult:
        run_id = item.config.run_id()
        try:
            try:
                _, seconds = result()
            finally:  # what a job on another node wrote into its run folder; the jobs' snapshot follows
                import_spool(store, snapshot=executor.snapshot)
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

    results: list[GridResult | None] = [None] * len(items)
    todo = list(range(len(items)))
    if executor.remote:  # jobs elsewhere: import what an earlier driver's jobs wrote, submit only what is unfinished
        import_spool(store)
        todo = []
        for i, item in enumerate(items):
            if pipeline_complete(store, item.config, terms):
                results[i] = collect(i, item, lambda: ("", {}))
            else:
                todo.append(i)
    calls = [(items[i].config, str(store.root), terms) for i in todo]
    on_step = [lambda name, i=i: log(f"{head(i, items[i])}  {name} ...") for i in todo]
    # Inline, each item runs when its result is asked for, so progress shows as it happens.
    for k, result in executor.run(store, calls, progress, on_step):
        results[todo[k]] = collect(todo[k], items[todo[k]], result)
    return [r for r in results if r is not None]
