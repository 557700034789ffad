"""The run store as pandas tables. Figures read these; they never recompute a term."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def _connect(store_root: str | Path) -> sqlite3.Connection:
    path = Path(store_root) / "clbounds.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"no run store at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _only(df: pd.DataFrame, runs: Sequence[str] | None) -> pd.DataFrame:
    return df if runs is None else df[df["run"].isin(list(runs))]


def measurements(store_root: str | Path, runs: Sequence[str] | None = None, controls: bool = False) -> pd.DataFrame:
    """Long table: run, name, value, protocol, created (unix time of the write).

    The rows measured on a control (``<control>/<term>``, experiments/measurement/measure.py) are left out
    unless ``controls``: figures and correlations are about the trained encoders.
    """
    with _connect(store_root) as db:
        df = pd.read_sql_query("SELECT run, name, value, protocol, created FROM measurements", db)
    if not controls:
        df = df[~df["name"].str.contains("/", regex=False)]
    return _only(df, runs).reset_index(drop=True)


def bound_checks(store_root: str | Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table: run, theorem, bound, measured, holds, tightness, assumptions_met, vacuous,
    informative, details (dict)."""
    with _connect(store_root) as db:
        have = {r[1] for r in db.execute("PRAGMA table_info(bound_checks)")}
        flags = ", vacuous, informative" if {"vacuous", "informative"} <= have else ", NULL AS vacuous, NULL AS informative"  # a store from before the flags
        df = pd.read_sql_query(f"SELECT run, theorem, bound, measured, holds, tightness, assumptions_met{flags}, details FROM bound_checks", db)
    df["details"] = df["details"].map(json.loads)
    for col in ("holds", "assumptions_met", "vacuous", "informative"):
        df[col] = df[col].map(lambda v: None if pd.isna(v) else bool(v))
    return _only(df, runs).reset_index(drop=True)


def runs_table(store_root: str | Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run: id, name, method, dataset, encoder, status, and the config flattened
    into dotted columns (``optim.lr``, ``encoder.width``, …)."""
    with _connect(store_root) as db:
        df = pd.read_sql_query("SELECT id AS run, name, method, dataset, encoder, status, config FROM runs", db)
    flat = pd.json_normalize([json.loads(c) for c in df.pop("config")], sep=".")
    flat.columns = [f"config.{c}" for c in flat.columns]
    return _only(pd.concat([df, flat], axis=1), runs).reset_index(drop=True)


def wide(store_root: str | Path, runs: Sequence[str] | None = None, protocols: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run, one column per measurement name, joined with the run table.

    A name measured under several protocols (e.g. ``knn_accuracy`` at ``final-epoch`` and
    ``random-init``) takes the protocol that contains ``protocols[name]`` when given, else
    one that does not say ``random-init``; among those, the latest written, as the bound
    checks do (``experiments.bounds_step.run_terms``).
    """
    m = measurements(store_root, runs)
    protocols = protocols or {}

    def pick(group: pd.DataFrame) -> pd.Series:
        want = protocols.get(group.name[1])
        mask = group["protocol"].str.contains(want, regex=False) if want else ~group["protocol"].str.contains("random-init", regex=False)
        chosen = group[mask] if mask.any() else group
        return chosen.loc[chosen["created"].idxmax(), ["value", "protocol"]]

    if m.empty:
        return runs_table(store_root, runs)
    picked = m.groupby(["run", "name"]).apply(pick, include_groups=False).reset_index()
    values = picked.pivot(index="run", columns="name", values="value").reset_index()
    return runs_table(store_root, runs).merge(values, on="run", how="left")


def protocol_of(store_root: str | Path, name: str, runs: Sequence[str] | None = None) -> str:
    """The protocol(s) of the values :func:`wide` picks for ``name``, for captions ("; "-joined if several)."""
    m = measurements(store_root, runs)
    m = m[(m["name"] == name) & ~m["protocol"].str.contains("random-init", regex=False)]
    latest = m.loc[m.groupby("run")["created"].idxmax()] if len(m) else m
    return "; ".join(sorted(latest["protocol"].unique()))
