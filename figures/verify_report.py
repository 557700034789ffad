"""The report of `clbounds verify`: every bound and every term against error, over a grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clbounds.bounds.common import VERDICTS, distinct_checks, headline, term_gaps, verdict, verdict_counts
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
        # a bound measure.sequential left at its lower limit (the ascent was not needed) says so
        label=checks["details"].map(lambda d: (d.get("label", "") + (", bound is a lower limit" if d.get("lower_limit") else "")) if isinstance(d, dict) else ""),
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
    finding, never hidden. ``checks`` are distinct (a grid-level check once), so the list has
    exactly as many items as the headline's "violated"."""
    out = []
    for row in checks.to_dict("records"):
        if verdict(row) == "violated":
            margin = (row.get("details") or {}).get("margin", {}).get("margin")
            out.append(f"{row['theorem']} is violated {_where(row, labels)}: bound {row['bound']:.4g} < measured {row['measured']:.4g}"
                       + (f", beyond its margin {margin:.3g}" if margin is not None else ""))
    return out


def _where(row: dict, labels: dict[str, str]) -> str:
    """"on run LABEL (id)", or "over runs A, B, C" for a grid-level check."""
    details = row.get("details") or {}
    runs = details.get("grid_runs") or ([r for r in (details["cacr_run"], details.get("simclr_run")) if r] if details.get("cacr_run") else None)
    if runs:
        return "over runs " + ", ".join(f"{labels.get(r, r)} ({r})" for r in runs)
    if str(row["theorem"]).startswith("wen2020."):
        return f"over the width sweep of run {labels.get(row['run'], row['run'])} ({row['run']})"
    return f"on run {labels.get(row['run'], row['run'])} ({row['run']})"


def unmet_failures(checks: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """The checks whose bound is below the measured value while a hypothesis of the theorem
    is not met: not violations (the theorem promises nothing there), listed apart."""
    out = []
    for row in checks.to_dict("records"):
        if verdict(row) == "hypothesis not met" and row.get("holds") is False:
            failed = [name for name, a in ((row.get("details") or {}).get("assumptions") or {}).items() if isinstance(a, dict) and not a.get("met", True)]
            out.append(f"{row['theorem']} {_where(row, labels)}: bound {row['bound']:.4g} < measured {row['measured']:.4g}; "
                       f"not met: {', '.join(failed) or 'a hypothesis'}")
    return out


#: One sentence per verdict class, as the report's headline states it.
VERDICT_SENTENCES = {
    "informative": "{n} {are} informative: {they} hold beyond {their} margin, below the trivial predictor's ceiling, with {their} hypotheses met, and fail on every control that testifies",
    "vacuous": "{n} {are} vacuous: the bound is at or above what a trivial predictor attains, so {it} hold{s} whatever the encoder learned",
    "by construction": "{n} hold{s} by construction: {it} also hold{s} on a control without learned structure",
    "hypothesis not met": "{n} {have} a hypothesis that is not met: the theorem says nothing there",
    "no control": "{n} hold{s}, non-vacuous, but no control could testify, so {it} cannot be told from an artefact",
    "not resolved": "{n} {are} not resolved: bound minus measured is inside {their} sampling error",
    "violated": "{n} {are} violated beyond {their} margin with {their} hypotheses met (Findings)",
    "not evaluated": "{n} could not be evaluated: terms missing or not computable for this encoder",
}


def within(records: Sequence[dict], runs: set[str]) -> list[dict]:
    """The checks about these runs only: a grid-level check (a width sweep, a CACR/SimCLR pair)
    stays when every run it compares is in the report, so one run's report has none."""
    def involved(r: dict) -> set[str] | None:
        d = r.get("details") or {}
        if d.get("grid_runs"):
            return set(d["grid_runs"])
        if d.get("cacr_run"):
            return {x for x in (d["cacr_run"], d.get("simclr_run")) if x}
        return None

    def keep(r: dict) -> bool:
        if str(r["theorem"]).startswith("wen2020.") and not (r.get("details") or {}).get("grid_runs"):
            return len(runs) > 1  # stored before grid_runs: its sweep's runs are unknown, and one run is no sweep
        return (involved(r) or set()) <= runs

    return [r for r in records if keep(r)]


def verdict_sentences(records: Sequence[dict]) -> list[str]:
    """The headline's sentences: one per verdict class present (informative always)."""
    counts = verdict_counts(records)
    out = []
    for cls, template in VERDICT_SENTENCES.items():
        n = counts[cls]
        if cls == "informative" and n == 0:
            out.append("No check is informative: none holds beyond its margin, below the trivial predictor's ceiling, with its hypotheses met, "
                       "while failing on every control that testifies.")
            continue
        if n:
            one = n == 1
            words = {"are": "is" if one else "are", "they": "it" if one else "they", "their": "its" if one else "their",
                     "it": "it" if one else "they", "s": "s" if one else "", "have": "has" if one else "have"}
            noun = "check" if one else "checks"
            out.append(template.format(n=f"{n} {noun}", **words) + ".")
    return out


def run_table(df: pd.DataFrame, checks: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """One row per run: method, setting, the probes' accuracies, and the tightest downstream
    certificate stored for it (`clbounds certify` or `verify --certify`), if any."""
    certificates = {}
    if not checks.empty:
        for row in checks.to_dict("records"):
            if is_error_certificate(row["theorem"]) and pd.notna(row.get("bound")):
                best = certificates.get(row["run"])
                if best is None or row["bound"] < best[0]:
                    certificates[row["run"]] = (row["bound"], row["theorem"].removeprefix("certificate."))
    rows = []
    for r in df.to_dict("records"):
        cert = certificates.get(r["run"])
        rows.append({"run": r["run"], "setting": labels.get(r["run"], r["run"]), "method": r.get("config.method.name", ""),
                     **{label: r.get(col) for col, label in RUN_COLUMNS.items() if col in df},
                     "best certificate": f"{cert[0]:.4g} ({cert[1]})" if cert else ""})
    return pd.DataFrame(rows)


RUN_COLUMNS = {"knn_accuracy": "kNN acc", "linear_accuracy": "linear acc", "robust_accuracy": "robust acc"}


def is_error_certificate(theorem: str) -> bool:
    """A PAC-Bayes certificate on the downstream error (not the NT-Xent one, not a test-set reference)."""
    return theorem.startswith("certificate.pac_bayes") and "contrastive" not in theorem


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
    """The report of ``runs``: the verdict first, then the runs, the findings, the evidence
    (bounds, correlations over a grid), the statements and the figures; returns
    (report.md, report.html, figures). A single run gets no grid statistics."""
    out_dir = Path(out_dir)
    df = with_errors(frames.wide(store_root, runs))
    axes = varying_axes(df)
    seeds = sorted(df["config.seed"].unique().tolist()) if "config.seed" in df else []
    knn_protocol = frames.protocol_of(store_root, "knn_accuracy", runs)
    robust_protocol = frames.protocol_of(store_root, "robust_accuracy", runs)
    who = f"{len(df)} run{'s' if len(df) != 1 else ''} ({', '.join(labels.get(r, r) for r in df['run'])}), seeds {seeds}"
    df["label"] = df["run"].map(lambda r: labels.get(r, r))
    grid = len(df) > 1  # correlations, sign agreement and t-SNE comparisons need more than one run

    terms = [t for t in TERMS if t in df]
    targets = [t for t in ("knn_error", "robust_error") if t in df]
    corr = correlation_table(df, terms, targets, axes) if grid else pd.DataFrame()

    figures: list[Figure] = []
    hue = "config.method.name" if "config.method.name" in axes else None
    if grid and "knn_error" in df:
        figures.append(terms_vs_target(df, FIGURE_TERMS, "knn_error", "kNN error", out_dir / "figures", "terms-vs-knn-error",
                                       f"Each term (x) against kNN test error (y) over {who}; panel titles from the correlation table. Error protocol: {knn_protocol}. "
                                       "Term protocols are stored with every value (`clbounds export`).", hue=hue, notes=panel_notes(corr, "knn_error")))
    if grid and "robust_error" in df:
        figures.append(terms_vs_target(df, FIGURE_TERMS, "robust_error", "robust error", out_dir / "figures", "terms-vs-robust-error",
                                       f"Each term (x) against robust test error (y) over {who}; panel titles from the correlation table. Robust protocol: {robust_protocol}.",
                                       hue=hue, notes=panel_notes(corr, "robust_error")))
    stored = frames.bound_checks(store_root, runs)
    # A grid-level check (a width sweep, a CACR pair) is stored on each of its runs: count it once everywhere.
    checks = pd.DataFrame(distinct_checks(within(stored.to_dict("records"), set(df["run"])))) if not stored.empty else stored
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

    protocols = [f"kNN accuracy: {knn_protocol}" if knn_protocol else "", f"robust accuracy: {robust_protocol}" if robust_protocol else ""]
    intro = (f"{who}." + (f" Hyperparameter axes that vary: {', '.join(a.replace('config.', '') for a in axes) or 'none'}." if grid else "")
             + (f" Probes: {'; '.join(p for p in protocols if p)}." if any(protocols) else ""))
    methods = ""
    if grid:
        methods = ("Downstream error is 1 - kNN accuracy; robust error is 1 - robust accuracy (protocols above). "
                   "Kendall tau is over all runs, with its p-value (exact without ties) and a 95% interval by a bootstrap over settings (each with all its seeds, "
                   "2000 resamples); 'tau given loss' is Kendall's partial tau given the NT-Xent loss (info_nce), with the p-value of a test of "
                   "'nothing beyond the loss' over the settings' means ('settings (test)'): the generalised covariance measure of the term's and the error's residuals "
                   "on the loss (Shah & Peters 2020), on values and on ranks, rejecting only when both do, which holds its level when both track the loss strongly; "
                   "'beyond loss' is yes when that p-value passes Holm's correction over the terms of one error at 0.05; 'worst sign agreement' is the smallest fraction, over the axes, of pairs of runs differing in that axis where the term "
                   "and the error move together (Dziugaite et al. 2020), with that axis and its number of pairs; psi[axis] is the granulated tau of "
                   "Jiang et al. (2020) over groups where only that axis varies, Psi their mean."
                   + (" One seed per setting: no comparison between two runs is tested, and a correlation over so few runs "
                      "is shown with its interval only to say how little it pins down; the cpu preset runs 5 seeds." if len(seeds) <= 1 else ""))
    records = checks.to_dict("records") if not checks.empty else []
    md, html = build_report(out_dir, title, intro, bound_summary(checks, labels), corr, figures, statements, findings(checks, labels), commands,
                            bound_headline=headline(records) if records else "", theorem_table=theorem_summary(checks) if grid and records else None,
                            sections=setting_sections(df), verdict_lines=verdict_sentences(records) if records else [],
                            run_table=run_table(df, checks, labels), unmet=unmet_failures(checks, labels) if records else [], methods=methods)
    csv_safe(df.drop(columns=[c for c in df.columns if c.startswith("config.") and df[c].map(lambda v: isinstance(v, (list, dict))).any()])).to_csv(out_dir / "runs.csv", index=False)
    if grid:
        csv_safe(corr).to_csv(out_dir / "correlations.csv", index=False)
    return md, html, figures
