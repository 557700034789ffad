"""The analysis of each `clbounds reproduce` target: table, figure and a one-sentence verdict.

Each function reads the run store, never recomputes a term, writes ``report.md`` (and the
figures) into ``out_dir`` and returns the report's path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clbounds.bounds import wen2020

from . import frames
from .frames import csv_safe
from .claims import FIXED_TEST_NOTE, INTERVAL_NOTE, Claim, claims_sentence, mean_table, summary, test_claims
from .correlation import kendall_tau
from .plots import Figure, Panel, bound_tightness as draw_bound_tightness, ordered_series, panels
from .report import _markdown_table
from .verify_report import make_report, with_errors


def _write(out_dir: Path, title: str, verdict: str, table: pd.DataFrame, figures: Sequence[Figure], command: str, protocol: str,
           tables: Sequence[tuple[str, pd.DataFrame]] = ()) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}\n", f"**Verdict.** {verdict}\n", f"Protocol: {protocol}\n", _markdown_table(table)]
    for heading, extra in tables:
        lines += [f"## {heading}\n", _markdown_table(extra)]
    for f in figures:
        lines += [f"![{f.name}]({f.png.relative_to(out_dir)})\n", f"{f.caption}\n"]
    lines += [f"Regenerate: `{command}`\n"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def report_verdict(report: Path) -> str:
    """The verdict a target's report.md leads with (its "**Verdict.**" paragraph, or the bold
    headline of a verify-style report), for the command line to print."""
    text = Path(report).read_text()
    found = re.search(r"^\*\*Verdict\.\*\* (.+)$", text, re.M) or re.search(r"^\*\*(.+)\*\*$", text, re.M)
    return found.group(1).strip() if found else "see the report"


def _huang_frame(store_root: str | Path, runs: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    df = with_errors(frames.wide(store_root, runs))
    df["label"] = df["run"].map(labels)
    df["one_minus_sigma"] = 1 - df["sigma"]
    return df


def _ordering_verdict(df: pd.DataFrame, x: str, order: Sequence, what: str) -> tuple[str, list[float]]:
    """Does the kNN error rank the settings as 1−σ does (the paper claims the same order)? Per
    method, Kendall's S of (error, 1−σ) over the settings, summed over seeds and tested
    one-sided in each direction against its exact null (:func:`.statistics.stratified_kendall`:
    one seed is scipy's exact Kendall test; ties make it a permutation test within seeds).
    Holm's correction runs over both directions of every method's test; the verdict is
    three-way at level 0.05 on the adjusted p-values, never by the sign of τ. The mean τ over
    seeds is shown with its interval over seeds."""
    from . import statistics as st

    tested = []
    seed_col = "config.seed" if "config.seed" in df else None
    for method, g in df.groupby("config.method.name"):
        strata = []
        for _, gs in (g.groupby(seed_col) if seed_col else [(0, g)]):
            gs = gs.groupby(x)[["knn_error", "one_minus_sigma"]].mean().reindex(order).dropna()
            strata.append((gs["knn_error"].to_numpy(), gs["one_minus_sigma"].to_numpy()))
        r = st.stratified_kendall(strata)
        if max(len(a) for a, _ in strata) < 3:
            r["p_greater"] = r["p_less"] = None
        tested.append((method, strata, r))
    adjusted = st.holm([p for _, _, r in tested for p in (r["p_greater"], r["p_less"])])
    n_tests = sum(p is not None for p in adjusted)
    taus, parts, words = [], [], []
    for i, (method, strata, r) in enumerate(tested):
        taus.append(r["tau"])
        seeds = f"{r['n']} seed{'s' if r['n'] != 1 else ''}"
        greater, less = adjusted[2 * i], adjusted[2 * i + 1]
        if greater is None or less is None:
            word, detail = "not resolved", f"tau(error, 1-sigma) not testable ({seeds}, fewer than 3 settings with both values, or a constant side)"
        else:
            word = "reproduced" if greater < st.ALPHA else "contradicted" if less < st.ALPHA else f"not resolved at {seeds}"
            per_seed = [t for t in (kendall_tau(a, b) for a, b in strata) if np.isfinite(t)]
            interval = ""
            if len(per_seed) >= 2:
                _, lo, hi = st.mean_ci(per_seed)
                interval = f" [{lo:+.2f}, {hi:+.2f}]"
            detail = (f"mean tau(error, 1-sigma) = {r['tau']:+.2f}{interval} over {seeds}, Kendall S = {r['S']:+d} summed over seeds, "
                      f"one-sided p = {min(r['p_greater'], r['p_less']):.3g} ({r['method']}), Holm-adjusted {min(greater, less):.3g}")
        constant = sum(np.unique(b).size < 2 for _, b in strata)
        if constant:  # σ depends on the data and the augmentation only: it can tie across every setting
            detail += f"; 1-sigma is the same at every setting in {constant} of {len(strata)} seeds, which gives nothing to order"
        words.append(word)
        parts.append(f"{method}: {detail}, {word}")
    seeds = len(df[seed_col].unique()) if seed_col else 1
    overall = ("Reproduced" if words and all(w == "reproduced" for w in words) else "Contradicted" if words and all(w == "contradicted" for w in words)
               else f"Not resolved at {len(order)} settings and {seeds} seed{'s' if seeds != 1 else ''}")
    verdict = (f"{overall} on this data: across {what}, does the kNN error rank the settings as 1-sigma does (Kendall's S summed over seeds, exact one-sided "
               f"test in each direction, Holm over the {n_tests} one-sided tests, alpha = {st.ALPHA:g})? {'; '.join(parts)}.")
    return verdict, taus


HUANG_COLUMNS = {"knn_accuracy": "kNN acc", "one_minus_sigma": "1-sigma", "misalignment_rate": "R_eps", "center_max_inner": "max_k!=l mu_k.mu_l"}


def _huang_table(df: pd.DataFrame, x: str, order: Sequence, out_dir: Path | None = None) -> pd.DataFrame:
    """Per method and setting: seeds and "mean [95% interval]" of each column (the intervals of
    :func:`.claims.mean_table`); the per-seed rows go to ``runs.csv`` beside the report."""
    name = x.replace("config.", "")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        cols = {"config.method.name": "method", x: name, "config.seed": "seed", **HUANG_COLUMNS}
        csv_safe(df[[c for c in cols if c in df]].rename(columns=cols).sort_values([c for c in ("method", name, "seed") if c in cols.values()])).to_csv(out_dir / "runs.csv", index=False)
    parts = []
    for method, g in df.groupby("config.method.name"):
        g = g.assign(setting=g[x].astype(str))
        table = mean_table(g, "setting", HUANG_COLUMNS, [str(o) for o in order], accuracy=("knn_accuracy",), n_test=_test_size(g), split_per_seed=_split_per_seed(g))
        parts.append(table.rename(columns={"setting": name}).assign(method=method))
    table = pd.concat(parts, ignore_index=True)
    return table[["method", *[c for c in table if c != "method"]]]


def huang_table1(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Huang et al. Table 1 and Figure 3: error and 1−σ over augmentation subsets."""
    df = _huang_frame(store_root, runs, labels)
    order = ["a", "ab", "abc", "abcd", "abcde"]
    canonical = {"a": "a", "ab": "ab", "acb": "abc", "adcb": "abcd", "aedcb": "abcde"}  # stored in SimCLR order
    df["augment"] = df["config.augment"].map(lambda s: canonical.get(s, s))
    protocol = f"{frames.protocol_of(store_root, 'knn_accuracy', runs)}; sigma: {frames.protocol_of(store_root, 'sigma', runs)}"
    figures = [
        ordered_series(g, "augment", {"knn_error": "kNN error", "one_minus_sigma": "1 - sigma"}, out_dir, f"huang-table1-{method}",
                       f"{method}: kNN error and 1-sigma over augmentation subsets (a crop, b blur, c grayscale, d colour, e flip); {len(g)} runs, seeds {sorted(int(s) for s in g['config.seed'].unique())}. {protocol}.",
                       "augmentation subset (a crop, b blur, c grayscale, d colour, e flip)", "kNN error; 1 - sigma(delta)", order=order,
                       title=f"Huang et al. Table 1, {method.replace('_', ' ')}: does 1 - sigma order the subsets as the error does?")
        for method, g in df.groupby("config.method.name")
    ]
    verdict, _ = _ordering_verdict(df, "augment", order, "augmentation subsets a..abcde")
    return _write(out_dir, "Huang et al. (2023) Table 1 and Figure 3", verdict, _huang_table(df, "augment", order, out_dir), figures, command,
                  f"{protocol}. {_interval_note(df)} Per-seed rows: runs.csv")


def huang_color(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Huang et al.'s colour-strength sweep for SimCLR: stronger colour distortion, larger σ, lower error."""
    df = _huang_frame(store_root, runs, labels)
    order = sorted(df["config.color_strength"].unique(), reverse=True)
    protocol = f"{frames.protocol_of(store_root, 'knn_accuracy', runs)}; sigma: {frames.protocol_of(store_root, 'sigma', runs)}"
    fig = ordered_series(df, "config.color_strength", {"knn_error": "kNN error", "one_minus_sigma": "1 - sigma"}, out_dir, "huang-color",
                         f"SimCLR: kNN error and 1-sigma against colour strength; {len(df)} runs, seeds {sorted(int(s) for s in df['config.seed'].unique())}. {protocol}.",
                         "colour strength", "kNN error; 1 - sigma(delta)", order=order, title="Huang et al.: SimCLR colour strength against kNN error and 1 - sigma")
    verdict, _ = _ordering_verdict(df, "config.color_strength", order, "colour strengths 1, 1/2, 1/4, 1/8")
    g = df.groupby("config.color_strength")[["knn_error", "knn_accuracy"]].mean().reindex(order)
    seeds = df["config.seed"].nunique() if "config.seed" in df else 1
    # Descriptive only (means over seeds); the tested statement is the ordering verdict above.
    monotone = g["knn_error"].is_monotonic_increasing
    verdict += (f" Descriptively, the mean kNN accuracy over {seeds} seed{'s' if seeds != 1 else ''} {'falls' if monotone else 'does not fall monotonically'} as the "
                f"colour distortion weakens ({', '.join(f'{a:.3f}' for a in g['knn_accuracy'])} for strengths {', '.join(f'{c:g}' for c in order)}); untested.")
    return _write(out_dir, "Huang et al. (2023): colour-strength sweep", verdict, _huang_table(df, "config.color_strength", order, out_dir), [fig], command,
                  f"{protocol}. {_interval_note(df)} Per-seed rows: runs.csv")


def terms_vs_accuracy(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Every term against downstream and robust error with Kendall and granulated τ (the verify report)."""
    md, _, _ = make_report(store_root, runs, labels, out_dir, "Terms against accuracy", [command])
    return md


def bound_tightness(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Bound against measurement for every theorem, on log axes with y = x."""
    from clbounds.bounds.common import distinct_checks, headline, verdict as verdict_of

    checks = frames.bound_checks(store_root, runs)
    if not checks.empty:  # a grid-level check stored on each of its runs counts once
        checks = pd.DataFrame(distinct_checks(checks.to_dict("records")))
    fig = draw_bound_tightness(checks, out_dir, "bound-tightness", f"Bound against measured quantity for every theorem over {len(runs)} runs; above the line the bound holds.")

    numeric = checks.dropna(subset=["bound", "measured"])
    if len(numeric):
        records = numeric.to_dict("records")
        informative = [r for r in records if verdict_of(r) == "informative"]
        tight = ", ".join(f"{r['theorem']} on {labels.get(r['run'], r['run'])} {r['tightness']:.3g}" for r in informative if r["tightness"] is not None) or "none"
        verdict = (f"{headline(records)} (numeric checks over {len(runs)} runs; the tightness of every other check says nothing about learning). "
                   f"Tightness of the informative ones: {tight}.")
    else:
        verdict = "No numeric bound was evaluated."
    table = numeric.assign(run=numeric["run"].map(labels), verdict=[verdict_of(r) for r in numeric.to_dict("records")])
    table = table[["theorem", "run", "bound", "measured", "holds", "tightness", "vacuous", "informative", "resolved", "verdict", "assumptions_met"]].sort_values(["theorem", "run"])
    return _write(out_dir, "Bound tightness", verdict, table, [fig], command, "see each theorem's module docstring; terms carry their protocols in the store")


# ---- method comparisons (SSA-CLR, robust CL, CACR) and the Wen width sweep ------------------


def _protocols(store_root, runs, names: Sequence[str], chosen: dict[str, str] | None = None) -> str:
    """``name: protocol`` for each name; ``chosen[name]`` keeps only the protocols containing it (those frames.wide used)."""
    out = []
    for n in names:
        found = frames.protocol_of(store_root, n, runs, (chosen or {}).get(n)).split("; ")
        found = [p for p in found if (chosen or {}).get(n, "") in p and p]
        out.append(f"{n}: {'; '.join(found) or 'not measured'}")
    return "; ".join(out)


def _test_size(df: pd.DataFrame) -> int | None:
    """n of the held-out split the probes use, where the config fixes it (synthetic data)."""
    if "config.data.name" in df and (df["config.data.name"] == "synthetic").all() and df["config.data.n_test"].nunique() == 1:
        return int(df["config.data.n_test"].iloc[0])
    return None


def _split_per_seed(df: pd.DataFrame) -> bool:
    """Whether each seed draws its own test inputs: the embedded data (synthetic is generated
    from the seed, digits is split by it); a file dataset's test set is fixed."""
    return "config.data.name" in df and set(df["config.data.name"]) <= {"synthetic", "digits"}


def _interval_note(df: pd.DataFrame) -> str:
    return INTERVAL_NOTE if _split_per_seed(df) else FIXED_TEST_NOTE


def _bars(df: pd.DataFrame, x: str, cols: dict[str, str], order: Sequence[str], hue: str | None = None) -> list[Panel]:
    return [Panel("bars", df, x, col, title=label, xlabel="", ylabel=label, hue=hue, order=order) for col, label in cols.items() if col in df and df[col].notna().any()]


SSA_ORDER = ["SimCLR", "+SAM", "+Fourier", "+SAM+Fourier"]
SSA_COLUMNS = {"knn_accuracy": "kNN acc", "linear_accuracy": "linear acc", "sharpness": "sharpness", "sharpness_sam": "sharpness (1-step SAM)",
               "shift_loss_gap": "shift loss gap", "shift_mmd2": "shift MMD^2"}


def _ssa_variant(row: pd.Series) -> str:
    method = row["config.method.name"]
    if method != "ssa_clr":
        return "SimCLR" if method == "simclr" else str(method)
    key = (bool(row["config.method.use_sam"]), bool(row["config.method.use_fourier"]))
    return {(True, False): "+SAM", (False, True): "+Fourier", (True, True): "+SAM+Fourier"}.get(key, "ssa_clr without SAM or Fourier")


def _verdict_word(achieved: int, total: int) -> str:
    return "Reproduced" if total and achieved == total else ("Not reproduced" if achieved == 0 else "Partly reproduced")


def ssa_clr_claims(variants: Sequence[str]) -> list[Claim]:
    """SSA-CLR's claims (PAPERS §2): SAM lowers the sharpness; every variant beats SimCLR on
    kNN and linear accuracy; Fourier mixing shrinks the ideal-vs-practical shift (|gap|)."""
    claims = [Claim("SAM lowers the sharpness (SimCLR -> +SAM)", "sharpness", "+SAM", "SimCLR", "less"),
              Claim("SAM lowers the sharpness (+Fourier -> +SAM+Fourier)", "sharpness", "+SAM+Fourier", "+Fourier", "less")]
    claims += [Claim(f"{v} beats SimCLR in {what}", col, v, "SimCLR", "greater") for v in variants if v != "SimCLR"
               for col, what in (("knn_accuracy", "kNN accuracy"), ("linear_accuracy", "linear accuracy"))]
    claims.append(Claim("Fourier mixing shrinks |shift gap| (SimCLR -> +Fourier)", "shift_loss_gap", "+Fourier", "SimCLR", "less", transform=abs))
    return claims


def ssa_clr(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """SSA-CLR (PAPERS §2): SimCLR vs +SAM, +Fourier and both; accuracy, sharpness and the shift gap, each claim a paired test across seeds."""
    df = frames.wide(store_root, runs)
    df["variant"] = df.apply(_ssa_variant, axis=1)
    order = [v for v in SSA_ORDER if v in set(df["variant"])]
    n_test = _test_size(df)
    table = mean_table(df, "variant", SSA_COLUMNS, SSA_ORDER, accuracy=("knn_accuracy", "linear_accuracy"), n_test=n_test, split_per_seed=_split_per_seed(df))
    claims = test_claims(df, "variant", [c for c in ssa_clr_claims(order) if c.a in order and c.b in order])
    protocol = _protocols(store_root, runs, ["knn_accuracy", "linear_accuracy", "sharpness", "shift_loss_gap"])
    fig = panels(_bars(df, "variant", {k: SSA_COLUMNS[k] for k in ("knn_accuracy", "linear_accuracy", "sharpness", "shift_loss_gap")}, order), out_dir, "ssa-clr",
                 f"SimCLR against SSA-CLR's parts: accuracy, sharpness (projected ascent in a rho-ball) and the ideal-vs-practical InfoNCE gap; {len(df)} runs, bars mean ± sd over seeds. {protocol}.",
                 "SSA-CLR: SAM and Fourier mixing against SimCLR")
    verdict = f"{summary(claims)} {claims_sentence(claims)}."
    return _write(out_dir, "SSA-CLR (Tran et al. 2023): SAM and Fourier mixing against SimCLR", verdict, table, [fig], command, f"{protocol}. {_interval_note(df)}",
                  [("Claims, paired across seeds", claims)])


ROBUST_NAMES = {"simclr": "SimCLR", "rocl": "RoCL", "robust_cl": "robust CL"}
ROBUST_COLUMNS = {"knn_accuracy": "kNN acc", "clean_accuracy": "clean acc", "robust_accuracy": "robust acc (PGD Linf)", "l2_robust_accuracy": "robust acc (PGD L2, unseen)",
                  "autoattack_robust_accuracy": "robust acc (AutoAttack, unseen)", "adversarial_info_nce": "L_adv (InfoNCE)",
                  "benign_info_nce": "L_ben (InfoNCE)", "sharpness": "S_rho", "adversarial_js": "D (JS proxy)", "robust_cross_entropy": "robust CE",
                  "proxy_bound": "a=b=c=1 proxy bound", "transfer_bound": "Lipschitz-transfer bound"}


def _attack(protocol: str) -> str:
    found = re.search(r"PGD-\d+ Linf eps=[^ ,]+ step=[^ ,]+", protocol)
    return found.group(0) if found else "the stored attack"


def robust_cl(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Robust CL (PAPERS §1): SimCLR vs RoCL vs robust CL; clean and robust accuracy, the bound's terms."""
    df = frames.wide(store_root, runs)
    df["method"] = df["config.method.name"].map(lambda n: ROBUST_NAMES.get(n, n))
    checks = frames.bound_checks(store_root, runs)
    for theorem, col in (("robust_cl.adversarial_infonce", "proxy_bound"), ("robust_cl.lipschitz_transfer", "transfer_bound")):
        df[col] = df["run"].map(checks[checks["theorem"] == theorem].set_index("run")["bound"])
    protocol = _protocols(store_root, runs, ["clean_accuracy", "robust_accuracy", "adversarial_info_nce", "sharpness", "adversarial_js"])
    robust_protocol = frames.protocol_of(store_root, "robust_accuracy", runs)
    attack = _attack(robust_protocol)
    sizes = set(re.findall(r"test n=(\d+)", robust_protocol))
    n_robust = int(sizes.pop()) if len(sizes) == 1 else None
    order = [v for v in ROBUST_NAMES.values() if v in set(df["method"])]
    # The unseen attacks of PAPERS §1 where they were measured: PGD-L2 (measure's adversarial
    # group) and AutoAttack (the opt-in autoattack group, with the torchattacks extra).
    attacks = {"robust_accuracy": attack}
    for column, pattern, name in (("l2_robust_accuracy", r"PGD-\d+ L2 eps=[^ ,]+ step=[^ ,]+", "{}"), ("autoattack_robust_accuracy", r"Linf eps=[^ ,]+", "AutoAttack standard {}")):
        if column in df and df[column].notna().any():
            found = re.search(pattern, frames.protocol_of(store_root, column, runs))
            attacks[column] = name.format(found.group(0)) if found else column
    columns = {k: v for k, v in ROBUST_COLUMNS.items() if k not in ("l2_robust_accuracy", "autoattack_robust_accuracy") or k in attacks}
    table = mean_table(df, "method", columns, list(ROBUST_NAMES.values()), accuracy=("clean_accuracy", *attacks), n_test=n_robust, split_per_seed=_split_per_seed(df))
    claims = test_claims(df, "method", [Claim(f"robust CL is more robust than {o} ({name})", column, "robust CL", o, "greater")
                                        for column, name in attacks.items() for o in ("RoCL", "SimCLR") if o in order and "robust CL" in order])
    shown = ("clean_accuracy", *attacks, "adversarial_info_nce", "benign_info_nce", "sharpness", "adversarial_js")
    fig = panels(_bars(df, "method", {k: columns[k] for k in shown}, order), out_dir, "robust-cl",
                 f"Clean and robust ({attack}) linear-probe accuracy, and the three terms of the reconstructed robust-CL bound (adversarial InfoNCE, benign InfoNCE + its rho-sharpness, JS proxy between benign and adversarial projections); {len(df)} runs, bars mean ± sd over seeds. {protocol}.",
                 "Robust CL against RoCL and SimCLR")
    bound_rows = checks[checks["theorem"].str.startswith("robust_cl.")].assign(method=lambda c: c["run"].map(df.set_index("run")["method"]))
    bound_table = bound_rows[["theorem", "method", "bound", "measured", "holds", "tightness", "assumptions_met"]].sort_values(["theorem", "method"]).reset_index(drop=True)
    verdict = f"{summary(claims)} {claims_sentence(claims)}." if "robust CL" in order else "Not testable: the robust CL run did not finish."
    if "autoattack_robust_accuracy" in attacks:
        verdict += " " + autoattack_sentence(df)
    return _write(out_dir, "Robust contrastive learning (Tran et al. 2023) against RoCL and SimCLR", verdict, table,
                  [fig], command, protocol + f". The a=b=c=1 bound is a proxy of the reconstructed shape (bounds/robust_cl.py). {_interval_note(df)}",
                  [("Claims, paired across seeds", claims), ("Bound checks (bounds/robust_cl.py, reconstructed)", bound_table)])


def autoattack_sentence(df: pd.DataFrame) -> str:
    """How AutoAttack compares with PGD-L∞ on the same inputs, per method, and the RobustBench
    sanity checks (experiments/measurement/autoattack.py; ``df`` is frames.wide, so each run's latest row
    of each check): a failed check is named, never averaged away."""
    parts = []
    for method, group in df.groupby("method", sort=False):
        pair = group[["robust_accuracy", "autoattack_robust_accuracy"]].dropna()
        if len(pair):
            drop = (pair["robust_accuracy"] - pair["autoattack_robust_accuracy"])
            parts.append(f"{method} {drop.mean():+.3f} (range {drop.min():+.3f} to {drop.max():+.3f}, {len(pair)} runs)")
    sanity = df[[c for c in df.columns if c.startswith("sanity_")]]
    stored = int(sanity.notna().sum().sum())
    failed = sorted(c for c in sanity.columns if (sanity[c] < 1).any())
    checks = (f"all {stored} RobustBench sanity checks passed (AutoAttack <= PGD, deterministic forward, non-zero input gradients)" if stored and not failed
              else f"{int((sanity < 1).sum().sum())} of {stored} RobustBench sanity checks FAILED: {'; '.join(failed)}" if stored else "no sanity rows were stored")
    return f"PGD-Linf accuracy minus AutoAttack accuracy on the same inputs (how much PGD overestimated robustness): {'; '.join(parts)}; {checks}."


def _wen_fit(df: pd.DataFrame) -> tuple[dict, dict[str, dict | None], str]:
    """Wen's width-sweep diagnostic (bounds.wen2020.evaluate_sweep) on the train-logged min_t ‖∇L‖ and (W, V) movement."""
    value = lambda r, col: None if pd.isna(r.get(col)) else float(r[col])  # noqa: E731 - unmeasured terms are left out of the fit
    rows = [{"width": float(r["config.encoder.width"]), "terms": {"gradient_norm": value(r, "min_gradient_norm"), "weight_movement": value(r, "weight_movement")}, "run": r["run"]}
            for _, r in df.iterrows()]
    check = wen2020.evaluate_sweep(rows)
    fits: dict[str, dict | None] = {}
    for term in ("gradient_norm", "weight_movement"):
        fit = check.details["slopes"].get(term)
        if fit is not None:
            lx, ly = np.log(fit["widths"]), np.log(fit["values"])
            fit = dict(fit, intercept=float(ly.mean() - fit["slope"] * lx.mean()))  # the fitted line, to draw it
        fits[term] = fit
    return check.details, fits, check.details["assumptions"]["three_widths"]["note"]


def _slope_phrase(what: str, fit: dict | None, reason: str) -> str:
    if fit is None:
        return f"{what} has no fitted slope ({reason})"
    status = "interval below 0" if fit["significant"] else ("interval above 0, contradicting the prediction" if fit["contradicted"] else "interval includes 0")
    return f"{what} {'falls' if fit['slope'] < 0 else 'rises'} with width (log-log slope {fit['slope']:+.2f}, 95% CI [{fit['low']:+.2f}, {fit['high']:+.2f}], {status})"


def wen_verdict(fits: dict[str, dict | None], reason: str, widths: Sequence[float], steps: int, seeds: int) -> str:
    """Wen's predictions: min_t ‖∇L‖ and the relative weight movement both fall with width (negative log-log slopes)."""
    measured = [f for f in fits.values() if f is not None]
    falls = [f for f in measured if f["slope"] < 0]
    if len(measured) < len(fits):
        word = "Not testable"
    elif len(falls) == len(measured):
        word = "Reproduced" if all(f["significant"] for f in measured) else "Reproduced in direction, not significantly"
    else:
        word = _verdict_word(len(falls), len(measured))
    where = f"widths {', '.join(f'{w:g}' for w in widths)}, T={steps} full-batch GD steps, {seeds} seed{'s' if seeds != 1 else ''} per width"
    return (f"{word} on this sweep ({where}): Wen predicts both quantities fall as the width grows; "
            f"{_slope_phrase('min_t ‖grad L‖', fits['gradient_norm'], reason)}, and {_slope_phrase('the relative weight movement', fits['weight_movement'], reason)}.")


WEN_COLUMNS = {"train_loss": "final train loss", "min_gradient_norm": "min_t ‖grad L‖ (W,V)", "weight_movement": "‖(W,V)_T-(W,V)_0‖ / ‖(W,V)_0‖",
               "gradient_norm": "‖grad NT-Xent‖ query net, final", "knn_accuracy": "kNN acc"}


def wen_width(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """Wen (PAPERS §3): two-network full-batch GD over widths; gradient-norm curves and log-log slopes."""
    df = frames.wide(store_root, runs, protocols={"weight_movement": "(W_T,V_T)"})  # the two-network movement logged by training
    df = df.assign(width=df["config.encoder.width"].astype(float)).sort_values("width")
    m = frames.measurements(store_root, runs)
    width_of = df.set_index("run")["width"]
    logged = m[m["name"].isin(["train_gradient_norm", "train_weight_movement"])].assign(
        step=lambda d: d["protocol"].str.extract(r"step=(\d+)", expand=False).astype(int), width=lambda d: d["run"].map(width_of))
    per_step = logged.pivot_table(index=["run", "width", "step"], columns="name", values="value").reset_index()
    steps = int(per_step["step"].max()) + 1 if len(per_step) else 0
    df = df.reindex(columns=list(dict.fromkeys([*df.columns, "min_gradient_norm", "weight_movement"])))
    _, fits, reason = _wen_fit(df)
    specs = []
    if "train_gradient_norm" in per_step:
        specs.append(Panel("lines", per_step, "step", "train_gradient_norm", title="gradient norm during training", xlabel="step t", ylabel="‖grad_(W,V) L(W_t, V_t)‖", hue="width", logy=True))
    if "train_weight_movement" in per_step:
        specs.append(Panel("lines", per_step, "step", "train_weight_movement", title="weight movement during training", xlabel="step t", ylabel="‖(W,V)_t-(W,V)_0‖ / ‖(W,V)_0‖", hue="width"))
    specs += [Panel("loglog", df, "width", "min_gradient_norm", title="min over steps", xlabel="width multiplier", ylabel="min_t ‖grad L‖", fit=fits["gradient_norm"]),
              Panel("loglog", df, "width", "weight_movement", title="after T steps", xlabel="width multiplier", ylabel="relative weight movement", fit=fits["weight_movement"])]
    seeds = int(df.groupby("width").size().max()) if len(df) else 0
    protocol = _protocols(store_root, runs, ["min_gradient_norm", "weight_movement", "knn_accuracy"], {"weight_movement": "(W_T,V_T)"})
    fig = panels(specs, out_dir, "wen-width",
                 f"Two-network training (query and key ConvNets, Gaussian init, full-batch GD on fixed views) over widths {', '.join(f'{w:g}' for w in sorted(df['width'].unique()))}: "
                 f"gradient norm and weight movement per step, and their min / final values against width with the least-squares log-log slope and its 95% t-interval (bounds/wen2020.py). {protocol}.",
                 "Wen (2020): width sweep of two-network GD")
    slope_rows = [{"quantity": WEN_COLUMNS[col], "slope": f["slope"] if f else math.nan, "CI low": f["low"] if f else math.nan, "CI high": f["high"] if f else math.nan,
                   "n": f["n"] if f else 0, "predicted": "< 0", "interval": ("below 0" if f["significant"] else "above 0" if f["contradicted"] else "includes 0") if f else reason}
                  for col, f in (("min_gradient_norm", fits["gradient_norm"]), ("weight_movement", fits["weight_movement"]))]
    stored = frames.bound_checks(store_root, runs)
    stored = stored[stored["theorem"] == "wen2020.width_sweep"]
    if len(stored):  # the stored diagnostic (bounds_step), on the same logged minimum: a cross-check of this table
        details = stored.iloc[0]["details"]
        f = details.get("slopes", {}).get("gradient_norm")
        if f:
            source = details.get("gradient_norm_source", WEN_COLUMNS["gradient_norm"])
            slope_rows.append({"quantity": f"stored wen2020.width_sweep: {source}", "slope": f["slope"], "CI low": f["low"], "CI high": f["high"], "n": f["n"],
                               "predicted": "< 0", "interval": "below 0" if f["significant"] else "above 0" if f["contradicted"] else "includes 0"})
    per_run = df.assign(label=df["run"].map(labels))[["width", "label", *[c for c in WEN_COLUMNS if c in df]]].rename(columns=WEN_COLUMNS).reset_index(drop=True)
    if seeds > 1:  # one row per width, mean [interval] over its seeds; the per-seed rows beside the report
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_safe(per_run).to_csv(out_dir / "runs.csv", index=False)
        widths = [f"{w:g}" for w in sorted(df["width"].unique())]
        table = mean_table(df.assign(w=df["width"].map(lambda w: f"{w:g}")), "w", {c: WEN_COLUMNS[c] for c in WEN_COLUMNS if c in df}, widths,
                           accuracy=("knn_accuracy",), n_test=_test_size(df), split_per_seed=_split_per_seed(df)).rename(columns={"w": "width"})
        protocol += f". {_interval_note(df)} Per-seed rows: runs.csv"
    else:
        table = per_run
    verdict = wen_verdict(fits, reason, sorted(df["width"].unique()), steps, seeds)
    return _write(out_dir, "Wen (2020): width sweep of two-network training", verdict, table, [fig], command, protocol,
                  [("Log-log slopes against width (bounds/wen2020.py, diagnostic)", pd.DataFrame(slope_rows))])


CACR_COLUMNS = {"knn_accuracy": "kNN acc", "linear_accuracy": "linear acc", "alignment": "alignment", "uniformity": "uniformity", "mi_query_negative": "MI(query, negative)",
                "cacr_weight_distance_corr": "corr(w-, d)", "cacr_positive_weight_distance_corr": "corr(w+, d)", "cacr_same_class_weight_ratio": "w- on same-class negatives"}
CACR_ORDER = ["SimCLR", "CACR", "SimCLR imbalanced", "CACR imbalanced"]


def _cacr_variant(row: pd.Series) -> str:
    name = {"simclr": "SimCLR", "cacr": "CACR"}.get(row["config.method.name"], row["config.method.name"])
    return f"{name} imbalanced" if bool(row.get("config.data.imbalanced", False)) else name


def cacr_claims(variants: Sequence[str]) -> list[Claim]:
    """CACR's comparisons with SimCLR on each data set (PAPERS §4): better alignment, higher kNN and linear accuracy."""
    out = []
    for data, suffix in (("balanced", ""), ("imbalanced", " imbalanced")):
        c, s_ = f"CACR{suffix}", f"SimCLR{suffix}"
        if c in variants and s_ in variants:
            out += [Claim(f"{data}: CACR aligns positives better", "alignment", c, s_, "less"),
                    Claim(f"{data}: CACR beats SimCLR in kNN accuracy", "knn_accuracy", c, s_, "greater"),
                    Claim(f"{data}: CACR beats SimCLR in linear accuracy", "linear_accuracy", c, s_, "greater")]
    return out


def cacr_verdict(table: pd.DataFrame, checks: pd.DataFrame) -> str:
    """The paired claims, then the two claims no seed count decides here: the MI claim (not
    measurable while KSG's calibrated error exceeds the difference) and the hard-negative
    weights (by construction when they hold on the controls too)."""
    said = [f"{summary(table, 'paired claims')} {claims_sentence(table)}."] if not table.empty else ["No CACR run was paired with a SimCLR run on the same data."]
    if not checks.empty:
        said.append("Not counted above, because no seed count decides them here:")
    for claim, rows in checks.groupby("claim", sort=False):
        verdicts = rows["verdict"].value_counts().to_dict()
        reasons = sorted({r for r in rows["reason"] if r})
        said.append(f"{claim}: {', '.join(f'{k} on {v} pair{s_(v)}' for k, v in verdicts.items())}" + (f" ({reasons[0]})" if reasons else "") + ".")
    return " ".join(said)


def s_(n: int) -> str:
    return "s" if n != 1 else ""


_CACR_CLAIMS = {"cacr.alignment": "alignment lower", "cacr.mutual_information": "MI(query, CACR negative) lower", "cacr.hard_negative_weights": "corr(w-, d) < 0"}


def _cacr_claims(checks: pd.DataFrame, variant_of: pd.Series) -> pd.DataFrame:
    from clbounds.bounds.common import verdict

    rows = []
    for _, c in checks[checks["theorem"].isin(list(_CACR_CLAIMS))].iterrows():
        d = c["details"]
        if d.get("cacr_run") != c["run"]:
            continue  # stored under both runs of the pair: keep one copy
        data = "imbalanced" if str(variant_of.get(c["run"], "")).endswith("imbalanced") else "balanced"
        claim = d.get("claim", {})
        controls = "; ".join(f"{name} {'holds' if v.get('holds') else 'fails' if v.get('holds') is False else 'n/a'}" for name, v in (d.get("controls") or {}).items())
        rows.append({"data": data, "claim": _CACR_CLAIMS[c["theorem"]], "CACR": claim.get("cacr", math.nan), "SimCLR": claim.get("simclr", math.nan),
                     "holds": c["holds"], "verdict": verdict(c.to_dict()), "control": controls, "reason": d.get("reason", "")})
    return pd.DataFrame(rows, columns=["data", "claim", "CACR", "SimCLR", "holds", "verdict", "control", "reason"])


def cacr(store_root, runs, labels, out_dir: Path, command: str) -> Path:
    """CACR (PAPERS §4) against SimCLR on balanced and imbalanced data: weights vs distance, alignment, uniformity, claims."""
    df = frames.wide(store_root, runs)
    df["variant"] = df.apply(_cacr_variant, axis=1)
    df["data"] = df["variant"].map(lambda v: "imbalanced" if v.endswith("imbalanced") else "balanced")
    df["method"] = df["config.method.name"].map({"simclr": "SimCLR", "cacr": "CACR"})
    variants = sorted(set(df["variant"]))
    table = mean_table(df, "variant", CACR_COLUMNS, CACR_ORDER, accuracy=("knn_accuracy", "linear_accuracy"), n_test=_test_size(df), split_per_seed=_split_per_seed(df))
    tested = test_claims(df, "variant", cacr_claims(variants))
    checks = _cacr_claims(frames.bound_checks(store_root, runs), df.set_index("run")["variant"])
    checks = checks[checks["claim"] != _CACR_CLAIMS["cacr.alignment"]]  # alignment is tested across seeds above
    curves = []
    for kind in ("negative", "positive"):
        for k in range(64):
            dcol, wcol = f"cacr_{kind}_distance_bin{k}", f"cacr_{kind}_weight_bin{k}"
            if dcol not in df or wcol not in df:
                break
            curves.append(df[["variant", dcol, wcol]].rename(columns={dcol: "distance", wcol: "weight"}).assign(kind=kind, bin=k))
    specs = []
    if curves:
        curve = pd.concat(curves).groupby(["kind", "variant", "bin"], as_index=False)[["distance", "weight"]].mean()
        specs += [Panel("lines", curve[curve["kind"] == kind], "distance", "weight", title=f"{kind}s: weight vs distance", xlabel=f"||z - z{sign}||^2 (bin mean)",
                        ylabel=f"relative w{sign} (1 = uniform)", hue="variant") for kind, sign in (("negative", "-"), ("positive", "+"))]
    order = [m for m in ("SimCLR", "CACR") if m in set(df["method"])]
    specs += _bars(df, "method", {"alignment": "alignment E||f(x1)-f(x2)||^2", "uniformity": "uniformity (t=2)", "knn_accuracy": "kNN acc"}, order, hue="data")
    protocol = _protocols(store_root, runs, ["knn_accuracy", "alignment", "uniformity", "mi_query_negative", "cacr_weight_distance_corr"])
    fig = panels(specs, out_dir, "cacr",
                 f"CACR against SimCLR on balanced and imbalanced (class i keeps (i+1)/K) data: CACR's repulsion (w-) and attraction (w+) weights against squared distance "
                 f"in 8 equal-count bins (for SimCLR runs, the weights CACR would put on that embedding), alignment, uniformity and kNN accuracy; {len(df)} runs. {protocol}.",
                 "CACR against SimCLR", columns=3 if len(specs) > 4 else None)
    return _write(out_dir, "CACR (Zheng et al. 2023) against SimCLR", cacr_verdict(tested, checks), table, [fig], command, f"{protocol}. {_interval_note(df)}",
                  [("Claims, paired across seeds", tested), ("Per-seed claim checks (bounds/cacr.py, stored by the bounds step)", checks)])
