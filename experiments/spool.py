"""A store that is safe on a cluster: jobs write files into their run folder, one process imports them.

SQLite's locking is unreliable over a network filesystem, so a job on another node must not
write the shared ``clbounds.sqlite``. A job opens a :class:`SpoolStore` instead (what
:func:`open_store` returns when ``CLBOUNDS_SPOOL=1``, which the SLURM executor sets):

- **Writes** go to a private SQLite copy on the node's local disk, so the job reads its own
  writes, and, as one JSON file per write, to ``<root>/<run id>/spool/``. Each file is
  written under a temporary name, flushed to disk and renamed, so it appears complete or
  not at all.
- **Reads** come from the private copy: the shared database as it was when the job started
  (read through a read-only connection), plus every spool file not imported yet, so a
  requeued job sees what its earlier attempt wrote.

:meth:`Store.import_spool` (run by the driver after each job, and by every ``clbounds``
command on start) replays the files in the order they were written, in one transaction
that also records each file's name in ``spool_imported``; the files are deleted after the
commit. Importing twice adds nothing: a file already recorded is skipped (and deleted),
and replaying a file is idempotent anyway (every operation is an upsert, a status or a
delete). A temporary file (``.*.tmp``) is never read, and a file that does not parse, or
names another run, or an unknown operation, is left in place and reported, not imported.

Local runs keep writing the database directly.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from .store import Store, _flag, _real, default_store_root

__all__ = ["SPOOL_ENV", "SpoolStore", "open_store", "pending_spool_files", "read_spool_file"]

SPOOL_ENV = "CLBOUNDS_SPOOL"  # "1" in a job's environment: write files, not the shared database
FORMAT = "clbounds-spool-1"
OPERATIONS = ("upsert_run", "set_status", "add_measurements", "delete_measurements", "add_bound_checks")


def open_store(root: str | Path | None = None) -> Store:
    """The shared store, or a :class:`SpoolStore` on it inside a cluster job (``CLBOUNDS_SPOOL=1``)."""
    return SpoolStore(root) if os.environ.get(SPOOL_ENV) == "1" else Store(root)


def pending_spool_files(root: Path) -> list[Path]:
    """Every complete spool file under ``root``, oldest first (names start with the write time)."""
    return sorted(root.glob("*/spool/*.json"), key=lambda p: p.name)


def read_spool_file(path: Path) -> dict[str, Any]:
    """One spool record, checked: a ValueError names what is wrong."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a spool record ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} record")
    if record.get("op") not in OPERATIONS or not isinstance(record.get("args"), dict) or not isinstance(record.get("at"), (int, float)):
        raise ValueError(f"{path}: unknown operation {record.get('op')!r} or malformed arguments")
    if record.get("run") != path.parent.parent.name:
        raise ValueError(f"{path}: names run {record.get('run')!r} but lies in the folder of {path.parent.parent.name!r}")
    return record


def _plain_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bound checks as JSON values (numpy scalars and bools become floats and 0/1, as the store keeps them)."""
    return [{"theorem": c["theorem"], "bound": _real(c.get("bound")), "measured": _real(c.get("measured")), "holds": _flag(c.get("holds")),
             "tightness": _real(c.get("tightness")), "assumptions_met": _flag(c.get("assumptions_met")), "vacuous": _flag(c.get("vacuous")),
             "informative": _flag(c.get("informative")), "details": json.loads(json.dumps(c.get("details", {}), default=str))} for c in checks]


class SpoolStore(Store):
    """The store of a job on another node (module docstring). ``root`` is the shared store;
    ``local_dir`` holds the private copy (a new temporary folder by default)."""

    def __init__(self, root: str | Path | None = None, local_dir: str | Path | None = None) -> None:
        root = Path(root) if root is not None else default_store_root()
        root.mkdir(parents=True, exist_ok=True)
        local = Path(local_dir) if local_dir is not None else Path(tempfile.mkdtemp(prefix="clbounds-spool-"))
        local.mkdir(parents=True, exist_ok=True)
        copy = local / "clbounds.sqlite"
        for stale in (copy, copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
            stale.unlink(missing_ok=True)
        shared = root / "clbounds.sqlite"
        if shared.is_file():  # read-only: this process never takes the shared database's write lock
            source = sqlite3.connect(f"file:{shared}?mode=ro", uri=True, timeout=60.0)
            try:
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        self._seq = 0
        super().__init__(root, db_path=copy)
        self.import_spool(delete=False)  # into the copy: the writes of an earlier attempt, not imported yet

    def _apply(self, op: str, run_id: str, args: dict[str, Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        if op == "add_bound_checks":
            args = {"checks": _plain_checks(args["checks"])}
        super()._apply(op, run_id, args, now)  # the private copy: this job reads its own writes
        self._spool(op, run_id, args, now)

    def _spool(self, op: str, run_id: str, args: dict[str, Any], now: float) -> None:
        folder = self.run_dir(run_id) / "spool"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{self._seq:06d}.json"
        record = {"format": FORMAT, "run": run_id, "op": op, "args": args, "at": now}
        tmp = folder / f".{name}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
