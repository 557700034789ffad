"""`clbounds verify` and `clbounds reproduce` end to end on a tiny preset."""

import re

import pytest
import yaml

import clbounds.experiments.measurement.accuracy as evaluate_mod
import clbounds.experiments.measurement.measure as measure_mod
import clbounds.experiments.training.loop as train_mod
from clbounds.experiments.cli import main
from clbounds.experiments.config import ConfigError
from clbounds.experiments.store.db import Store
from clbounds.experiments.pipeline.verify import grid_items, load_preset, verify

from conftest import write_tiny_preset

@pytest.fixture
def tiny_preset(tmp_path):
    return write_tiny_preset(tmp_path, [{"label": "a", "overrides": []}, {"label": "b", "overrides": ["color_strength=1.0"]}, {"label": "c", "overrides": ["encoder.width=0.25"]}])


@pytest.mark.slow
def test_verify_end_to_end_then_trains_nothing_again(tmp_path, tiny_preset, monkeypatch):
    store = Store(tmp_path / "store")
    lines = []
    md, html = verify(str(tiny_preset), store, log=lines.append)
    # each step is announced as it starts, then the run's line with the step times
    first = [line for line in lines if "[1/3]" in line]
    assert [line.split()[-2:] for line in first[:3]] == [["train", "..."], ["eval", "..."], ["measure", "..."]]
    assert re.search(r"done \((train|eval|measure) \d+ s", first[3])  # steps under half a second are not listed
    text = md.read_text()
    assert "## Bounds" in text and "huang2023" in text and "arora2019" in text
    assert "kendall_tau" in text and (md.parent / "figures" / "terms-vs-knn-error.png").exists()
    assert html.read_text().count("data:image/png;base64,") >= 3
    assert [r.status for r in store.runs()] == ["done"] * 3
    # the headline and the findings count the same violations (grid-level checks once)
    headline = re.search(r"^\*\*\d+ of \d+ checks are informative.*\*\*$", text, re.M).group(0)
    violated = re.search(r"(\d+) violated", headline)
    findings = text[text.index("## Findings"):].split("\n## ", 1)[0].split("### Hypothesis not met")[0]
    assert (int(violated.group(1)) if violated else 0) == sum(line.startswith("- ") for line in findings.splitlines())
    assert any(line.startswith("verdict over the 3 runs: ") for line in lines)
    assert f"clbounds --store {store.root} verify --preset {tiny_preset}\n" in text  # the Regenerate line runs as printed, from anywhere

    monkeypatch.setattr(train_mod, "load_run_data", lambda cfg: pytest.fail("verify trained a stored run again"))
    with monkeypatch.context() as m:
        m.setattr(measure_mod, "measure", lambda *a, **k: pytest.fail("verify measured a stored run again"))
        m.setattr(evaluate_mod, "evaluate", lambda *a, **k: pytest.fail("verify evaluated a stored run again"))
        lines.clear()
        verify(str(tiny_preset), store, log=lines.append)
    assert not any(line.endswith("...") for line in lines) and sum("done (stored)" in line for line in lines) == 3

    # Other measure settings reuse the trained encoders but measure again, under the new protocol.
    verify(str(tiny_preset), store, extra=["measure.attack_steps=2"], log=lambda s: None)
    protocols = {r["protocol"] for r in store.measurements() if r["name"] == "robust_accuracy"}
    assert any("PGD-2 " in p for p in protocols) and any("PGD-1 " in p for p in protocols)

    # A target's groups already measured under its settings are not measured again.
    from clbounds.experiments.pipeline.grid import run_grid

    with monkeypatch.context() as m:
        m.setattr(measure_mod, "measure", lambda *a, **k: pytest.fail("a sweep measured stored groups again"))
        results = run_grid(grid_items(load_preset(str(tiny_preset)), ["measure.attack_steps=2"]), store, terms=["losses", "geometry"], log=lambda s: None)
    assert [r.status for r in results] == ["done"] * 3


def test_each_term_group_remembers_the_settings_it_was_measured_with(tmp_path):
    from clbounds.experiments.measurement.groups import TERM_GROUPS
    from clbounds.experiments.pipeline.steps import measured_groups, record_measured
    from clbounds.experiments.store.settings import record_settings

    store = Store(tmp_path / "store")
    store.run_dir("r1").mkdir(parents=True)
    a, b = {"eps": 0.5}, {"eps": 0.8}
    assert measured_groups(store, "r1", a) == set()
    record_settings(store, "r1", "measure", a)  # a store from before groups were recorded one by one
    assert measured_groups(store, "r1", a) == set(TERM_GROUPS)
    record_measured(store, "r1", ["sharpness"], b)  # `clbounds measure r1 --terms sharpness measure.eps=0.8`
    assert measured_groups(store, "r1", a) == set(TERM_GROUPS) - {"sharpness"} and measured_groups(store, "r1", b) == {"sharpness"}
    record_measured(store, "r1", ["sharpness"], a)
    assert measured_groups(store, "r1", a) == set(TERM_GROUPS)


@pytest.mark.slow
def test_a_diverging_run_fails_and_the_sweep_goes_on(tmp_path, tiny_preset, monkeypatch):
    preset = yaml.safe_load(tiny_preset.read_text())
    preset["runs"].append({"label": "diverges", "overrides": ["optim.lr=99"]})  # the loss of this run alone becomes NaN
    real_loss = train_mod.ssl_loss

    def ssl_loss(cfg):
        loss = real_loss(cfg)
        return (lambda *a, **k: loss(*a, **k) * float("nan")) if cfg.optim.lr == 99 else loss

    monkeypatch.setattr(train_mod, "ssl_loss", ssl_loss)
    tiny_preset.write_text(yaml.safe_dump(preset))
    store = Store(tmp_path / "store")
    lines = []
    verify(str(tiny_preset), store, log=lines.append)
    status = {r.name: r.status for r in store.runs()}
    assert status["tiny-diverges"] == "failed" and [s for n, s in status.items() if n != "tiny-diverges"] == ["done"] * 3
    assert any("FAILED" in line and "non-finite" in line for line in lines)


def test_presets_validate_and_bad_presets_are_config_errors(tmp_path):
    for name in ("quick", "cpu", "paper"):
        items = grid_items(load_preset(name))
        assert len({i.config.run_id() for i in items}) == len(items)
    assert len(grid_items(load_preset("quick"))) >= 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "base": "quick-simclr-synthetic", "runz": []}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset(bad)
    bad.write_text(yaml.safe_dump({"name": "x", "base": "quick-simclr-synthetic", "runs": [{"label": "a", "overrides": ["optim.lr=-1"]}]}))
    with pytest.raises(ConfigError, match="optim.lr=-1.0 is out of range"):
        grid_items(load_preset(bad))
    assert main(["--store", str(tmp_path / "s"), "verify", "--preset", "nope"]) == 2


@pytest.mark.slow
def test_verify_resumes_a_half_finished_grid(tmp_path, tiny_preset, monkeypatch):
    """Interrupted during its second run, verify trains only what is missing when run again."""
    store = Store(tmp_path / "store")
    real = train_mod.load_run_data
    started = []

    def interrupt_second(cfg):
        started.append(cfg.run_id())
        if len(started) == 2:
            raise KeyboardInterrupt
        return real(cfg)

    monkeypatch.setattr(train_mod, "load_run_data", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        verify(str(tiny_preset), store, log=lambda s: None)
    assert [r.status for r in store.runs()] == ["done", "failed"]  # the interrupted one says so, and resumes below
    first = started[0]
    started.clear()
    monkeypatch.setattr(train_mod, "load_run_data", lambda cfg: started.append(cfg.run_id()) or real(cfg))
    verify(str(tiny_preset), store, log=lambda s: None)
    assert first not in started and len(started) == 2  # the finished run is kept; the other two train
    assert [r.status for r in store.runs()] == ["done"] * 3


@pytest.mark.slow
def test_verify_certify_puts_the_certificates_beside_the_papers_bounds(tmp_path, tiny_preset, monkeypatch):
    import clbounds.experiments.pipeline.verify as verify_mod

    monkeypatch.setattr(verify_mod, "VERIFY_CERTIFY", {"n_bound": 500, "draws": 50, "steps": 10})
    store = Store(tmp_path / "store")
    lines = []
    md, _ = verify(str(tiny_preset), store, log=lines.append, certify=True)
    text = md.read_text()
    assert "certificate.pac_bayes_downstream" in text and "certificate.test_set" in text
    assert sum("certified" in line for line in lines) == 3
    for run in store.runs():
        theorems = {c["theorem"] for c in store.bound_checks(run.id)}
        assert {"certificate.pac_bayes_downstream", "certificate.test_set", "huang2023.theorem1"} <= theorems
