"""The run store as pandas tables. Figures read these; they never recompute a term."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clbounds.experiments.store.db import CHECK_COLUMNS, MEASUREMENT_COLUMNS, connect_read_only
from clbounds.experiments.store.terms import pick


def _only(df: pd.DataFrame, runs: Sequence[str] | None) -> pd.DataFrame:
    return df if runs is None else df[df["run"].isin(list(runs))]


def measurements(store_root: str | Path, runs: Sequence[str] | None = None, controls: bool = False) -> pd.DataFrame:
    """Long table: run, name, value, protocol, created (unix time of the write).

    The rows measured on a control (``<control>/<term>``, experiments/measurement/measure.py) are left out
    unless ``controls``: figures and correlations are about the trained encoders.
    """
    with connect_read_only(store_root) as db:
        df = pd.read_sql_query(f"SELECT {', '.join(MEASUREMENT_COLUMNS)} FROM measurements", db)
    if not controls:
        df = df[~df["name"].str.contains("/", regex=False)]
    return _only(df, runs).reset_index(drop=True)


def bound_checks(store_root: str | Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table: run, theorem, bound, measured, holds, tightness, assumptions_met, vacuous,
    informative, details (dict)."""
    with connect_read_only(store_root) as db:
        have = {r[1] for r in db.execute("PRAGMA table_info(bound_checks)")}
        columns = [c if c in have else f"NULL AS {c}" for c in CHECK_COLUMNS]  # a store from before the vacuous/informative flags
        df = pd.read_sql_query(f"SELECT {', '.join(columns)} FROM bound_checks", db)
    df["details"] = df["details"].map(json.loads)
    for col in ("holds", "assumptions_met", "vacuous", "informative", "resolved"):
        df[col] = df[col].map(lambda v: None if pd.isna(v) else bool(v))
    return _only(df, runs).reset_index(drop=True)


def runs_table(store_root: str | Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run: id, name, method, dataset, encoder, status, and the config flattened
    into dotted columns (``optim.lr``, ``encoder.width``, …)."""
    with connect_read_only(store_root) as db:
        df = pd.read_sql_query("SELECT id AS run, name, method, dataset, encoder, status, config FROM runs", db)
    flat = pd.json_normalize([json.loads(c) for c in df.pop("config")], sep=".")
    flat.columns = [f"config.{c}" for c in flat.columns]
    return _only(pd.concat([df, flat], axis=1), runs).reset_index(drop=True)


def wide(store_root: str | Path, runs: Sequence[str] | None = None, protocols: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run, one column per measurement name, joined with the run table.

    A name measured under several protocols (e.g. ``knn_accuracy`` at ``final-epoch`` and
    ``random-init``) takes the row that the bound checks would read, by the one rule of
    ``experiments/store/terms.py``, with ``protocols[name]`` as the protocol asked for.
    """
    m = measurements(store_root, runs)
    if m.empty:
        return runs_table(store_root, runs)
    picked = _picked(m, protocols or {})
    values = picked.pivot(index="run", columns="name", values="value").reset_index()
    return runs_table(store_root, runs).merge(values, on="run", how="left")


def protocol_of(store_root: str | Path, name: str, runs: Sequence[str] | None = None, want: str | None = None) -> str:
    """The protocol(s) of the values :func:`wide` picks for ``name`` (asked for ``want``, as
    ``wide``'s ``protocols[name]``), for captions ("; "-joined if several)."""
    m = measurements(store_root, runs)
    m = m[m["name"] == name]
    return "; ".join(sorted(_picked(m, {name: want} if want else {})["protocol"].unique())) if len(m) else ""


def _picked(m: pd.DataFrame, protocols: dict[str, str]) -> pd.DataFrame:
    """One row per (run, name): value and protocol of the row the one rule reads."""
    rows = []
    for (run, name), group in m.groupby(["run", "name"]):
        best = pick(group.to_dict("records"), protocols.get(name))
        rows.append({"run": run, "name": name, "value": best["value"], "protocol": best["protocol"]})
    return pd.DataFrame(rows, columns=["run", "name", "value", "protocol"])


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell neutralised for spreadsheets (``experiments.names.csv_cell``):
    a run label starting with ``=`` is written as text, not run as a formula."""
    from clbounds.experiments.names import csv_cell

    return df.apply(lambda col: col.map(csv_cell) if col.dtype == object or pd.api.types.is_string_dtype(col) else col)
