"""Figures and the report, on a small fabricated store (no training)."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import sympy

from clbounds.experiments.config import config_from_dict
from clbounds.experiments.store.db import Store
from clbounds.figures import frames
from clbounds.figures.correlation import correlation_table, granulated_kendall, kendall_tau
from clbounds.figures.plots import bound_tightness, curves, loglog_scatter, ordered_series, terms_vs_target
from clbounds.figures.report import build_report, render_statement
from clbounds.figures.verify_report import make_report, varying_axes

from conftest import tiny_raw

KNN = "knn k=20 t=0.1 cosine-weighted offline final-epoch test"


@pytest.fixture
def fabricated(tmp_path):
    """Six runs over two axes (colour strength x width) with terms that track the error."""
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(0)
    runs, labels = [], {}
    for i, (color, width) in enumerate([(0.25, 0.5), (0.5, 0.5), (1.0, 0.5), (0.5, 0.25), (0.5, 1.0), (1.0, 1.0)]):
        cfg = config_from_dict(tiny_raw(color_strength=color, encoder__width=width))
        store.upsert_run(cfg.run_id(), cfg.to_dict(), status="done")
        err = 0.3 - 0.1 * color - 0.05 * width + 0.001 * i
        store.add_measurements(cfg.run_id(), [
            ("knn_accuracy", 1 - err, KNN),
            ("knn_accuracy", 0.5, "knn k=20 t=0.1 cosine-weighted offline random-init test"),
            ("robust_accuracy", 0.5 - err, "linear probe, PGD-10 Linf eps=8/255"),
            ("alignment", 2 * err + 0.01 * rng.standard_normal(), "features"),
            ("sharpness", 1 - err, "rho=0.05"),
            ("sigma", 1 - err, "delta=1"),
        ])
        store.add_bound_checks(cfg.run_id(), [
            {"theorem": "arora2019", "bound": 2 * err, "measured": err, "holds": True, "tightness": 2.0, "assumptions_met": True, "details": {"label": "paper"}},
            {"theorem": "huang2023.theorem1", "bound": err / 2, "measured": err, "holds": False, "tightness": 0.5, "assumptions_met": False,
             "details": {"label": "paper", "assumptions": {"center_condition": {"met": False, "lhs": 0.9, "rhs": 0.1}}}},
            {"theorem": "robust_cl.lipschitz_transfer", "bound": err / 3, "measured": err, "holds": False, "tightness": 1 / 3, "assumptions_met": True, "resolved": True,
             "details": {"label": "reconstructed", "margin": {"margin": 0.01}}},
            {"theorem": "ssa_clr.shift_tv", "bound": err - 1e-9, "measured": err, "holds": False, "tightness": 1.0, "assumptions_met": True, "resolved": False,
             "details": {"label": "reconstructed", "margin": {"margin": 1e-6}}},
        ])
        runs.append(cfg.run_id())
        labels[cfg.run_id()] = f"c{color}-w{width}"
    return store, runs, labels


def test_wide_table_picks_the_trained_protocol_and_flattens_configs(fabricated):
    store, runs, _ = fabricated
    df = frames.wide(store.root, runs)
    assert len(df) == 6 and (df["knn_accuracy"] > 0.5).all()
    assert {"config.color_strength", "config.encoder.width", "alignment"} <= set(df.columns)
    assert varying_axes(df) == ["config.color_strength", "config.encoder.width"]
    assert frames.protocol_of(store.root, "knn_accuracy", runs) == KNN

    # Measured again under another protocol: the latest value and its protocol win, as in the bound checks.
    store.add_measurements(runs[0], [("robust_accuracy", 0.01, "linear probe, PGD-20 Linf eps=8/255")])
    df = frames.wide(store.root, runs)
    assert df.set_index("run").loc[runs[0], "robust_accuracy"] == 0.01
    assert frames.protocol_of(store.root, "robust_accuracy", runs[:1]) == "linear probe, PGD-20 Linf eps=8/255"


def test_kendall_and_granulated_tau_closed_forms():
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    df = pd.DataFrame({"a": [0, 0, 1, 1, 2], "b": [0, 1, 0, 1, 0], "t": [1, 2, 3, 4, 0], "e": [1, 2, 3, 4, 5]})
    g = granulated_kendall(df, "t", "e", ["a", "b"])
    # axis b: groups a=0 and a=1 each rise together (+1, +1); a=2 has one run and is skipped.
    # axis a: group b=0 is t=(1,3,0) vs e=(1,3,5): 1 concordant, 2 discordant pairs -> -1/3; group b=1 -> +1.
    assert g["psi[b]"] == 1.0 and g["psi[a]"] == pytest.approx((-1 / 3 + 1) / 2) and g["Psi"] == pytest.approx((1 + 1 / 3) / 2)
    table = correlation_table(df, ["t"], ["e"], ["a", "b"])
    assert table.loc[0, "n"] == 5 and table.loc[0, "Psi"] == pytest.approx(g["Psi"])


def test_correlation_table_tests_each_term_beyond_the_loss_on_the_settings():
    rng = np.random.default_rng(2)
    settings = np.repeat(np.arange(12), 3)
    loss = np.repeat(rng.normal(size=12), 3) + 0.01 * rng.normal(size=36)
    extra = np.repeat(rng.normal(size=12), 3)
    df = pd.DataFrame({"a": settings, "config.seed": np.tile(range(3), 12), "info_nce": loss, "e": loss + 2 * extra,
                       "adds": extra, "tracks_loss": loss + 0.5 * rng.normal(size=36)})
    table = correlation_table(df, ["info_nce", "adds", "tracks_loss"], ["e"], ["a"]).set_index("term")
    assert "given-loss 95% CI" not in table and table.loc["adds", "settings (test)"] == 12 and table.loc["adds", "n (given loss)"] == 36
    assert table.loc["adds", "beyond loss"] == "yes" and table.loc["tracks_loss", "beyond loss"] == "no"
    assert pd.isna(table.loc["info_nce", "beyond loss"])  # the loss is not tested against itself


def _axes_of(path):
    return path.exists() and path.stat().st_size > 1000


def test_each_figure_kind_writes_png_and_pdf_with_labelled_axes(tmp_path, fabricated, monkeypatch):
    store, runs, _ = fabricated
    df = frames.wide(store.root, runs).assign(knn_error=lambda d: 1 - d["knn_accuracy"])
    drawn = {}
    real_close = plt.close

    def keep(fig=None):  # inspect the figure before it is closed
        if fig is not None and hasattr(fig, "axes"):
            drawn.setdefault("figs", []).append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    figs = [
        terms_vs_target(df, ["alignment", "sharpness", "sigma"], "knn_error", "kNN error", tmp_path, "tv", "caption"),
        bound_tightness(frames.bound_checks(store.root, runs), tmp_path, "bt", "caption"),
        ordered_series(df, "config.color_strength", {"knn_error": "error", "sigma": "sigma"}, tmp_path, "os", "caption", "colour strength", "value"),
        loglog_scatter(df, "config.encoder.width", {"sharpness": "sharpness"}, tmp_path, "ll", "caption", "width", fits={"sharpness": {"slope": 0.1, "intercept": 0.0, "low": 0.0, "high": 0.2}}),
        curves(df.assign(step=range(6)), "step", "sharpness", "config.encoder.width", tmp_path, "cv", "caption", "step", "sharpness"),
    ]
    for f in figs:
        assert [p.suffix for p in f.paths] == [".png", ".pdf"] and all(_axes_of(p) for p in f.paths)
    tv, bt, os_, ll, cv = drawn["figs"]
    assert [ax.get_xlabel() for ax in tv.axes if ax.get_visible()] == ["alignment", "sharpness", "sigma"]
    visible = [ax for ax in tv.axes if ax.get_visible()]
    assert visible[0].get_ylabel() == "kNN error" and all(ax.get_title().startswith("τ =") for ax in visible)
    ax = bt.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_ylabel() == "bound"
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # the y = x line
    assert len(os_.axes[0].containers) == 2  # two series with error bars
    assert ll.axes[0].get_xscale() == "log" and "slope +0.10" in ll.axes[0].get_legend().get_texts()[0].get_text()
    assert cv.axes[0].get_yscale() == "log"


def test_report_is_self_contained_and_lists_bounds_findings_and_statements(tmp_path, fabricated):
    store, runs, labels = fabricated
    x = sympy.Symbol("x")
    st = render_statement("arora2019", sympy.Le(x, 2 * x), "paper")
    assert st.png is not None and st.latex == r"x \leq 2 x"
    md, html, figs = make_report(store.root, runs, labels, tmp_path / "report", "test report", ["clbounds verify --preset tiny"], [st])
    text, page = md.read_text(), html.read_text()
    assert "huang2023.theorem1" in text and "failed: center_condition" in text
    assert "is violated on run" in text and "bound" in text  # the violation is a finding, with numbers
    findings = [line for line in text.splitlines() if "is violated on run" in line]
    # Only a failure with its hypotheses met and beyond its margin is a finding.
    assert findings and all(line.lstrip("- ").startswith("robust_cl.lipschitz_transfer") for line in findings), findings
    assert "psi[config.color_strength]" in text
    assert {f.name for f in figs} == {"terms-vs-knn-error", "terms-vs-robust-error", "bound-tightness"}
    assert page.count("data:image/png;base64,") == len(figs) + 1  # figures + one statement image
    assert not re.search(r"(src|href)=[\"']https?://", page)  # nothing fetched
    assert (tmp_path / "report" / "runs.csv").exists() and (tmp_path / "report" / "correlations.csv").exists()
    for f in figs:
        assert "6 runs" in f.caption and "seeds [0]" in f.caption


def test_a_multi_seed_grid_report_gives_means_and_paired_comparisons_with_the_base():
    from clbounds.figures.verify_report import setting_sections

    rng = np.random.default_rng(3)
    rows = []
    for seed in range(7):  # 2 claims, 4 one-sided tests: the exact test decides from 7 seeds
        shift = 0.01 * rng.normal()
        for setting, acc in (("simclr", 0.90), ("better", 0.95), ("same", 0.90)):
            rows.append({"label": f"{setting}/seed{seed}", "config.seed": seed, "knn_accuracy": acc + shift + 0.002 * rng.normal(), "info_nce": 4.0})
    (h1, _, means), (h2, text, tested) = setting_sections(pd.DataFrame(rows))
    assert h1 == "Settings, mean over seeds" and means["setting"].tolist() == ["simclr", "better", "same"] and (means["seeds"] == 7).all()
    assert h2 == "Each setting against simclr, paired over seeds" and "Holm over the target's 4 one-sided tests" in text
    verdicts = dict(zip(tested["claim"], tested["verdict"]))
    assert verdicts == {"better beats simclr in kNN acc": "reproduced", "same beats simclr in kNN acc": "not resolved at 7 seeds"}
    assert setting_sections(pd.DataFrame(rows).query("`config.seed` == 0")) == []  # one seed: nothing to compare


def test_panel_titles_carry_tau_its_interval_and_the_value_beyond_the_loss():
    from clbounds.figures.verify_report import panel_notes

    corr = pd.DataFrame([{"term": "a", "target": "knn_error", "kendall_tau": 0.5, "tau 95% CI": "[+0.10, +0.80]", "tau given loss": 0.2, "p (given loss, Holm)": 0.031},
                         {"term": "info_nce", "target": "knn_error", "kendall_tau": 0.9, "tau 95% CI": "[+0.60, +1.00]", "tau given loss": float("nan"), "p (given loss, Holm)": float("nan")}])
    notes = panel_notes(corr, "knn_error")
    assert notes == {"a": "τ = +0.50 [+0.10, +0.80]\ngiven loss +0.20, p = 0.031", "info_nce": "τ = +0.90 [+0.60, +1.00]"}


def test_report_tables_format_each_column_counts_as_integers_p_values_as_p_values():
    from clbounds.figures.report import _markdown_table, table_cells

    df = pd.DataFrame({"term": ["a"], "n": [10], "kendall_tau": [0.5], "p": [0.0003], "settings (test)": [10.0], "p (given loss)": [0.04], "tau given loss": [float("nan")],
                       "informative": [3.0], "bound": [0.123456], "holds": [True]})
    cells = table_cells(df).iloc[0].to_dict()
    assert cells["n"] == "10" and cells["settings (test)"] == "10" and cells["p"] == "3.0e-04" and cells["p (given loss)"] == "0.04"
    assert cells["kendall_tau"] == "+0.500" and cells["tau given loss"] == ""
    assert cells["informative"] == "3" and cells["bound"] == "0.1235" and cells["holds"] == "yes"
    assert "| 3.0e-04 |" in _markdown_table(df)  # report.md and report.html format alike
