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


def _is_count(column: str) -> bool:
    return column in ("n", "runs", "holds", "seeds") or column.startswith(("n (", "settings")) or column in _VERDICT_CLASS


def _is_p_value(column: str) -> bool:
    return column == "p" or column.startswith(("p (", "p-value", "p ")) or column.endswith(" p")


def _is_correlation(column: str) -> bool:
    return "tau" in column or "τ" in column or column.lower().startswith("psi")


def _is_fraction(column: str) -> bool:
    return "sign agreement" in column


def cell_text(column: str, v) -> str:
    """One table cell, formatted for its column: counts as integers, p-values as p-values
    (scientific below 10^-3), correlations signed with three decimals, other numbers with four
    significant digits, booleans as yes/no, missing as empty."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) or hasattr(v, "dtype"):
        try:
            x = float(v)
        except (TypeError, ValueError):
            return str(v)
        if x != x:
            return ""
        if _is_count(column) and x == int(x):
            return f"{int(x)}"
        if _is_p_value(column):
            return f"{x:.2g}" if x >= 0.001 or x == 0 else f"{x:.1e}"
        if _is_correlation(column):
            return f"{x:+.3f}"
        if _is_fraction(column):
            return f"{x:.3f}"
        return f"{int(x)}" if isinstance(v, int) else f"{x:.4g}"
    return str(v)


def table_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell of ``df`` as text (:func:`cell_text`), the same in report.md and report.html."""
    if df.empty:
        return df
    return pd.DataFrame({c: [cell_text(str(c), v) for v in df[c].tolist()] for c in df.columns}, columns=df.columns)


def _markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cells = table_cells(df)
    cols = list(df.columns)
    lines = ["| " + " | ".join(markdown_text(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(markdown_text(v) for v in row) + " |" for row in cells.itertuples(index=False)]  # names are data: no markup, no forged rows
    return "\n".join(lines) + "\n"


_VERDICT_CLASS = {"informative": "ok", "vacuous": "weak", "by construction": "weak", "hypothesis not met": "weak", "no control": "plain",
                  "not resolved": "plain", "violated": "bad", "not evaluated": "plain", "reproduced": "ok", "contradicted": "bad"}


def _command_line(command: str) -> str:
    """A command inside a Markdown code block: one line, and it cannot close the block."""
    return " ".join(str(command).split()).replace(chr(96) * 3, chr(39) * 3)


def _html_table(df: pd.DataFrame) -> str:
    """A table that scrolls inside its box instead of overflowing, cells formatted per column
    (:func:`cell_text`), verdict cells coloured and worded."""
    html_ = table_cells(df).to_html(index=False, na_rep="", border=0, classes="t")
    for word, cls in _VERDICT_CLASS.items():
        html_ = html_.replace(f"<td>{word}</td>", f"<td class='v-{cls}'>{word}</td>")
    html_ = re.sub(r"<td>(not resolv(?:ed|able) at \d+ seeds?[^<]*)</td>", r"<td class='v-plain'>\1</td>", html_)
    return f"<div class='scroll'>{html_}</div>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _anchor(heading: str) -> str:
    """The anchor GitHub and our HTML give a heading: lower case, words joined by hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")


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
    verdict_lines: Sequence[str] = (),
    run_table: pd.DataFrame | None = None,
    unmet: Sequence[str] = (),
    methods: str = "",
) -> tuple[Path, Path]:
    """Writes ``report.md`` and ``report.html`` into ``out_dir`` and returns their paths.

    The order is the reader's: the verdict (``bound_headline`` and one sentence per verdict
    class, ``verdict_lines``), the runs (``run_table``), the findings (violations, counted as
    the headline counts them; failures with a hypothesis not met, ``unmet``, apart), then the
    evidence: ``sections`` (e.g. a multi-seed grid's means and paired comparisons), the bounds
    (``theorem_table`` by theorem, ``bound_table`` per run), the correlation table with its
    ``methods`` (a grid only: empty for one run), the statements and the figures.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    has_correlations = not correlation_table.empty
    toc = ["Verdict", *(["Runs"] if run_table is not None and not run_table.empty else []), "Findings",
           *[heading for heading, _, _ in sections], "Bounds", *(["Rank correlation of each term with error"] if has_correlations else []),
           *(["Theorem statements"] if statements else []), *(["Figures"] if figures else []), *(["Regenerate"] if commands else [])]
    verdict_text = (f"{bound_headline}." if bound_headline else "No bound was evaluated on these runs.")
    finding_note = (f"{len(findings)} violated beyond {'its' if len(findings) == 1 else 'their'} margin with hypotheses met"
                    + (f"; {len(unmet)} more fail with a hypothesis not met, which are not violations" if unmet else "") + ".")
    m = markdown_text
    md = [f"# {m(title)}\n", "Contents: " + " · ".join(f"[{h}](#{_anchor(h)})" for h in toc) + "\n", "## Verdict\n", f"**{m(verdict_text)}**\n",
          *[f"- {m(s)}" for s in verdict_lines], "", m(intro) + "\n"]
    if run_table is not None and not run_table.empty:
        md += ["## Runs\n", _markdown_table(run_table)]
    md += ["## Findings\n", m(finding_note) + "\n", *[f"- {m(f)}" for f in findings], ""]
    if unmet:
        md += ["### Hypothesis not met (not violations)\n", *[f"- {m(f)}" for f in unmet], ""]
    for heading, text, table in sections:
        md += [f"## {m(heading)}\n", *([m(text) + "\n"] if text else []), _markdown_table(table)]
    md += ["## Bounds\n", "A check is *vacuous* when its bound is at or above the trivial ceiling of the quantity it bounds (what a trivial predictor attains), "
           "and holds *by construction* when it also holds on a control without learned structure that testifies (random initialisation, shuffled labels, random embeddings).\n"]
    if theorem_table is not None:
        md += ["### By theorem\n", _markdown_table(theorem_table), "### Every run\n"]
    md += [_markdown_table(bound_table)]
    if has_correlations:
        md += ["## Rank correlation of each term with error\n", *([m(methods) + "\n"] if methods else []), _markdown_table(correlation_table)]
    if statements:
        md += ["## Theorem statements\n"]
        for s in statements:
            md += [f"**{s.theorem}** ({s.label})\n", f"$$ {s.latex} $$\n", "```", s.pretty, "```\n"]
    if figures:
        md += ["## Figures\n"]
    for f in figures:
        md += [f"### {m(f.name)}\n", f"![{m(f.name)}]({f.png.relative_to(out_dir) if f.png.is_relative_to(out_dir) else f.png})\n", f"{m(f.caption)}\n"]
        if f.command:
            md += [f"Regenerate: `{_command_line(f.command).replace(chr(96), chr(39))}`\n"]
    if commands:
        md += ["## Regenerate\n", "```bash", *[_command_line(c) for c in commands], "```\n"]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md))

    e = html.escape

    def h2(heading: str) -> str:
        return f"<h2 id='{_anchor(heading)}'>{e(heading)}</h2>"

    body = [f"<h1>{e(title)}</h1>", "<nav class='toc'>" + " · ".join(f"<a href='#{_anchor(h)}'>{e(h)}</a>" for h in toc) + "</nav>",
            h2("Verdict"), f"<p class='headline'><b>{e(verdict_text)}</b></p>",
            "<ul class='verdicts'>" + "".join(f"<li>{e(s)}</li>" for s in verdict_lines) + "</ul>" if verdict_lines else "",
            f"<p class='who'>{e(intro)}</p>"]
    if run_table is not None and not run_table.empty:
        body += [h2("Runs"), _html_table(run_table)]
    body += [h2("Findings"), f"<p>{e(finding_note)}</p>"]
    if findings:
        body += ["<ul>", *[f"<li>{e(f)}</li>" for f in findings], "</ul>"]
    if unmet:
        body += ["<details><summary>Hypothesis not met (not violations): " + str(len(unmet)) + "</summary><ul>", *[f"<li>{e(f)}</li>" for f in unmet], "</ul></details>"]
    for heading, text, table in sections:
        body += [h2(heading), f"<p>{e(text)}</p>" if text else "", _html_table(table)]
    body += [h2("Bounds"), "<p>A check is <i>vacuous</i> when its bound is at or above the trivial ceiling of the quantity it bounds (what a trivial predictor attains), "
             "and holds <i>by construction</i> when it also holds on a control without learned structure that testifies.</p>"]
    if theorem_table is not None:
        body += ["<h3>By theorem</h3>", _html_table(theorem_table)]
    body += ["<details><summary>Every run (one row per run and theorem)</summary>" if theorem_table is not None else "",
             _html_table(bound_table),
             "</details>" if theorem_table is not None else ""]
    if has_correlations:
        body += [h2("Rank correlation of each term with error"), f"<p class='methods'>{e(methods)}</p>" if methods else "", _html_table(correlation_table)]
    if statements:
        body += [h2("Theorem statements")]
        for s in statements:
            img = f'<img alt="{e(s.latex)}" src="data:image/png;base64,{_b64(s.png)}">' if s.png else ""
            body += [f"<h3>{e(s.theorem)} <small>({e(s.label)})</small></h3>", img, f"<p class='stmt'>{e(s.pretty)}</p>",
                     f"<details><summary>LaTeX</summary><code>{e(s.latex)}</code><br>as evaluated (sympy): <code>{e(s.sympy_latex)}</code></details>"]
    if figures:
        body += [h2("Figures")]
    for f in figures:
        body += [f"<figure><img src=\"data:image/png;base64,{_b64(f.png.read_bytes())}\" alt=\"{e(f.name)}\"><figcaption><b>{e(f.name)}.</b> {e(f.caption)}" + (f"<br><code>{e(f.command)}</code>" if f.command else "") + "</figcaption></figure>"]
    if commands:
        body += [h2("Regenerate"), f"<pre>{e(chr(10).join(commands))}</pre>"]
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
             ".toc{font-size:13px;color:#555;margin:.3em 0 1em}.headline{font-size:17px;margin:.4em 0}.verdicts{margin-top:.2em}.who,.methods{font-size:13px;color:#444}"
             ".scroll{max-width:100%;overflow-x:auto}table.t{border-collapse:collapse;font-size:13px}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top;max-width:28em;white-space:normal;overflow-wrap:break-word}"
             ".v-ok{background:#dff3e0;color:#135c1a;font-weight:600}.v-weak{background:#f3f3f3;color:#666}.v-bad{background:#fbe0e0;color:#9b1010;font-weight:700}"
             ".v-plain{color:#555}.stmt{font-size:15px}figure{margin:2em 0}figure img{max-width:100%}figcaption{font-size:13px;color:#444}"
             "pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'><title>{e(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return md_path, html_path
