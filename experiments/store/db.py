"""The run store: one SQLite database of runs and of every number measured on them.

Layout under the store root (``./runs`` by default, or ``--store`` / ``CLBOUNDS_HOME``)::

    clbounds.sqlite           runs, measurements
    <run id>/config.yaml      the resolved config
    <run id>/encoder.safetensors, <run id>/state.safetensors

Each measurement row carries its protocol, e.g. ``knn k=200 t=0.1 offline final-epoch``,
so no number is ever stored without saying how it was obtained. The database runs in WAL
mode with a busy timeout, so several worker processes can write at once.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..environment import store_home

RUN_STATUSES = ("running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    encoder TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    run TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    protocol TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run, name, protocol)
);
CREATE TABLE IF NOT EXISTS bound_checks (
    run TEXT NOT NULL,
    theorem TEXT NOT NULL,
    bound REAL,
    measured REAL,
    holds INTEGER,
    tightness REAL,
    assumptions_met INTEGER,
    details TEXT NOT NULL,
    created REAL NOT NULL,
    vacuous INTEGER,
    informative INTEGER,
    resolved INTEGER,
    PRIMARY KEY (run, theorem)
);
CREATE TABLE IF NOT EXISTS spool_imported (
    file TEXT PRIMARY KEY,
    imported REAL NOT NULL
);
"""
#: A measurement as every step writes it: (name, value, protocol).
Row = tuple[str, float, str]

#: The columns that readers select (the store's own reads, the figures' tables, `clbounds export`).
MEASUREMENT_COLUMNS = ("run", "name", "value", "protocol", "created")
CHECK_COLUMNS = ("run", "theorem", "bound", "measured", "holds", "tightness", "assumptions_met", "vacuous", "informative", "resolved", "details")

# Columns added after the first release: a store written before them gains them on open.
_ADDED_COLUMNS = {"bound_checks": {"vacuous": "INTEGER", "informative": "INTEGER", "resolved": "INTEGER"}}


def real_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def flag_or_none(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def connect_read_only(root: str | Path) -> sqlite3.Connection:
    """A read-only connection to the store under ``root`` (for readers that must not create or
    migrate it: the figures); FileNotFoundError when there is none."""
    path = Path(root) / "clbounds.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"no run store at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def default_store_root() -> Path:
    """The store used when ``--store`` is not given: ``$CLBOUNDS_HOME``, else ``./runs``."""
    return store_home()


class UnknownRunError(ConfigError, KeyError):
    """A run id (or prefix) that names no run, or more than one: a usage error (exit 2)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    method: str
    dataset: str
    encoder: str
    status: str
    message: str
    config: dict[str, Any]
    path: Path


class Store:
    """Runs and measurements in ``root/clbounds.sqlite``.

    Example:
        >>> import tempfile
        >>> s = Store(tempfile.mkdtemp())
        >>> s.upsert_run("abc", {"name": "x", "method": {"name": "simclr"}, "data": {"name": "synthetic"}, "encoder": {"arch": "mlp"}})
        >>> s.add_measurement("abc", "knn_accuracy", 0.9, "knn k=200 t=0.1 offline final-epoch")
        >>> s.measurements("abc")[0]["value"]
        0.9
    """

    def __init__(self, root: str | Path | None = None, db_path: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = Path(db_path) if db_path is not None else self.root / "clbounds.sqlite"
        for attempt in range(50):
            try:
                self._create()
                return
            except sqlite3.OperationalError as err:
                # Processes that open a new store at once (the ranks of a torchrun training) race
                # for the switch to WAL, which SQLite answers "locked" without waiting.
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise sqlite3.OperationalError(f"run store {self.db_path} stayed locked while it was being created")

    def _create(self) -> None:
        """The tables, and the columns added since the first release (idempotent)."""
        with self._connect() as db:
            db.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """``body(db)`` in one atomic write transaction, retried (from the start) while another
        process holds the write lock; returns what ``body`` returns."""
        for attempt in range(50):
            try:
                with self._connect() as db:
                    db.execute("BEGIN IMMEDIATE")
                    result = body(db)
                    db.execute("COMMIT")
                return result
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise sqlite3.OperationalError(f"run store {self.db_path} stayed locked; nothing was written")

    def _write(self, sql: str, rows: list[tuple]) -> None:
        """One atomic transaction, retried while another process holds the write lock."""
        self.transaction(lambda db: db.executemany(sql, rows))

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def write_snapshot(self, path: Path) -> None:
        """A consistent copy of the database at ``path``, in rollback-journal mode (no WAL files
        beside it), written under a temporary name and renamed: what cluster jobs read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        with self._connect() as db:
            db.execute("VACUUM INTO ?", (str(tmp),))
        os.replace(tmp, path)

    # --- writes: every one is an operation (name, run, arguments), built into SQL here --
    # A SpoolStore (experiments/store/spool.py) records the same operations as files, and
    # spool.import_spool replays them through the same builder, :meth:`statement`.
    def _apply(self, op: str, run_id: str, args: dict[str, Any], now: float | None = None) -> None:
        self._write(*self.statement(op, run_id, args, time.time() if now is None else now))

    @staticmethod
    def statement(op: str, run_id: str, args: dict[str, Any], now: float) -> tuple[str, list[tuple]]:
        if op == "upsert_run":
            config, status = args["config"], args["status"]
            if status not in RUN_STATUSES:
                raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
            row = (run_id, config.get("name", ""), config["method"]["name"], config["data"]["name"], config["encoder"]["arch"], status, args["message"], json.dumps(config), now, now)
            return ("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "name=excluded.name, status=excluded.status, message=excluded.message, config=excluded.config, updated=excluded.updated", [row])
        if op == "set_status":
            if args["status"] not in RUN_STATUSES:
                raise ValueError(f"status must be one of {RUN_STATUSES}, got {args['status']!r}")
            return "UPDATE runs SET status=?, message=?, updated=? WHERE id=?", [(args["status"], args["message"], now, run_id)]
        if op == "add_measurements":
            rows = [(run_id, str(n), float(v), str(p), now) for n, v, p in args["rows"]]
            bad = [r[1] for r in rows if not math.isfinite(r[2])]
            if bad:  # from any path (training, a spool file, the API): never stored
                raise ValueError(f"non-finite value(s) for {', '.join(bad[:5])}: a measurement must be a finite number")
            return "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?)", rows
        if op == "delete_measurements":
            return "DELETE FROM measurements WHERE run=? AND name LIKE ?", [(run_id, args["name_like"])]
        if op == "delete_bound_check":
            return "DELETE FROM bound_checks WHERE run=? AND theorem=?", [(run_id, str(args["theorem"]))]
        if op == "add_bound_checks":
            rows = [
                (run_id, c["theorem"], real_or_none(c.get("bound")), real_or_none(c.get("measured")), flag_or_none(c.get("holds")), real_or_none(c.get("tightness")), flag_or_none(c.get("assumptions_met")),
                 json.dumps(c.get("details", {}), default=str), now, flag_or_none(c.get("vacuous")), flag_or_none(c.get("informative")),
                 flag_or_none(c.get("resolved")))
                for c in args["checks"]
            ]
            return ("INSERT OR REPLACE INTO bound_checks (run, theorem, bound, measured, holds, tightness, assumptions_met, details, created, vacuous, informative, resolved) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        raise ValueError(f"unknown store operation {op!r}")

    # --- runs -------------------------------------------------------------------------
    def upsert_run(self, run_id: str, config: dict[str, Any], status: str = "running", message: str = "") -> None:
        self._apply("upsert_run", run_id, {"config": config, "status": status, "message": message})

    def set_status(self, run_id: str, status: str, message: str = "") -> None:
        self._apply("set_status", run_id, {"status": status, "message": message})

    def _record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(row["id"], row["name"], row["method"], row["dataset"], row["encoder"], row["status"], row["message"], json.loads(row["config"]), self.run_dir(row["id"]))

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._record(row) if row else None

    def find_run(self, reference: str) -> RunRecord:
        """The run that ``reference`` names, matched literally (no wildcard: ``%`` and ``_`` are
        characters): its exact id, else the one id that starts with it (ids are hashes, so a
        few characters do), else the one run whose name is it."""
        if not isinstance(reference, str) or not reference or len(reference) > 200:
            raise UnknownRunError(f"a run reference is a non-empty id, id prefix or run name of at most 200 characters, got {str(reference)[:40]!r}")
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs WHERE id = ?", (reference,)).fetchall()
            if not rows:
                rows = db.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY created", (len(reference), reference)).fetchall()
            if not rows:
                rows = db.execute("SELECT * FROM runs WHERE name = ? ORDER BY created", (reference,)).fetchall()
        if not rows:
            raise UnknownRunError(f"no run with id {reference!r} (nor a run with that id prefix or name) in {self.db_path}; `clbounds runs` lists them")
        if len(rows) > 1:
            raise UnknownRunError(f"run reference {reference!r} is ambiguous: {', '.join(r['id'] for r in rows)}")
        return self._record(rows[0])

    def runs(self) -> list[RunRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created").fetchall()
        return [self._record(r) for r in rows]

    # --- measurements -------------------------------------------------------------------
    def add_measurements(self, run_id: str, rows: list[Row]) -> None:
        """Stores (name, value, protocol) rows; a row with the same name and protocol is replaced."""
        self._apply("add_measurements", run_id, {"rows": [(n, float(v), p) for n, v, p in rows]})

    def delete_measurements(self, run_id: str, name_like: str) -> None:
        """Deletes the run's measurements whose name matches the SQL LIKE pattern ``name_like``."""
        self._apply("delete_measurements", run_id, {"name_like": name_like})

    def add_measurement(self, run_id: str, name: str, value: float, protocol: str) -> None:
        self.add_measurements(run_id, [(name, value, protocol)])

    def add_bound_checks(self, run_id: str, checks: list[dict[str, Any]]) -> None:
        """Stores bound checks: dicts with theorem, bound, measured, holds, tightness,
        assumptions_met, vacuous, informative, resolved and optionally details (any JSON-able mapping,
        e.g. which assumption failed and by how much). A check of the same theorem is replaced."""
        self._apply("add_bound_checks", run_id, {"checks": [dict(c) for c in checks]})

    def delete_bound_check(self, run_id: str, theorem: str) -> None:
        """Deletes the run's stored check of ``theorem`` (a multi-run check whose runs no longer pair)."""
        self._apply("delete_bound_check", run_id, {"theorem": theorem})

    def bound_checks(self, run_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = f"SELECT {', '.join(CHECK_COLUMNS)} FROM bound_checks", ()
        if run_id is not None:
            sql, args = sql + " WHERE run=?", (run_id,)
        with self._connect() as db:
            rows = [dict(r) for r in db.execute(sql + " ORDER BY run, theorem", args).fetchall()]
        for r in rows:
            r["holds"] = None if r["holds"] is None else bool(r["holds"])
            for flag in ("assumptions_met", "vacuous", "informative", "resolved"):
                r[flag] = None if r[flag] is None else bool(r[flag])
            r["details"] = json.loads(r["details"])
        return rows

    def measurements(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Measurement rows {run, name, value, protocol, created (unix time of the write)}."""
        sql, args = f"SELECT {', '.join(MEASUREMENT_COLUMNS)} FROM measurements", ()
        if run_id is not None:
            sql, args = sql + " WHERE run=?", (run_id,)
        with self._connect() as db:
            return [dict(r) for r in db.execute(sql + " ORDER BY run, name, protocol", args).fetchall()]
