"""How a grid's items run: one protocol for this process, local worker processes and cluster jobs.

An executor takes the items' calls of :func:`steps.run_pipeline` and yields, as each can be
collected, its index and a function that returns its result (or raises its error). ``remote``
executors run the items elsewhere, writing spool files that the driver imports after each
item; for them the driver submits only the items that are not finished in the store.

``EXECUTORS`` names each one for ``--executor``; adding one is a class with ``remote``,
``snapshot`` and ``run``, and a line there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Protocol

from ..config import Config, ConfigError
from ..store.db import Store
from .steps import run_pipeline

#: One item's call: (config, store root, term groups or None for the defaults).
Call = tuple[Config, str, Sequence[str] | None]
Result = tuple[str, dict[str, float]]


class Executor(Protocol):
    """Runs the calls of a grid's items (module docstring)."""

    remote: bool  # items run elsewhere and write spool files (cluster jobs)
    snapshot: Path | None  # the copy of the store's database that remote items start from

    def run(self, store: Store, calls: Sequence[Call], progress: bool,
            on_step: Sequence[Callable[[str], None] | None]) -> Iterator[tuple[int, Callable[[], Result]]]: ...


class InlineExecutor:
    """Each item in this process, when its result is asked for (the default): on a 2-core CPU,
    torch already uses both cores for one run, and parallel runs would only fight over them."""

    remote = False
    snapshot = None

    def run(self, store: Store, calls: Sequence[Call], progress: bool,
            on_step: Sequence[Callable[[str], None] | None]) -> Iterator[tuple[int, Callable[[], Result]]]:
        for i, call in enumerate(calls):
            yield i, partial(run_pipeline, *call, progress, on_step[i])


class LocalProcesses:
    """Local worker processes; each run writes to the store from its own process (SQLite's
    locking serialises the writes). Step callbacks do not cross the process boundary."""

    remote = False
    snapshot = None

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, store: Store, calls: Sequence[Call], progress: bool,
            on_step: Sequence[Callable[[str], None] | None]) -> Iterator[tuple[int, Callable[[], Result]]]:
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(run_pipeline, *call, progress) for call in calls]
            for i, future in enumerate(futures):
                yield i, future.result


def _local(folder: Path, name: str, workers: int, dry_run: bool) -> Executor:
    if dry_run:
        raise ConfigError("--dry-run shows the sbatch script that --executor slurm would submit; add --executor slurm")
    return LocalProcesses(workers) if workers > 1 else InlineExecutor()


def _submitit(cluster: str) -> Callable[[Path, str, int, bool], Executor]:
    def make(folder: Path, name: str, workers: int, dry_run: bool) -> Executor:
        from .cluster import SubmititExecutor  # submitit: only for these executors

        if workers > 1:
            raise ConfigError(f"--workers is for --executor local; with --executor {cluster} each run is its own job (slurm.array_parallelism sets how many run at once)")
        return SubmititExecutor(folder, cluster, name=name, dry_run=dry_run)

    return make


#: ``--executor`` name -> factory(jobs folder, grid name, --workers, --dry-run).
EXECUTORS: dict[str, Callable[[Path, str, int, bool], Executor]] = {
    "local": _local,
    "slurm": _submitit("slurm"),
    "submitit-local": _submitit("submitit-local"),
}


def make_executor(kind: str, folder: Path, name: str, workers: int = 1, dry_run: bool = False) -> Executor:
    """The executor ``kind`` of :data:`EXECUTORS` for a grid named ``name``; cluster jobs keep
    their scripts and logs under ``folder``."""
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[kind](folder, name, workers, dry_run)
