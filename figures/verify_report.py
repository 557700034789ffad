"""The report of `clbounds verify`: every bound and every term against error, over a grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clbounds.bounds.common import VERDICTS, headline, term_gaps, verdict, verdict_counts
from clbounds.bounds.display import controls_summary

from . import frames
from .frames import csv_safe
from .claims import INTERVAL_NOTE, Claim, mean_table, summary, test_claims
from .correlation import correlation_table
from .plots import Figure, bound_tightness, embedding_maps, terms_vs_target
from .report import Statement, build_report

# The empirical terms of the theorems, in the order the report lists them.
TERMS = [
    "info_nce", "huang_infonce_L1", "huang_infonce_L2", "alignment", "uniformity", "misalignment_rate",
    "center_max_inner", "center_min_distance", "delta_mu", "intra_class_spread", "sigma",
    "center_max_inner_projection", "misalignment_rate_projection", "alignment_projection",
    "lipschitz_lower", "lipschitz_upper", "sharpness", "sharpness_sam", "sharpness_asam", "sharpness_m", "sharpness_average",
    "hessian_lambda_max", "hessian_trace", "shift_loss_gap", "shift_mmd2", "shift_sliced_wasserstein",
    "shift_cosine_gap", "shift_js", "representation_gap", "adversarial_info_nce", "gradient_norm",
    "weight_movement", "mi_query_negative",
]
# The dozen drawn as scatter panels (the correlation table covers all of TERMS).
FIGURE_TERMS = [
    "info_nce", "alignment", "uniformity", "misalignment_rate", "center_max_inner", "sigma",
    "sharpness", "hessian_lambda_max", "shift_loss_gap", "shift_mmd2", "representation_gap", "weight_movement",
]
_NOT_AXES = {"config.name", "config.seed", "config.device"}
MAX_MAPS = 24  # t-SNE panels in one figure


def varying_axes(df: pd.DataFrame) -> list[str]:
    """The config columns that differ between the runs: the grid's hyperparameter axes."""
    cols = [c for c in df.columns if c.startswith("config.") and c not in _NOT_AXES and not c.startswith(("config.eval.", "config.measure."))]
    return [c for c in cols if df[c].astype(str).nunique() > 1]


def with_errors(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "knn_accuracy" in df:
        df["knn_error"] = 1 - df["knn_accuracy"]
    if "robust_accuracy" in df:
        df["robust_error"] = 1 - df["robust_accuracy"]
    return df


def _controls_text(details: dict) -> str:
    return controls_summary(details, digits=3, empty="")


def _vacuous_text(row: pd.Series) -> str:
    ceiling = row["details"].get("ceiling") if isinstance(row["details"], dict) else None
    if ceiling is None:
        return "no ceiling"
    flag = row["vacuous"]
    return ("VACUOUS" if flag else "no" if flag is False else "–") + f" (ceiling {ceiling['value']:.3g})"


def bound_summary(checks: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """One row per (run, theorem): both sides, holds, tightness, vacuity against the ceiling,
    the same check on the controls, the verdict and which assumptions failed."""
    cols = ["run", "theorem", "label", "bound", "measured", "holds", "tightness", "vacuous", "on the controls", "verdict", "assumptions"]
    if checks.empty:
        return pd.DataFrame(columns=cols)

    def failed(details: dict) -> str:
        assumptions = details.get("assumptions", {}) if isinstance(details, dict) else {}
        bad = [name for name, a in assumptions.items() if isinstance(a, dict) and not a.get("met", True)]
        if isinstance(details, dict):
            bad += term_gaps(details)
        return "all met" if not bad else "failed: " + "; ".join(bad)

    out = checks.assign(
        run=checks["run"].map(lambda r: labels.get(r, r)),
        label=checks["details"].map(lambda d: d.get("label", "") if isinstance(d, dict) else ""),
        assumptions=checks["details"].map(failed),
        verdict=[verdict(row) for row in checks.to_dict("records")],
    )
    out["vacuous"] = out.apply(_vacuous_text, axis=1)
    out["on the controls"] = out["details"].map(_controls_text)
    return out[cols].sort_values(["theorem", "run"]).reset_index(drop=True)


def theorem_summary(checks: pd.DataFrame) -> pd.DataFrame:
    """One row per theorem over the runs: how many runs fall in each verdict class, and the tightness range."""
    rows = []
    for theorem, group in checks.groupby("theorem", sort=True):
        records = group.to_dict("records")
        counts = verdict_counts(records)
        tight = group["tightness"].dropna()
        label = next((d.get("label", "") for d in group["details"] if isinstance(d, dict)), "")
        rows.append({"theorem": theorem, "label": label, "runs": len(group), "holds": int((group["holds"] == True).sum()),  # noqa: E712
                     **{k: counts[k] for k in VERDICTS},
                     "tightness": f"{tight.min():.3g} – {tight.max():.3g}" if len(tight) else ""})
    return pd.DataFrame(rows)


def findings(checks: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """Every violated bound (hypotheses met, beyond its margin), stated with its numbers: a
    finding, never hidden. A failure inside the margin or with unmet hypotheses is not one."""
    from clbounds.bounds.common import verdict

    out, seen = [], set()
    for row in checks.to_dict("records"):
        if verdict(row) == "violated":
            key = (row["theorem"], row["bound"], row["measured"])
            if key in seen:  # a grid-level check (a width sweep, a pair) is stored on each of its runs: one finding
                continue
            seen.add(key)
            margin = (row.get("details") or {}).get("margin", {}).get("margin")
            out.append(f"{row['theorem']} is violated on run {labels.get(row['run'], row['run'])} ({row['run']}): bound {row['bound']:.4g} < measured {row['measured']:.4g}"
                       + (f", beyond its margin {margin:.3g}" if margin is not None else ""))
    return out


SETTING_COLUMNS = {"knn_accuracy": "kNN acc", "linear_accuracy": "linear acc", "robust_accuracy": "robust acc", "info_nce": "NT-Xent loss"}


def setting_sections(df: pd.DataFrame, base: str | None = None) -> list[tuple[str, str, pd.DataFrame]]:
    """For a grid with several seeds per setting: each setting's mean [95% interval] over its
    seeds, and each setting against the base setting (the first, or ``base``) on the
    accuracies, paired over seeds, two-sided as one-sided tests in each direction with Holm's
    correction over all of them. Nothing for a one-seed grid: it resolves nothing."""
    if "config.seed" not in df or df["config.seed"].nunique() < 2:
        return []
    df = df.assign(setting=df["label"].str.replace(r"/seed\d+$", "", regex=True))
    order = list(dict.fromkeys(df["setting"]))
    columns = {c: label for c, label in SETTING_COLUMNS.items() if c in df and df[c].notna().any()}
    means = mean_table(df, "setting", columns, order)
    base = base if base in order else order[0]
    claims = [Claim(f"{s} beats {base} in {label}", col, s, base, "greater") for s in order if s != base
              for col, label in columns.items() if col.endswith("accuracy")]
    tested = test_claims(df, "setting", claims)
    text = (f"{summary(tested, 'comparisons with ' + base)} 'reproduced' reads: the setting is better than {base}; 'contradicted': worse. "
            "Exploratory: no paper claims these, and the correction runs over every setting and accuracy of this grid.")
    return [("Settings, mean over seeds", INTERVAL_NOTE, means), (f"Each setting against {base}, paired over seeds", text, tested)]


def panel_notes(corr: pd.DataFrame, target: str) -> dict[str, str]:
    """Per term, the figure panel's title: τ with its interval, then the partial τ given the
    loss with its Holm-adjusted p-value (the table's "beyond loss" test)."""
    notes = {}
    if corr.empty:
        return notes
    for row in corr[corr["target"] == target].to_dict("records"):
        text = f"τ = {row['kendall_tau']:+.2f} {row.get('tau 95% CI', '')}".strip()
        p = row.get("p (given loss, Holm)")
        if isinstance(p, float) and p == p:
            text += f"\ngiven loss {row['tau given loss']:+.2f}, p = {p:.2g}"
        notes[row["term"]] = text
    return notes


def make_report(
    store_root: str | Path,
    runs: Sequence[str],
    labels: dict[str, str],
    out_dir: Path,
    title: str,
    commands: Sequence[str] = (),
    statements: Sequence[Statement] = (),
) -> tuple[Path, Path, list[Figure]]:
    """Figures, bound table and correlation table for ``runs``; returns (report.md, report.html, figures)."""
    out_dir = Path(out_dir)
    df = with_errors(frames.wide(store_root, runs))
    axes = varying_axes(df)
    seeds = sorted(df["config.seed"].unique().tolist()) if "config.seed" in df else []
    knn_protocol = frames.protocol_of(store_root, "knn_accuracy", runs)
    robust_protocol = frames.protocol_of(store_root, "robust_accuracy", runs)
    who = f"{len(df)} runs ({', '.join(labels.get(r, r) for r in df['run'])}), seeds {seeds}"
    df["label"] = df["run"].map(lambda r: labels.get(r, r))

    terms = [t for t in TERMS if t in df]
    targets = [t for t in ("knn_error", "robust_error") if t in df]
    corr = correlation_table(df, terms, targets, axes)

    figures: list[Figure] = []
    hue = "config.method.name" if "config.method.name" in axes else None
    if "knn_error" in df:
        figures.append(terms_vs_target(df, FIGURE_TERMS, "knn_error", "kNN error", out_dir / "figures", "terms-vs-knn-error",
                                       f"Each term (x) against kNN test error (y) over {who}; panel titles from the correlation table. Error protocol: {knn_protocol}. "
                                       "Term protocols are stored with every value (`clbounds export`).", hue=hue, notes=panel_notes(corr, "knn_error")))
    if "robust_error" in df:
        figures.append(terms_vs_target(df, FIGURE_TERMS, "robust_error", "robust error", out_dir / "figures", "terms-vs-robust-error",
                                       f"Each term (x) against robust test error (y) over {who}; panel titles from the correlation table. Robust protocol: {robust_protocol}.",
                                       hue=hue, notes=panel_notes(corr, "robust_error")))
    checks = frames.bound_checks(store_root, runs)
    if not checks.empty:
        figures.append(bound_tightness(checks, out_dir / "figures", "bound-tightness",
                                       f"Bound against the measured quantity for every theorem over {who}; points above the dashed line hold. Bounds without a numeric value (diagnostics) are not drawn."))

    maps = {}
    shown = df
    if len(df) > MAX_MAPS and "config.seed" in df:  # one map per setting (its first seed) keeps the figure readable
        shown = df[df["config.seed"] == df["config.seed"].min()]
    shown = shown.head(MAX_MAPS)
    for run in shown["run"]:
        path = Path(store_root) / run / "tsne.csv"
        if path.is_file():
            label = labels.get(run, run)
            maps[label if label not in maps else f"{label} ({run})"] = pd.read_csv(path)  # seeds of one setting share a label
    if maps:
        figures.append(embedding_maps(maps, out_dir / "figures", "embeddings",
                                      f"t-SNE (scikit-learn, perplexity min(30, (n-1)/3), PCA init, seed of the run) of the normalised backbone features of up to 300 test inputs per run, coloured by class; {len(maps)} of {len(df)} runs{' (the first seed of each setting' + (f', the first {MAX_MAPS}' if len(shown) == MAX_MAPS else '') + ')' if len(maps) < len(df) else ''}."))

    one_seed = len(seeds) <= 1
    intro = (f"{who}. Hyperparameter axes that vary: {', '.join(a.replace('config.', '') for a in axes) or 'none'}. "
             f"Downstream error is 1 - kNN accuracy ({knn_protocol}); robust error is 1 - robust accuracy ({robust_protocol}). "
             "Kendall tau is over all runs, with its p-value (exact without ties) and a 95% interval by a bootstrap over settings (each with all its seeds, "
             "2000 resamples); 'tau given loss' is Kendall's partial tau given the NT-Xent loss (info_nce), with the p-value of a test of "
             "'nothing beyond the loss' over the settings' means ('settings (test)'): the generalised covariance measure of the term's and the error's residuals "
             "on the loss (Shah & Peters 2020), on values and on ranks, rejecting only when both do, which holds its level when both track the loss strongly; "
             "'beyond loss' is yes when that p-value passes Holm's correction over the terms of one error at 0.05; 'worst sign agreement' is the smallest fraction, over the axes, of pairs of runs differing in that axis where the term "
             "and the error move together (Dziugaite et al. 2020), with that axis and its number of pairs; psi[axis] is the granulated tau of "
             "Jiang et al. (2020) over groups where only that axis varies, Psi their mean."
             + (" One seed per setting: this grid resolves nothing. No comparison between two runs is tested, and a correlation over so few runs "
                "is shown with its interval only to say how little it pins down; the cpu preset runs 5 seeds." if one_seed else ""))
    records = checks.to_dict("records") if not checks.empty else []
    md, html = build_report(out_dir, title, intro, bound_summary(checks, labels), corr.round(4), figures, statements, findings(checks, labels), commands,
                            bound_headline=headline(records), theorem_table=theorem_summary(checks) if records else None, sections=setting_sections(df))
    csv_safe(df.drop(columns=[c for c in df.columns if c.startswith("config.") and df[c].map(lambda v: isinstance(v, (list, dict))).any()])).to_csv(out_dir / "runs.csv", index=False)
    csv_safe(corr).to_csv(out_dir / "correlations.csv", index=False)
    return md, html, figures
