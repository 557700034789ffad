"""`clbounds verify`: the main job. Train a preset's grid, measure, bound, plot, report.

A preset (``experiments/presets/<name>.yaml``) names a base config, overrides common to
every run, measurement settings, optional seeds, and the grid as a list of labelled
override sets. Runs already in the store are not trained again.
"""

from __future__ import annotations

import shlex

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PRESET_DIR, ConfigError, load_config, load_yaml, read_config_text
from ..names import slug
from ..store.db import Store
from .executors import Executor
from .grid import GridItem, run_grid


@dataclass
class Preset:
    name: str
    base: str
    common: list[str] = field(default_factory=list)
    measure: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    runs: list[dict] = field(default_factory=list)


def _is_list_of(value: object, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def load_preset(name_or_path: str | Path) -> Preset:
    """A bundled preset name (quick, cpu, paper) or a YAML path, validated: every key's type,
    seeds in range, unique run labels, and every run's config (before any training)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"preset {str(name_or_path)!r} not found: give a YAML path or one of {', '.join(names)}")
    raw = load_yaml(read_config_text(path), f"preset {path}")
    if not isinstance(raw, dict):
        raise ConfigError(f"preset {path} must be a mapping with name, base and runs, got {type(raw).__name__}")
    allowed = {"name", "base", "common", "measure", "seeds", "runs"}
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ConfigError(f"preset {path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")
    for key in ("name", "base"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"preset {path}: {key} must be a non-empty string, got {raw.get(key)!r}")
    for key in ("common", "measure"):
        if not _is_list_of(raw.get(key, []), str):
            raise ConfigError(f"preset {path}: {key} must be a list of key=value overrides, got {raw[key]!r}")
    seeds = raw.get("seeds", [0])
    if not _is_list_of(seeds, int) or not seeds or any(isinstance(s, bool) or not 0 <= s <= 2**32 - 1 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"preset {path}: seeds must be a non-empty list of distinct integers in [0, 2^32-1], e.g. [0, 1, 2], got {seeds!r}")
    runs = raw.get("runs")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"preset {path}: runs must be a non-empty list of {{label: ..., overrides: [...]}} items, got {runs!r}")
    for r in runs:
        if set(map(str, r)) - {"label", "overrides"} or not isinstance(r.get("label"), str) or not r["label"] or not _is_list_of(r.get("overrides", []), str):
            raise ConfigError(f"preset {path}: each run is {{label: <text>, overrides: [key=value, ...]}}, got {r!r}")
    labels = [r["label"] for r in runs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"preset {path}: run labels must be unique, {sorted({x for x in labels if labels.count(x) > 1})} repeat")
    return Preset(**raw)


def grid_items(preset: Preset, extra: list[str] | None = None) -> list[GridItem]:
    """Every (run, seed) of the preset as a validated config; config errors surface before any training."""
    items = []
    for seed in preset.seeds:
        for run in preset.runs:
            overrides = [*preset.common, *run.get("overrides", []), *preset.measure, f"seed={seed}", f"name={preset.name}-{run['label']}", *(extra or [])]
            label = run["label"] if len(preset.seeds) == 1 else f"{run['label']}/seed{seed}"
            items.append(GridItem(label, load_config(preset.base, overrides)))
    return items


#: ``verify --certify``: a cheaper certificate per run than `clbounds certify`'s defaults (about
#: 7 s a run on 2 CPU cores instead of 19 s); its protocol names the budget.
VERIFY_CERTIFY = {"n_bound": 2000, "draws": 500, "steps": 200}


def verify(preset_name: str, store: Store, extra: list[str] | None = None, executor: Executor | None = None, out_dir: Path | None = None, log=print,
           certify: bool = False) -> tuple[Path, Path]:
    """Runs the main job and returns the paths of report.md and report.html. With ``certify``
    every finished run also gets the PAC-Bayes downstream certificate and its test-set floor
    (experiments/measurement/certify.py), which the report shows beside the papers' bounds."""
    from clbounds.figures.verify_report import make_report

    from .bounds_step import evaluate_sweep_bounds, theorem_statements

    preset = load_preset(preset_name)
    items = grid_items(preset, extra)
    out_dir = out_dir or store.root / slug(preset.name)  # a name is data: it cannot leave the store
    t0 = time.perf_counter()
    log(f"verify {preset.name}: {len(items)} runs into {store.root}")
    results = run_grid(items, store, executor, log=log)
    done = [r for r in results if r.status == "done"]
    if not done:
        raise RuntimeError(f"verify {preset.name}: every run failed; see `clbounds runs`")
    labels = {r.run_id: r.label for r in done}
    evaluate_sweep_bounds([store.get_run(r.run_id) for r in done], store)  # Wen width sweeps, CACR vs SimCLR pairs
    if certify:
        from ..measurement.certify import certify as certify_run

        for r in done:
            if not any(c["theorem"] == "certificate.pac_bayes_downstream" for c in store.bound_checks(r.run_id)):
                result = certify_run(store.get_run(r.run_id), store, **VERIFY_CERTIFY)
                log(f"  certified {r.label}: downstream error <= {result['bound']:.4f} (Gibbs error {result['gibbs_error_t']:.4f}, test-set floor {result['test_set_bound']:.4f}, {result['seconds']:.0f} s)")
    # reproducible as printed: the store, the preset as it was given (a name or a path), overrides, --certify
    commands = [shlex.join(["clbounds", "--store", str(store.root), "verify", "--preset", str(preset_name), *(extra or [])]) + (" --certify" if certify else "")]
    md, html, _ = make_report(store.root, [r.run_id for r in done], labels, out_dir, f"clbounds verify --preset {preset.name}", commands, theorem_statements())
    log(f"verify {preset.name}: {len(done)}/{len(results)} runs done in {time.perf_counter() - t0:.0f} s; report {html}")
    from clbounds.bounds.common import distinct_checks, headline  # the verdict, not only where the report is

    log(f"verdict over the {len(done)} runs: {headline(distinct_checks(c for r in done for c in store.bound_checks(r.run_id)))}")
    return md, html
