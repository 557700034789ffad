"""One function per figure kind. Each takes tables read from the store, draws, writes PNG
and PDF, and returns a :class:`Figure` whose caption says which runs, how many seeds and
which protocol."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .correlation import kendall_tau  # noqa: E402


@dataclass
class Figure:
    """A written figure: its files, its caption and the command that regenerates it."""

    name: str
    paths: list[Path]
    caption: str
    command: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def png(self) -> Path:
        return next(p for p in self.paths if p.suffix == ".png")


def house_style() -> None:
    # text.parse_math off: labels carry run names, which are data, never mathtext (a "$" in a
    # label made every plot of the report fail); statements opt in where they are typeset.
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15,
                  rc={"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold", "text.parse_math": False})


def _save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


def _grid(n: int, width: float = 3.2, height: float = 2.9) -> tuple[plt.Figure, np.ndarray]:
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def readable(column: str) -> str:
    """A column name as a legend or axis title: 'config.method.name' → 'method'.

    Example:
        >>> readable("config.method.name"), readable("config.encoder.width")
        ('method', 'encoder width')
    """
    parts = [p for p in column.split(".") if p != "config"]
    if parts and parts[-1] == "name" and len(parts) > 1:
        parts = parts[:-1]
    return " ".join(p.replace("_", " ") for p in parts)


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Positive values whose max/min exceeds 10^decades: a case for a log axis.

    Example:
        >>> spans_decades([0.01, 0.02, 5.0]), spans_decades([1.0, 2.0, 3.0])
        (True, False)
    """
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return bool(v.size >= 2 and (v > 0).all() and v.max() / v.min() > 10**decades)


def terms_vs_target(df: pd.DataFrame, terms: Sequence[str], target: str, target_label: str, out_dir: Path, name: str, caption: str, hue: str | None = None,
                    notes: dict[str, str] | None = None) -> Figure:
    """Small multiples: each term (x) against the target error (y) over the runs, Kendall τ in
    the title, or ``notes[term]`` (τ with its interval and the value beyond the loss, from the
    correlation table) where given."""
    house_style()
    terms = [t for t in terms if t in df and df[t].notna().any()]
    fig, axes = _grid(len(terms))
    cols = min(4, len(terms))
    for i, (ax, term) in enumerate(zip(axes, terms)):
        sns.scatterplot(data=df, x=term, y=target, hue=hue, ax=ax, s=45, legend=i == 0 and hue is not None)
        ax.set_title((notes or {}).get(term) or f"τ = {kendall_tau(df[term], df[target]):+.2f}", fontsize=9)
        ax.set_xlabel(term.replace("_", " "))
        if spans_decades(df[term]):  # one outlier must not squash the others
            ax.set_xscale("log")
            ax.set_xlabel(term.replace("_", " ") + " (log)")
        ax.set_ylabel(target_label if i % cols == 0 else "")
    if hue is not None and len(terms):
        legend = axes[0].get_legend()
        if legend is not None:
            legend.set_title(readable(hue))
    fig.suptitle(f"Terms against {target_label} (Kendall τ over runs" + (", 95% interval; partial τ given the loss, Holm p)" if notes else ")"))
    return Figure(name, _save(fig, out_dir, name), caption)


def bound_tightness(checks: pd.DataFrame, out_dir: Path, name: str, caption: str) -> Figure:
    """Bound (y) against the measured quantity (x), log axes, with y = x: a bound holds above the line.

    Colour: the paper (bounds/ module); marker: the verdict (bounds.common.verdict), so vacuous
    and by-construction checks are told apart from informative ones; violations with the
    hypotheses met (findings) are drawn large, in red, on top.
    """
    from clbounds.bounds.common import VERDICTS, verdict

    house_style()
    ok = checks.dropna(subset=["bound", "measured"])
    ok = ok[(ok["bound"] > 0) & (ok["measured"] > 0)]
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    if not ok.empty:
        ok = ok.assign(paper=ok["theorem"].str.split(".").str[0], verdict=[verdict(r) for r in ok.to_dict("records")])
        markers = dict(zip(VERDICTS, ["o", "s", "D", "v", "P", "^", "X", "."]))
        order = [v for v in VERDICTS if v in set(ok["verdict"])]
        sns.scatterplot(data=ok, x="measured", y="bound", hue="paper", style="verdict", style_order=order, markers={v: markers[v] for v in order}, s=60, alpha=0.85, ax=ax)
        bad = ok[ok["verdict"] == "violated"]  # a finding: hypotheses met, bound below the measurement
        if not bad.empty:
            ax.scatter(bad["measured"], bad["bound"], s=220, marker="X", color="red", edgecolor="black", zorder=5, label="violated, hypotheses met")
        lo = min(ok["measured"].min(), ok["bound"].min()) / 2
        hi = max(ok["measured"].max(), ok["bound"].max()) * 2
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="bound = measured")
        ax.set_xlim(lo, hi), ax.set_ylim(lo, hi)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), title="paper / verdict", title_fontsize=8)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("measured quantity (error, probability, inner product or loss, as the theorem states)")
    ax.set_ylabel("bound")
    ax.set_title("Bound against measurement (above the line: holds)")
    return Figure(name, _save(fig, out_dir, name), caption)


def ordered_series(df: pd.DataFrame, x: str, series: dict[str, str], out_dir: Path, name: str, caption: str, xlabel: str, ylabel: str, order: Sequence | None = None,
                   title: str = "") -> Figure:
    """Several quantities over one categorical or ordered axis (e.g. error and 1−σ per augmentation set)."""
    house_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    order = list(order) if order is not None else list(df[x].drop_duplicates())
    for col, label in series.items():
        if col not in df:
            continue
        stats = df.groupby(x)[col].agg(["mean", "std", "count"]).reindex(order)
        ax.errorbar(range(len(order)), stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(order)), [str(o) for o in order])
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend()
    return Figure(name, _save(fig, out_dir, name), caption)


def loglog_scatter(df: pd.DataFrame, x: str, ys: dict[str, str], out_dir: Path, name: str, caption: str, xlabel: str, fits: dict[str, dict] | None = None) -> Figure:
    """Quantities against x on log-log axes, with fitted power laws when given ({col: {slope, intercept}})."""
    house_style()
    fig, axes = _grid(len(ys), width=3.8, height=3.3)
    for ax, (col, label) in zip(axes, ys.items()):
        ax.scatter(df[x], df[col], s=40)
        fit = (fits or {}).get(col)
        if fit:
            xs = np.geomspace(df[x].min(), df[x].max(), 50)
            ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], ls="--", color="C1", label=f"slope {fit['slope']:+.2f} [{fit['low']:+.2f}, {fit['high']:+.2f}]")
            ax.legend(fontsize=8)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel(xlabel), ax.set_ylabel(label)
    return Figure(name, _save(fig, out_dir, name), caption)


def curves(df: pd.DataFrame, x: str, y: str, hue: str, out_dir: Path, name: str, caption: str, xlabel: str, ylabel: str, logy: bool = True) -> Figure:
    """Per-run curves (e.g. gradient norm against step), one line per value of ``hue``."""
    house_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=df, x=x, y=y, hue=hue, ax=ax, palette="viridis", legend="full")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    return Figure(name, _save(fig, out_dir, name), caption)


@dataclass
class Panel:
    """One axes of a :func:`panels` figure.

    ``kind``: "bars" (mean ± sd of ``y`` per ``x``, split by ``hue``, each bar labelled with
    its value), "lines" (``y`` against ``x``, one line per value of ``hue``) or "loglog"
    (``y`` against ``x`` on log-log axes, with the power law ``fit`` =
    {slope, intercept, low, high} drawn when given; natural-log intercept).
    """

    kind: str
    data: pd.DataFrame
    x: str
    y: str
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    hue: str | None = None
    order: Sequence | None = None
    logy: bool = False
    fit: dict | None = None


def _draw_panel(ax: plt.Axes, p: Panel) -> None:
    if p.kind == "bars":
        sns.barplot(data=p.data, x=p.x, y=p.y, hue=p.hue, order=p.order, errorbar="sd", capsize=0.1, ax=ax)
        for container in ax.containers:
            if hasattr(container, "datavalues"):
                ax.bar_label(container, fmt="%.3g", fontsize=7, padding=2)
        ax.tick_params(axis="x", labelrotation=25)
        ax.margins(y=0.15)
    elif p.kind == "lines":
        numeric = p.hue is not None and pd.api.types.is_numeric_dtype(p.data[p.hue])
        sns.lineplot(data=p.data, x=p.x, y=p.y, hue=p.hue, ax=ax, palette="viridis" if numeric else None, marker="o", markersize=4, legend="full" if p.hue else False)
    elif p.kind == "loglog":
        ax.scatter(p.data[p.x], p.data[p.y], s=40)
        if p.fit:
            xs = np.geomspace(p.data[p.x].min(), p.data[p.x].max(), 50)
            ax.plot(xs, np.exp(p.fit["intercept"]) * xs ** p.fit["slope"], ls="--", color="C1",
                    label=f"slope {p.fit['slope']:+.2f} [{p.fit['low']:+.2f}, {p.fit['high']:+.2f}]")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(p.data[p.x].dropna().unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # the measured x values, not crowded log minor ticks
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    else:
        raise ValueError(f"unknown panel kind {p.kind!r}; choose bars, lines or loglog")
    if p.logy and p.kind != "loglog":
        ax.set_yscale("log")
    legend = ax.get_legend()
    if legend is not None and p.hue:
        legend.set_title(readable(p.hue))
        for text in legend.get_texts():
            text.set_fontsize(7)
    ax.set_title(p.title, fontsize=10)
    ax.set_xlabel(p.xlabel or p.x.replace("_", " "))
    ax.set_ylabel(p.ylabel or p.y.replace("_", " "))


def panels(specs: Sequence[Panel], out_dir: Path, name: str, caption: str, title: str = "", columns: int | None = None) -> Figure:
    """Small multiples of mixed kinds (bars, curves, log-log fits) in one figure, e.g. the
    accuracy, sharpness and shift of each method variant side by side. Bar panels that share
    a hue show its legend once, beside the first of them."""
    house_style()
    cols = columns or min(4, len(specs))
    fig, axes = plt.subplots(math.ceil(len(specs) / cols), cols, figsize=(3.7 * cols, 3.2 * math.ceil(len(specs) / cols)), squeeze=False, layout="constrained")
    for ax in axes.flat[len(specs):]:
        ax.set_visible(False)
    legend_shown: set[str] = set()
    for ax, p in zip(axes.flat, specs):
        _draw_panel(ax, p)
        legend = ax.get_legend()
        if p.kind == "bars" and p.hue and legend is not None:
            if p.hue in legend_shown:
                legend.remove()
            else:
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title_fontsize=8, frameon=False)
                legend_shown.add(p.hue)
    if title:
        fig.suptitle(title)
    return Figure(name, _save(fig, out_dir, name), caption)


def embedding_maps(maps: dict[str, pd.DataFrame], out_dir: Path, name: str, caption: str) -> Figure:
    """One t-SNE map per run (columns x, y, label), points coloured by class."""
    house_style()
    fig, axes = _grid(len(maps), width=2.6, height=2.5)
    for ax, (label, df) in zip(axes, maps.items()):
        ax.scatter(df["x"], df["y"], c=df["label"], cmap="tab10", s=6, linewidths=0)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Test embeddings per run (t-SNE of normalised features, colour = class)")
    return Figure(name, _save(fig, out_dir, name), caption)
