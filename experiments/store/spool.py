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

:func:`import_spool` (run by the driver after each job, and by every ``clbounds``
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
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..environment import SNAPSHOT_ENV, SPOOL_ENV, snapshot_path, spool_mode
from .db import Store, default_store_root, flag_or_none, real_or_none
from .files import read_regular_file

__all__ = ["SPOOL_ENV", "SpoolStore", "import_spool", "open_store", "pending_spool_files", "read_spool_file"]

FORMAT = "clbounds-spool-1"
OPERATIONS = ("upsert_run", "set_status", "add_measurements", "delete_measurements", "delete_bound_check", "add_bound_checks")


def open_store(root: str | Path | None = None) -> Store:
    """The shared store, or a :class:`SpoolStore` on it inside a cluster job (``CLBOUNDS_SPOOL=1``)."""
    return SpoolStore(root) if spool_mode() else Store(root)


#: The largest spool file read: a job's biggest record (a measure group) is a few hundred kB.
SPOOL_FILE_MAX_BYTES = 64 * 2**20


def pending_spool_files(root: Path) -> list[Path]:
    """Every complete spool file under ``root``, oldest first (names start with the write time)."""
    return sorted(root.glob("*/spool/*.json"), key=lambda p: p.name)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a spool record may hold")


def read_spool_file(path: Path, text: str | None = None) -> dict[str, Any]:
    """One spool record (from ``text`` when it was read already), checked: a ValueError names what is wrong.

    Only a regular file inside the store, of at most :data:`SPOOL_FILE_MAX_BYTES`, is read, and
    ``NaN`` or ``Infinity`` anywhere makes it invalid (non-finite numbers never enter the store)."""
    try:
        record = json.loads(read_regular_file(path, SPOOL_FILE_MAX_BYTES) if text is None else text, parse_constant=_no_constant)
    except Exception as err:  # noqa: BLE001 - unreadable, not UTF-8, not JSON, nested past the recursion limit
        raise ValueError(f"{path}: not a spool record ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} record")
    if record.get("op") not in OPERATIONS or not isinstance(record.get("args"), dict) or not isinstance(record.get("at"), (int, float)):
        raise ValueError(f"{path}: unknown operation {record.get('op')!r} or malformed arguments")
    if record.get("run") != path.parent.parent.name:
        raise ValueError(f"{path}: names run {record.get('run')!r} but lies in the folder of {path.parent.parent.name!r}")
    return record


def import_spool(store: Store, delete: bool = True, log: Callable[[str], None] | None = None, snapshot: Path | None = None) -> int:
    """Imports into ``store`` the rows that cluster jobs wrote into their run folders (spool files),
    oldest first, in one transaction that records each file; returns how many were new.
    Files already imported are skipped (and deleted with ``delete``); a file that is not a
    valid record is left in place and reported through ``log``. The database is copied to
    ``snapshot`` and to every ``<root>/jobs/*/store.sqlite`` after the commit and before the
    deletes (what cluster jobs start from)."""
    files = pending_spool_files(store.root)
    if not files:
        return 0
    new, seen = _import_files(store, files, {}, log)
    # every snapshot that running jobs may start from (experiments/pipeline/cluster.py keeps them in
    # <root>/jobs/<grid>/), before the files go: a job reads each file or finds it there
    for path in {*store.root.glob("jobs/*/store.sqlite"), *([snapshot] if snapshot is not None else [])} if new else ():
        store.write_snapshot(path)
    if delete:  # after the commit: a crash before this leaves files that the next import skips
        for path in seen:
            path.unlink(missing_ok=True)
    return new


def _import_files(store: Store, files: list[Path], texts: dict[Path, str], log: Callable[[str], None] | None) -> tuple[int, list[Path]]:
    """Applies the spool files not recorded yet, in one transaction; returns (new, recorded or applied)."""

    def apply(db: sqlite3.Connection) -> tuple[int, list[Path], list[str]]:  # one importer at a time: files apply in order
        seen, new, bad = [], 0, []
        done = {r[0] for r in db.execute("SELECT file FROM spool_imported")}
        for path in files:
            key = f"{path.parent.parent.name}/{path.name}"
            if key not in done:
                db.execute("SAVEPOINT spool_file")  # a file applies whole or not at all
                try:
                    record = read_spool_file(path, texts.get(path))
                    db.executemany(*store.statement(record["op"], record["run"], record["args"], float(record["at"])))
                except Exception as err:  # noqa: BLE001 - one bad file must not stop the others, nor any command
                    if isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err)):
                        raise
                    db.execute("ROLLBACK TO spool_file")
                    db.execute("RELEASE spool_file")
                    why = str(err) if str(path) in str(err) else f"{path}: {type(err).__name__}: {err}"
                    bad.append(f"spool file not imported, left in place: {why}")
                    continue
                db.execute("RELEASE spool_file")
                db.execute("INSERT INTO spool_imported VALUES (?, ?)", (key, time.time()))
                new += 1
            seen.append(path)
        return new, seen, bad

    new, seen, bad = store.transaction(apply)
    for line in bad:
        (log or (lambda m: print(m, file=sys.stderr)))(line)
    return new, seen


def _plain_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bound checks as JSON values (numpy scalars and bools become floats and 0/1, as the store keeps them)."""
    return [{"theorem": c["theorem"], "bound": real_or_none(c.get("bound")), "measured": real_or_none(c.get("measured")), "holds": flag_or_none(c.get("holds")),
             "tightness": real_or_none(c.get("tightness")), "assumptions_met": flag_or_none(c.get("assumptions_met")), "vacuous": flag_or_none(c.get("vacuous")),
             "informative": flag_or_none(c.get("informative")), "resolved": flag_or_none(c.get("resolved")), "details": json.loads(json.dumps(c.get("details", {}), default=str))} for c in checks]


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
        snapshot = snapshot or snapshot_path()
        # The pending files are read before the database is copied: the driver copies its
        # database to the snapshot after importing files and before deleting them, so each
        # file is either read here or already in the copy.
        files = pending_spool_files(root)
        texts = {}
        for path in files:
            with contextlib.suppress(OSError, ValueError):  # imported and deleted meanwhile (then in the snapshot), or not a file to read
                texts[path] = read_regular_file(path, SPOOL_FILE_MAX_BYTES)
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
        _import_files(self, [p for p in files if p in texts], texts, log=lambda m: None)

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
