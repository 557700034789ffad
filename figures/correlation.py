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


LOSS = "info_nce"  # the loss a term must add to: NT-Xent on the test pairs, one formula for every run


def correlation_table(df: pd.DataFrame, terms: Sequence[str], targets: Sequence[str], axes: Sequence[str], loss: str = LOSS, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (term, target) over the runs:

    - n runs, Kendall τ-b with its bootstrap 95% interval and its p-value (exact without
      ties), and ψ per axis and Ψ (granulated τ, Jiang et al. 2020). Intervals resample grid
      points (every setting but the seed), each with all its seeds: a cluster bootstrap, since
      the seeds of one setting are not independent runs;
    - τ given the loss: Kendall's partial τ of the term and the error given ``loss`` (NT-Xent)
      on the n (given loss) runs where all three are measured, and the p-value of
      :func:`statistics.beyond_loss_test` over the settings' means (the "settings (test)"
      units; seeds of one setting are not exchangeable): the generalised covariance measure
      of the term's and the error's residuals on the loss, on values and on ranks; "beyond
      loss" is yes when that p-value passes Holm's correction over every term of the same
      target at 0.05 (Jiang et al.'s question of a measure's value given others). No interval
      is shown for the partial τ: its bootstrap interval is too narrow at these sizes;
    - worst sign agreement: over the axes, the smallest fraction of pairs of runs differing in
      that axis where the term and the error move together (Dziugaite et al. 2020's robust
      view), with that axis and its number of pairs (an axis with few pairs is a noisy minimum).
    """
    from . import statistics as st

    rows = []
    for target in targets:
        block = []
        for term in terms:
            if term not in df or target not in df:
                continue
            keep = [term, target, *axes, *(["config.seed"] if "config.seed" in df else []), *([loss] if loss in df and loss != term else [])]
            sub = df[list(dict.fromkeys(keep))].dropna(subset=[term, target])
            groups = sub[list(axes)].astype(str).agg("|".join, axis=1).tolist() if axes and "config.seed" in sub else None
            k = st.kendall(sub[term], sub[target], n_boot=n_boot, groups=groups)
            row = {"term": term, "target": target, "n": len(sub), "kendall_tau": kendall_tau(sub[term], sub[target]), "tau 95% CI": _ci(k["ci"]), "p": k["p"]}
            if loss in sub and term != loss:
                pk = st.partial_kendall(sub[term], sub[target], sub[loss], n_boot=n_boot, groups=groups)
                row.update({"n (given loss)": pk["n"], "settings (test)": pk["n_test"], "tau given loss": pk["tau"], "p (given loss)": pk["p"]})
            agree = st.sign_agreement(sub, term, target, axes) if axes else {}
            row["worst sign agreement"] = agree.get("worst", float("nan"))
            worst = agree.get("worst_axis", "")
            row["worst axis (pairs)"] = f"{worst.replace('config.', '')} ({agree[f'pairs[{worst}]']})" if worst else ""
            row.update(granulated_kendall(sub, term, target, axes))
            block.append(row)
        if any("p (given loss)" in r for r in block):
            ps = [r.get("p (given loss)") for r in block]
            adjusted = st.holm([p if p is not None and np.isfinite(p) else None for p in ps])
            for r, p in zip(block, adjusted):
                if "p (given loss)" in r:
                    r["p (given loss, Holm)"] = p
                    r["beyond loss"] = "" if p is None else ("yes" if p < st.ALPHA else "no")
        rows += block
    table = pd.DataFrame(rows)
    order = ["term", "target", "n", "kendall_tau", "tau 95% CI", "p", "n (given loss)", "settings (test)", "tau given loss", "p (given loss)",
             "p (given loss, Holm)", "beyond loss", "worst sign agreement", "worst axis (pairs)"]
    return table[[c for c in order if c in table] + [c for c in table if c not in order]] if not table.empty else table


def _ci(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
