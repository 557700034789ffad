"""A store that is safe on a cluster: jobs write files into their run folder, one process imports them.

SQLite's locking is unreliable over a network filesystem, so a job on another node must not
write the shared ``clbounds.sqlite``. A job opens a :class:`SpoolStore` instead (what
:func:`open_store` returns when ``CLBOUNDS_SPOOL=1``, which the SLURM executor sets):

- **Writes** go to a private SQLite copy on the node's local disk, so the job reads its own
  writes, and, as one JSON file per write, to ``<root>/<run id>/spool/``. Each file is
  written under a temporary name, flushed to disk and renamed, so it appears complete or
  not at all.
- **Reads** come from the private copy: the driver's snapshot of the shared database (a
  plain file it rewrites after every import, copied without any SQLite lock), plus every
  spool file not imported yet, so a requeued job sees what its earlier attempt wrote.

:meth:`Store.import_spool` (run by the driver after each job, and by every ``clbounds``
command on start) replays the files in the order they were written, in one transaction
that also records each file's name in ``spool_imported``; the driver then rewrites the
snapshot, and deletes the files. Importing twice adds nothing: a file already recorded is skipped (and deleted),
and replaying a file is idempotent anyway (every operation is an upsert, a status or a
delete). A temporary file (``.*.tmp``) is never read, and a file that does not parse, or
names another run, or an unknown operation, is left in place and reported, not imported.

Local runs keep writing the database directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from .store import Store, _flag, _real, default_store_root

__all__ = ["SPOOL_ENV", "SpoolStore", "open_store", "pending_spool_files", "read_spool_file"]

SPOOL_ENV = "CLBOUNDS_SPOOL"  # "1" in a job's environment: write files, not the shared database
SNAPSHOT_ENV = "CLBOUNDS_SPOOL_SNAPSHOT"  # the driver's copy of the database that a job starts from
FORMAT = "clbounds-spool-1"
OPERATIONS = ("upsert_run", "set_status", "add_measurements", "delete_measurements", "add_bound_checks")


def open_store(root: str | Path | None = None) -> Store:
    """The shared store, or a :class:`SpoolStore` on it inside a cluster job (``CLBOUNDS_SPOOL=1``)."""
    return SpoolStore(root) if os.environ.get(SPOOL_ENV) == "1" else Store(root)


def pending_spool_files(root: Path) -> list[Path]:
    """Every complete spool file under ``root``, oldest first (names start with the write time)."""
    return sorted(root.glob("*/spool/*.json"), key=lambda p: p.name)


def read_spool_file(path: Path, text: str | None = None) -> dict[str, Any]:
    """One spool record (from ``text`` when it was read already), checked: a ValueError names what is wrong."""
    try:
        record = json.loads(path.read_text() if text is None else text)
    except Exception as err:  # noqa: BLE001 - unreadable, not UTF-8, not JSON, nested past the recursion limit
        raise ValueError(f"{path}: not a spool record ({type(err).__name__}: {err})") from None
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
    ``snapshot`` a copy of its database that the driver keeps current (``CLBOUNDS_SPOOL_SNAPSHOT``;
    without one, the shared database is read through a read-only connection, which is not safe
    on every network filesystem); ``local_dir`` holds the private copy (a temporary folder,
    removed with the store, by default)."""

    def __init__(self, root: str | Path | None = None, local_dir: str | Path | None = None, snapshot: str | Path | None = None) -> None:
        root = Path(root) if root is not None else default_store_root()
        root.mkdir(parents=True, exist_ok=True)
        if local_dir is None:
            local = Path(tempfile.mkdtemp(prefix="clbounds-spool-"))
            weakref.finalize(self, shutil.rmtree, local, True)
        else:
            local = Path(local_dir)
            local.mkdir(parents=True, exist_ok=True)
        snapshot = snapshot or os.environ.get(SNAPSHOT_ENV) or None
        # The pending files are read before the database is copied: the driver copies its
        # database to the snapshot after importing files and before deleting them, so each
        # file is either read here or already in the copy.
        files = pending_spool_files(root)
        texts = {}
        for path in files:
            with contextlib.suppress(OSError):  # imported and deleted meanwhile: then in the snapshot
                texts[path] = path.read_text()
        copy = local / "clbounds.sqlite"
        for stale in (copy, copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
            stale.unlink(missing_ok=True)
        shared = root / "clbounds.sqlite"
        if snapshot is not None and Path(snapshot).is_file():
            shutil.copyfile(snapshot, copy)  # a plain file copy: no SQLite lock on the network filesystem
        elif shared.is_file():
            source = sqlite3.connect(f"file:{shared}?mode=ro", uri=True, timeout=60.0)
            try:
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        self._start = time.time_ns()
        self._seq = 0
        super().__init__(root, db_path=copy)
        # into the copy, not spooled again: the writes of an earlier attempt not imported yet
        self._import_files([p for p in files if p in texts], texts, log=lambda m: None)

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
        # this store's start, then its write count: the order of one job's writes does not depend on its clock
        name = f"{self._start:020d}-{self._seq:08d}-{socket.gethostname()}-{os.getpid()}.json"
        record = {"format": FORMAT, "run": run_id, "op": op, "args": args, "at": now}
        tmp = folder / f".{name}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
