"""The run folder's lock: one trainer per run, and runs whose trainer is gone.

No torch here: ``clbounds runs`` marks orphaned runs without importing the training stack.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from .db import Store

__all__ = ["mark_orphaned_runs", "run_lock"]


@contextlib.contextmanager
def run_lock(run_dir: Path, run_id: str) -> Any:
    """An exclusive lock on the run's folder for as long as it trains (flock: released by the
    OS when the process dies, so a killed trainer never blocks the resume)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    with open(run_dir / ".train.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"run {run_id} is being trained by another process; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_orphaned_runs(store: Store) -> list[str]:
    """Marks ``failed`` every run left ``running`` by a trainer that is gone (SIGKILL, power
    loss: nothing could record it), and returns their ids.

    A live trainer holds its run's lock, so a ``running`` run whose lock can be taken has no
    trainer; the status is read again under the lock, so a run that a trainer finished
    meanwhile is left alone.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locks to tell a live trainer from a dead one
        return []
    orphaned = []
    for record in store.runs():
        if record.status != "running" or not record.path.is_dir():
            continue
        try:
            f = open(record.path / ".train.lock", "a")
        except OSError:  # a read-only store: nothing can be marked, and nothing is lost by not marking it
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being trained right now
            try:
                current = store.get_run(record.id)
                if current is not None and current.status == "running":
                    kept = "the last completed epoch's checkpoint is kept" if (record.path / "state.safetensors").is_file() else "no checkpoint had been written"
                    store.set_status(record.id, "failed", f"its trainer is gone (killed, or the machine stopped); {kept}; rerun to resume")
                    orphaned.append(record.id)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return orphaned
