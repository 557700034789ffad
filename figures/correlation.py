"""Rank correlation of a term with an error, plain and granulated (Jiang et al. 2020, §4)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two series (NaN pairs dropped); NaN when fewer than 2 pairs or a constant series.

    Example:
        >>> kendall_tau([1, 2, 3], [2, 4, 8])
        1.0
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(kendalltau(x[keep], y[keep]).statistic)


def granulated_kendall(df: pd.DataFrame, term: str, target: str, axes: Sequence[str]) -> dict[str, float]:
    """Granulated Kendall τ of Jiang et al. (2020, eq. 4-5).

    For each hyperparameter axis i, the runs are grouped by the values of all *other* axes;
    within each group only axis i varies, and τ(term, target) is computed there. ψ_i is the
    mean of these within-group τ over the groups with at least two runs and a defined τ, and
    Ψ = mean_i ψ_i over the axes where ψ_i is defined. An axis no group varies gets NaN.

    Returns:
        {"psi[<axis>]": ψ_i for each axis, "Psi": Ψ}.

    Example:
        >>> df = pd.DataFrame({"a": [0, 0, 1, 1], "b": [0, 1, 0, 1], "t": [1, 2, 3, 4], "e": [1, 2, 3, 4]})
        >>> granulated_kendall(df, "t", "e", ["a", "b"])["Psi"]
        1.0
    """
    out: dict[str, float] = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        groups = df.groupby(others, dropna=False) if others else [(None, df)]
        taus = [kendall_tau(g[term], g[target]) for _, g in groups if g[axis].nunique() >= 2]
        taus = [t for t in taus if np.isfinite(t)]
        out[f"psi[{axis}]"] = float(np.mean(taus)) if taus else float("nan")
    defined = [v for v in out.values() if np.isfinite(v)]
    out["Psi"] = float(np.mean(defined)) if defined else float("nan")
    return out


def correlation_table(df: pd.DataFrame, terms: Sequence[str], targets: Sequence[str], axes: Sequence[str]) -> pd.DataFrame:
    """One row per (term, target): n runs, Kendall τ over all runs, ψ per axis and Ψ."""
    rows = []
    for target in targets:
        for term in terms:
            if term not in df or target not in df:
                continue
            sub = df[[term, target, *axes]].dropna(subset=[term, target])
            rows.append({"term": term, "target": target, "n": len(sub), "kendall_tau": kendall_tau(sub[term], sub[target]), **granulated_kendall(sub, term, target, axes)})
    return pd.DataFrame(rows)
