"""The report: Markdown plus a self-contained HTML page (images embedded, nothing fetched).

Theorem statements are rendered from their sympy expressions: as an image through
matplotlib's mathtext when it can typeset the LaTeX, and always as sympy's Unicode pretty
print and the LaTeX source, so the page reads the same offline.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import sympy  # noqa: E402

from clbounds.experiments.names import markdown_text  # noqa: E402

from .plots import Figure  # noqa: E402


@dataclass
class Statement:
    theorem: str
    label: str  # "paper", "reconstructed" or "diagnostic"
    latex: str  # as the paper writes it (bounds/display.py), else sympy's
    pretty: str  # plain Unicode, no LaTeX commands
    png: bytes | None
    sympy_latex: str = ""  # the evaluated sympy statement, for the record


def render_statement(theorem: str, expr: sympy.Basic, label: str) -> Statement:
    """LaTeX, Unicode and (when mathtext can typeset it) a PNG of a statement: the hand-written
    form of bounds/display.py where there is one (sympy's printers expand and reorder), with
    sympy's LaTeX of the evaluated expression kept beside it."""
    from clbounds.bounds.display import display

    hand = display(theorem)
    sympy_latex = sympy.latex(expr)
    latex, pretty = hand if hand else (sympy_latex, sympy.pretty(expr, use_unicode=True, wrap_line=False))
    png = None
    try:
        fig = plt.figure(figsize=(0.01, 0.01))
        fig.text(0, 0, f"${latex}$", fontsize=13, parse_math=True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", pad_inches=0.05)
        png = buf.getvalue()
    except (ValueError, RuntimeError):  # mathtext covers a subset of LaTeX
        png = None
    finally:
        plt.close("all")
    return Statement(theorem, label, latex, pretty, png, sympy_latex)


def _markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)

    def fmt(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        return "" if v is None else markdown_text(v)  # names are data: no markup, no forged rows

    lines = ["| " + " | ".join(markdown_text(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_VERDICT_CLASS = {"informative": "ok", "vacuous": "weak", "by construction": "weak", "hypothesis not met": "weak", "no control": "plain",
                  "not resolved": "plain", "violated": "bad", "not evaluated": "plain", "reproduced": "ok", "contradicted": "bad"}


def _correlation_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The correlation table as text cells: counts as integers, p-values as p-values (0.0003,
    not "+0.000"), correlations signed with three decimals."""
    def cell(column: str, v):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            return "" if v is None or (isinstance(v, float) and v != v) else v
        if column == "n" or column.startswith(("n (", "settings")):
            return f"{int(v)}"
        if column == "p" or column.startswith("p ("):
            return f"{v:.2g}" if v >= 0.001 else f"{v:.1e}"
        return f"{v:+.3f}"

    return df.apply(lambda col: col.map(lambda v: cell(str(col.name), v))) if not df.empty else df


def _command_line(command: str) -> str:
    """A command inside a Markdown code block: one line, and it cannot close the block."""
    return " ".join(str(command).split()).replace(chr(96) * 3, chr(39) * 3)


def _html_table(df: pd.DataFrame, float_format) -> str:
    """A table that scrolls instead of overflowing, its verdict cells coloured and worded."""
    html_ = df.to_html(index=False, na_rep="", float_format=float_format, border=0, classes="t")
    for word, cls in _VERDICT_CLASS.items():
        html_ = html_.replace(f"<td>{word}</td>", f"<td class='v-{cls}'>{word}</td>")
    html_ = re.sub(r"<td>(not resolv(?:ed|able) at \d+ seeds?[^<]*)</td>", r"<td class='v-plain'>\1</td>", html_)
    return f"<div class='scroll'>{html_}</div>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_report(
    out_dir: Path,
    title: str,
    intro: str,
    bound_table: pd.DataFrame,
    correlation_table: pd.DataFrame,
    figures: Sequence[Figure],
    statements: Sequence[Statement] = (),
    findings: Sequence[str] = (),
    commands: Sequence[str] = (),
    bound_headline: str = "",
    theorem_table: pd.DataFrame | None = None,
    sections: Sequence[tuple[str, str, pd.DataFrame]] = (),
) -> tuple[Path, Path]:
    """Writes ``report.md`` and ``report.html`` into ``out_dir`` and returns their paths.

    ``bound_headline`` leads the bounds section (informative non-vacuous checks counted apart
    from vacuous and by-construction ones); ``theorem_table`` is the one-row-per-theorem
    summary shown before the per-run table; ``sections`` are (heading, text, table) shown
    before the bounds (e.g. the settings' means and paired comparisons of a multi-seed grid).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    m = markdown_text
    md = [f"# {m(title)}\n", m(intro) + "\n"]
    if commands:
        md += ["## Regenerate\n", "```bash", *[_command_line(c) for c in commands], "```\n"]
    for heading, text, table in sections:
        md += [f"## {m(heading)}\n", *([m(text) + "\n"] if text else []), _markdown_table(table)]
    md += ["## Bounds\n"]
    if bound_headline:
        md += [f"**{bound_headline}.** A check is *vacuous* when its bound is at or above the trivial ceiling of the quantity it bounds, "
               "and holds *by construction* when it also holds on every control without learned structure (random initialisation, shuffled labels, random embeddings).\n"]
    if theorem_table is not None:
        md += ["### By theorem\n", _markdown_table(theorem_table), "### Every run\n"]
    md += [_markdown_table(bound_table)]
    if findings:
        md += ["### Findings\n", *[f"- {m(f)}" for f in findings], ""]
    md += ["## Rank correlation of each term with error\n", _markdown_table(correlation_table)]
    if statements:
        md += ["## Theorem statements\n"]
        for s in statements:
            md += [f"**{s.theorem}** ({s.label})\n", f"$$ {s.latex} $$\n", "```", s.pretty, "```\n"]
    md += ["## Figures\n"]
    for f in figures:
        md += [f"### {m(f.name)}\n", f"![{m(f.name)}]({f.png.relative_to(out_dir) if f.png.is_relative_to(out_dir) else f.png})\n", f"{m(f.caption)}\n"]
        if f.command:
            md += [f"Regenerate: `{_command_line(f.command).replace(chr(96), chr(39))}`\n"]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))

    e = html.escape
    body = [f"<h1>{e(title)}</h1>", f"<p>{e(intro)}</p>"]
    if commands:
        body += ["<h2>Regenerate</h2>", f"<pre>{e(chr(10).join(commands))}</pre>"]
    for heading, text, table in sections:
        body += [f"<h2>{e(heading)}</h2>", f"<p>{e(text)}</p>" if text else "", _html_table(table, lambda v: f"{v:.4g}")]
    body += ["<h2>Bounds</h2>"]
    if bound_headline:
        body += [f"<p><b>{e(bound_headline)}.</b> A check is <i>vacuous</i> when its bound is at or above the trivial ceiling of the quantity it bounds, "
                 "and holds <i>by construction</i> when it also holds on every control without learned structure.</p>"]
    if theorem_table is not None:
        body += ["<h3>By theorem</h3>", _html_table(theorem_table, lambda v: f"{v:.4g}")]
    body += ["<details><summary>Every run (one row per run and theorem)</summary>" if theorem_table is not None else "",
             _html_table(bound_table, lambda v: f"{v:.4g}"),
             "</details>" if theorem_table is not None else ""]
    if findings:
        body += ["<h3>Findings</h3><ul>", *[f"<li>{e(f)}</li>" for f in findings], "</ul>"]
    body += ["<h2>Rank correlation of each term with error</h2>", _html_table(_correlation_cells(correlation_table), lambda v: f"{v:+.3f}")]
    if statements:
        body += ["<h2>Theorem statements</h2>"]
        for s in statements:
            img = f'<img alt="{e(s.latex)}" src="data:image/png;base64,{_b64(s.png)}">' if s.png else ""
            body += [f"<h3>{e(s.theorem)} <small>({e(s.label)})</small></h3>", img, f"<p class='stmt'>{e(s.pretty)}</p>",
                     f"<details><summary>LaTeX</summary><code>{e(s.latex)}</code><br>as evaluated (sympy): <code>{e(s.sympy_latex)}</code></details>"]
    body += ["<h2>Figures</h2>"]
    for f in figures:
        body += [f"<figure><img src=\"data:image/png;base64,{_b64(f.png.read_bytes())}\" alt=\"{e(f.name)}\"><figcaption><b>{e(f.name)}.</b> {e(f.caption)}" + (f"<br><code>{e(f.command)}</code>" if f.command else "") + "</figcaption></figure>"]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             ".scroll{max-width:100%;overflow-x:auto}table.t{border-collapse:collapse;font-size:13px}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
             ".v-ok{background:#dff3e0;color:#135c1a;font-weight:600}.v-weak{background:#f3f3f3;color:#666}.v-bad{background:#fbe0e0;color:#9b1010;font-weight:700}"
             ".v-plain{color:#555}.stmt{font-size:15px}figure{margin:2em 0}figure img{max-width:100%}figcaption{font-size:13px;color:#444}"
             "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return md_path, html_path
