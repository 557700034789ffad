"""The report a researcher reads in a minute: a summary per theorem, verdicts in words and
colour, statements that render, tables that fit; checked on a small fabricated store, and in
a real headless browser when one is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clbounds.bounds.common import VERDICTS
from clbounds.bounds.display import DISPLAY, display
from clbounds.experiments.pipeline.bounds_step import evaluate_bounds, theorem_registry, theorem_statements
from clbounds.experiments.config import config_from_dict
from clbounds.experiments.store.db import Store
from clbounds.figures.verify_report import make_report

from conftest import huang_terms, tiny_raw


def _fabricated_store(root: Path) -> tuple[Store, dict[str, str]]:
    """Three runs of Huang terms: one with a tight, informative Theorem 2, one vacuous, one violated."""
    store, labels = Store(root), {}
    variants = {
        "tight": {"misalignment_rate": 0.05, "alignment": 0.01},
        "vacuous": {"sigma": 0.2, "misalignment_rate": 0.9},
        "violated": {"misalignment_rate": 0.9, "alignment": 0.001},
    }
    for i, (label, over) in enumerate(variants.items()):
        cfg = config_from_dict(tiny_raw(seed=i))
        store.upsert_run(cfg.run_id(), cfg.to_dict() | {"name": label}, status="done")
        terms = huang_terms(**over)
        controls = {f"random_init/{k}": v for k, v in huang_terms(misalignment_rate=0.95, alignment=0.002, nearest_center_error=0.9).items()}
        store.add_measurements(cfg.run_id(), [(k, float(v), "fabricated") for k, v in (terms | controls).items()] + [("knn_accuracy", 0.8 + 0.05 * i, "knn k=20")])
        evaluate_bounds(store.get_run(cfg.run_id()), store)
        labels[cfg.run_id()] = label
    return store, labels


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store, labels = _fabricated_store(root / "store")
    md, html, _ = make_report(store.root, list(labels), labels, root / "out", "test report", ["clbounds verify --preset test"], theorem_statements())
    return md.read_text(), html.read_text(), html


def test_the_report_opens_with_a_summary_per_theorem(report):
    md, html, _ = report
    summary = md[md.index("### By theorem"):md.index("### Every run")]
    rows = [line for line in summary.splitlines() if line.startswith("| huang2023.") or line.startswith("| arora2019.")]
    theorems = {line.split("|")[1].strip() for line in rows}
    assert "huang2023.theorem1" in theorems and "huang2023.theorem2" in theorems and len(rows) == len(theorems)  # one row per theorem
    header = summary.splitlines()[2]
    assert all(v in header for v in ("runs", "holds", *VERDICTS, "tightness"))
    t2 = next(line for line in rows if line.split("|")[1].strip() == "huang2023.theorem2")
    assert t2.split("|")[3].strip() == "3"  # three runs
    assert re.search(r"\*\*\d+ of \d+ checks are informative and non-vacuous;", md)


def test_verdicts_have_words_and_colours_and_per_run_detail_folds(report):
    _, html, _ = report
    assert "<details><summary>Every run" in html
    for cls in ("v-weak", "v-bad"):
        assert f"class='{cls}'" in html
    assert "<td class='v-weak'>vacuous</td>" in html and "<td class='v-bad'>violated</td>" in html
    assert html.count("<div class='scroll'>") >= 3  # wide tables scroll instead of overflowing


def test_statements_render_by_hand_and_their_unicode_has_no_latex():
    statements = theorem_statements()
    assert [s.theorem for s in statements] == [name for name, _, _ in theorem_registry()]
    for s in statements:
        assert display(s.theorem) is not None, f"{s.theorem} has no hand-written statement"
        assert not re.search(r"\\[a-zA-Z]+", s.pretty), f"{s.theorem}: raw LaTeX in its Unicode form: {s.pretty}"
        assert s.png, f"{s.theorem}: matplotlib's mathtext could not typeset {s.latex}"
    centre = next(s for s in statements if "centre condition" in s.theorem)
    assert "ρ_max = 2(1 − σ) + R_ε/min_ℓ p_ℓ" in centre.pretty and r"\rho_{max}" in centre.latex  # the structure sympy expanded away
    assert set(DISPLAY) >= {name.split("[")[0] for name, _, _ in theorem_registry()}


OVERFLOW_PROBE = """<script>
window.addEventListener('load', () => {
  const width = window.innerWidth;
  let bad = [];
  document.querySelectorAll('table').forEach((t, i) => {
    const box = (t.closest('.scroll') || t).getBoundingClientRect();
    if (box.right > width + 1) bad.push(i);
  });
  const headline = document.querySelector('.headline').getBoundingClientRect();
  document.body.setAttribute('data-overflow', bad.length + ':' + width);
  document.body.setAttribute('data-headline', Math.round(headline.bottom) + ':' + window.innerHeight);
});
</script>"""


def _chromium() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt install chromium to run this check)")
def test_no_table_is_clipped_at_1280_px_and_the_headline_is_on_the_first_screen_in_a_real_browser(report, tmp_path):
    _, html, _ = report
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", OVERFLOW_PROBE + "</body>"))
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
            "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    found = re.search(r'data-overflow="(\d+):(\d+)"', out.stdout)
    assert found, out.stderr[-2000:]
    assert found.group(1) == "0" and int(found.group(2)) >= 1200, found.group(0)
    bottom, height = map(int, re.search(r'data-headline="(-?\d+):(\d+)"', out.stdout).groups())
    assert 0 < bottom <= height  # the verdict is read before any scrolling


def headline_counts(md: str) -> dict[str, int]:
    """The verdict classes the report's bold headline counts."""
    line = re.search(r"^\*\*(\d+) of (\d+) checks are informative and non-vacuous; (.*)\.\*\*$", md, re.M)
    counts = {"informative": int(line.group(1)), "total": int(line.group(2))}
    for part in line.group(3).split(", "):
        n, _, cls = part.partition(" ")
        counts[cls.replace("hold by construction", "by construction")] = int(n)
    return counts


def findings_count(md: str) -> int:
    section = md[md.index("## Findings"):]
    section = section[:section.index("\n## ", 1)]
    section = section.split("### Hypothesis not met")[0]
    return sum(line.startswith("- ") for line in section.splitlines())


def test_the_report_leads_with_the_verdict_then_the_runs_then_the_evidence(report):
    md, html, _ = report
    order = [md.index(h) for h in ("## Verdict", "## Runs", "## Findings", "## Bounds", "## Rank correlation", "## Theorem statements", "## Figures", "## Regenerate")]
    assert order == sorted(order)
    assert md.splitlines()[2].startswith("Contents: [Verdict](#verdict)")  # a small table of contents
    verdict = md[md.index("## Verdict"):md.index("## Runs")]
    assert "- 1 check is violated beyond its margin with its hypotheses met (Findings)." in verdict
    runs = md[md.index("## Runs"):md.index("## Findings")]
    assert "| run | setting | method | kNN acc |" in runs and runs.count("\n| ") == 4  # header + three runs
    assert html.index("class='headline'") < html.index("<h2 id='runs'>") < html.index("<h2 id='bounds'>")
    assert "<nav class='toc'>" in html and "<a href='#findings'>" in html


def test_findings_are_counted_as_the_headline_counts_them_and_grid_checks_once(tmp_path):
    from clbounds.bounds.common import make_check

    store, labels = _fabricated_store(tmp_path / "store")
    runs = list(labels)
    # a grid-level violation (hypotheses met) stored on two runs, and a failure with a hypothesis not met
    sweep = make_check("wen2020.gradient_norm_vs_width", None, 0.0, 0.5, "diagnostic", {}, {})
    sweep.details["grid_runs"] = sorted(runs[:2])
    unmet = make_check("huang2023.theorem1[projection]", None, 0.1, 0.5, "paper", {"center_condition": {"met": False, "margin": -3.0}}, {})
    for run in runs[:2]:
        store.add_bound_checks(run, [sweep.to_row()])
    store.add_bound_checks(runs[2], [unmet.to_row()])
    md, _, _ = make_report(store.root, runs, labels, tmp_path / "out", "t", ["clbounds verify --preset test"])
    text = md.read_text()
    counts = headline_counts(text)
    assert counts.get("violated", 0) == findings_count(text) == 2  # the fabricated violated run, and the sweep once
    assert text.count("wen2020.gradient_norm_vs_width is violated over runs") == 1
    not_met = text[text.index("### Hypothesis not met"):text.index("## Bounds")]
    assert "huang2023.theorem1[projection] on run" in not_met and "not met: center_condition" in not_met
    assert "is violated" not in not_met  # a failure whose hypothesis is not met is never called a violation


def test_a_single_run_report_has_no_grid_statistics(tmp_path):
    store, labels = _fabricated_store(tmp_path / "store")
    run = next(iter(labels))
    md, html, figures = make_report(store.root, [run], {run: labels[run]}, tmp_path / "out", "one", ["clbounds --store s report " + run])
    text = md.read_text()
    assert "## Rank correlation" not in text and "resolves nothing" not in text and "τ = +nan" not in text and "()" not in text
    assert not any(f.name.startswith("terms-vs-") for f in figures)
    assert not (tmp_path / "out" / "correlations.csv").exists()
    assert "## Verdict" in text and "## Runs" in text and "1 run (" in text


def test_reproduce_prints_the_verdict_its_report_leads_with(tmp_path):
    from clbounds.figures.reproductions import report_verdict

    (tmp_path / "a.md").write_text("# T\n\n**Verdict.** Reproduced at 5 seeds: x.\n\nProtocol: p\n")
    (tmp_path / "b.md").write_text("# T\n\nContents: …\n\n## Verdict\n\n**0 of 3 checks are informative and non-vacuous; 3 vacuous.**\n")
    assert report_verdict(tmp_path / "a.md") == "Reproduced at 5 seeds: x."
    assert report_verdict(tmp_path / "b.md") == "0 of 3 checks are informative and non-vacuous; 3 vacuous."
