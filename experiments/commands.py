"""The commands of `clbounds`, one function each: ``cmd_<name>(args, store)`` (cli.py parses the
arguments and maps errors to exit codes)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from . import environment
from .config import ConfigError, load_config
from .data_option import data_overrides
from .errors import CheckpointError
from .measurement.registry import GROUP_NAMES, check_groups
from .names import csv_cell, slug
from .store.db import CHECK_COLUMNS, MEASUREMENT_COLUMNS, RunRecord, Store


def _print_rows(rows: list[tuple[str, float, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    for name, value, protocol in rows:
        print(f"  {name:<{width}}  {value:>9.4f}   [{protocol}]")


def cmd_train(args: argparse.Namespace, store: Store) -> None:
    from .measurement.accuracy import evaluate
    from .training.loop import train

    # --data first, so an explicit data.* override still wins.
    cfg = load_config(args.config, [*(data_overrides(args.data) if args.data else []), *args.overrides])
    record = train(cfg, store, progress=not args.quiet)
    if environment.rank() > 0:
        return  # a torchrun rank but the first: rank 0 reports (and evaluates) the run
    print(f"run {record.id} ({cfg.method.name}, {cfg.data.name}, {cfg.encoder.arch}): {record.status}  {record.path}")
    if args.eval:
        _print_rows(evaluate(record, store))


def cmd_eval(args: argparse.Namespace, store: Store) -> None:
    from .measurement.accuracy import evaluate, evaluate_transfer

    record = store.find_run(args.run)
    if record.status != "done":
        raise ConfigError(f"run {record.id} is {record.status}, not done; finish it with `clbounds train` first")
    if args.random_init and (args.probe_data or args.autoattack):
        raise ConfigError("--random-init probes the initial weights; it does not combine with --probe-data or --autoattack")
    print(f"run {record.id} ({record.method}, {record.dataset}, {record.encoder})")
    rows = evaluate(record, store, random_init=args.random_init)
    if args.probe_data:
        rows += evaluate_transfer(record, store, args.probe_data)
    if args.autoattack:
        from .measurement.measure import measure
        from .measurement.autoattack import autoattack_unavailable

        if why := autoattack_unavailable():
            print(why, file=sys.stderr)
        else:
            rows += measure(record, store, ["autoattack"], log=lambda line: print(line, file=sys.stderr))
    _print_rows(rows)


def cmd_measure(args: argparse.Namespace, store: Store) -> None:
    import dataclasses

    from .config import apply_overrides, config_from_dict
    from .measurement.measure import measure
    from .pipeline.steps import record_measured

    record = store.find_run(args.run)
    if record.status != "done":
        raise ConfigError(f"run {record.id} is {record.status}, not done; finish it with `clbounds train` first")
    # `--terms sharpness measure.eps=0.8`: --terms took the override too; hand it back
    args.overrides = [*(args.overrides or []), *[t for t in args.terms or [] if "=" in t]]
    terms = [t for t in args.terms or [] if "=" not in t] or None
    check_groups(terms)
    if args.overrides:  # measure settings only: the trained run stays what it is; the protocols record them
        outside = [o for o in args.overrides if not o.startswith("measure.")]
        if outside:
            raise ConfigError(f"override {outside[0]!r}: measure takes measure.<key>=value overrides only (e.g. measure.eps=0.8); retrain for anything else")
        record = dataclasses.replace(record, config=config_from_dict(apply_overrides(record.config, args.overrides)).to_dict())
    print(f"run {record.id} ({record.method}, {record.dataset}, {record.encoder})")
    rows = measure(record, store, terms, log=lambda line: print(line, file=sys.stderr, flush=True), force=args.force)
    record_measured(store, record.id, terms or GROUP_NAMES, record.config["measure"])  # verify then re-measures what overrides changed
    if rows:
        _print_rows(rows)


def cmd_bounds(args: argparse.Namespace, store: Store) -> None:
    from clbounds.bounds.common import verdict

    from clbounds.bounds.display import format_bound_table

    from .pipeline.bounds_step import evaluate_bounds

    record = store.find_run(args.run)
    if not store.measurements(record.id):
        raise ConfigError(f"run {record.id} has no measurements; run `clbounds measure {record.id}` first")
    checks = evaluate_bounds(record, store)
    if args.json:
        print(json.dumps([c.to_row() | {"run": record.id, "verdict": verdict(c)} for c in checks], indent=2, default=str))
        return
    print(f"run {record.id} ({record.method}, {record.dataset}, {record.encoder})\n")
    print(format_bound_table(checks))


def _grid_executor(args: argparse.Namespace, store: Store, name: str) -> Any:
    """The executor of a grid command (``--executor``, experiments/pipeline/executors.py)."""
    from .pipeline.executors import make_executor

    return make_executor(args.executor, store.root / "jobs" / slug(name), slug(name), getattr(args, "workers", 1), args.dry_run)


def _print_dry_run(dry: Exception) -> None:
    path, text = dry.args
    if path is None:
        print(text)
        return
    print(f"sbatch script (nothing submitted): {path}\n")
    print(text)


def cmd_verify(args: argparse.Namespace, store: Store) -> None:
    from .pipeline.cluster import DryRun
    from .pipeline.verify import verify

    executor = _grid_executor(args, store, f"verify-{Path(args.preset).stem}")
    try:
        md, html = verify(args.preset, store, args.overrides, executor, certify=args.certify)
    except DryRun as dry:
        _print_dry_run(dry)
        return
    print(f"report: {html}\n        {md}")


def cmd_reproduce(args: argparse.Namespace, store: Store) -> None:
    from .pipeline.cluster import DryRun
    from .pipeline.reproduce import reproduce

    wrong = [o for o in args.overrides if not o.startswith("slurm.")]
    if wrong:
        raise ConfigError(f"reproduce takes only slurm.* overrides (the target fixes everything else), got {', '.join(wrong)}")
    executor = _grid_executor(args, store, f"reproduce-{args.target}")
    try:
        print(f"report: {reproduce(args.target, store, args.preset, executor=executor, seeds=args.seeds, extra=args.overrides)}")
    except DryRun as dry:
        _print_dry_run(dry)


def cmd_report(args: argparse.Namespace, store: Store) -> None:
    from clbounds.figures.verify_report import make_report

    from .pipeline.bounds_step import evaluate_bounds, evaluate_sweep_bounds, theorem_statements

    records = [store.find_run(r) for r in args.runs] if args.runs else [r for r in store.runs() if r.status == "done"]
    measured = [r for r in records if store.measurements(r.id)]
    if not measured:
        raise ConfigError(f"no measured runs to report in {store.root}; run `clbounds measure RUN` first")
    for record in measured:  # the checks of the current terms
        evaluate_bounds(record, store)
    evaluate_sweep_bounds(measured, store)
    out = args.out or store.root / "report"
    labels = {r.id: r.name or r.id for r in measured}
    # the store and the folder too: it regenerates the same report from anywhere
    command = shlex.join(["clbounds", "--store", str(store.root), "report", *args.runs, *(["--out", str(args.out)] if args.out else [])])
    md, html, _ = make_report(store.root, [r.id for r in measured], labels, out, f"clbounds report ({len(measured)} run{'s' if len(measured) != 1 else ''})", [command.strip()], theorem_statements())
    print(f"report: {html}\n        {md}")


def cmd_import(args: argparse.Namespace, store: Store) -> None:
    from .import_checkpoint import import_checkpoint

    try:
        record, notes = import_checkpoint(args.checkpoint, store, args.format, args.arch, init=args.init, norm=args.norm, mean=args.mean, std=args.std,
                                          loss=args.loss or "", data=args.data, image_size=args.image_size, name=args.name, overrides=args.overrides)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; nothing was registered") from None
    ext = record.config["encoder"]["external"]
    stem = "" if ":" in args.arch else f", {'CIFAR' if ext['cifar_stem'] else 'ImageNet'} stem"  # a user's network has its own
    print(f"run {record.id} ({args.format} {args.arch}{stem}, projector {ext['projector'] or 'none'}): imported  {record.path}")
    print(f"  normalisation mean {ext['mean']} std {ext['std']}{' (' + notes['normalisation'] + ', the format default)' if 'normalisation' in notes and not args.norm else ''}; "
          f"data {record.config['data']['name']}; sha256 {ext['sha256']}")
    print(f"  initial weights (theta_0): {notes['init'] if notes.get('init') else 'unknown (the terms that compare with theta_0 are not measured; give --init FILE)'}")
    if notes.get("dropped"):
        dropped = notes["dropped"]
        print(f"  not used: {len(dropped)} tensors ({', '.join(dropped[:4])}{'…' if len(dropped) > 4 else ''})")


def _transfer_line(r: dict[str, Any]) -> str:
    """van Elst & Ghoshdastidar's transfer of an NT-Xent certificate to the downstream cross-entropy."""
    if r["transfer"] is None:
        return "downstream cross-entropy by van Elst & Ghoshdastidar's transfer: below log K at sigma = 0, so it needs the feature spread sigma (not measured)"
    return f"downstream cross-entropy by van Elst & Ghoshdastidar's transfer >= {r['transfer']:.4f} whatever sigma is: vacuous (log K is the constant classifier's)"


def _print_train_sample(record: RunRecord, store: Store, args: argparse.Namespace, header: str) -> None:
    from .pipeline.certify_train_sample import PRIOR_FRACTION, certify_train_sample

    lines: list[str] = []

    def log(line: str) -> None:
        if not lines:
            print(header, file=sys.stderr)
        lines.append(line)
        print(line, file=sys.stderr)

    r = certify_train_sample(record, store, prior_fraction=args.prior_fraction or PRIOR_FRACTION, steps=args.steps, delta=args.delta, delta_mc=args.delta / 5, log=log)
    verdict = "vacuous" if r["bound"] >= r["trivial_error"] else "non-vacuous"
    print(f"certified downstream error from the training sample (Gibbs classifier: backbone and probe ~ posterior) <= {r['bound']:.4f} "
          f"with probability >= {1 - args.delta:g}   [trivial predictor {r['trivial_error']:.3f}; {verdict}]")
    print(f"  measured on the test split: certified Gibbs classifier {r['gibbs_error_t']:.4f} (bound / error = {r['bound'] / max(r['gibbs_error_t'], 1e-12):.2f}), "
          f"the run's encoder + probe {r['run_error']:.4f}")
    print(f"  prior: the run's training on {r['n_prior']} training images ({r['prior_epochs']} epochs); bound on the other n={r['n']}; "
          f"KL={r['kl']:.1f}, prior sigma encoder={r['prior_sigma_encoder']:g}, probe={r['prior_sigma']:g}; "
          f"the posterior's backbone mean moved {r['encoder_mean_movement']:.3f} (relative); wall {r['seconds']:.0f} s")
    if "contrastive" in r:
        c = r["contrastive"]
        print(f"  NT-Xent risk of the Gibbs prior encoder (batch {c['batch']}, {c['units']} units of the bound part) <= {c['bound']:.4f}"
              f"   [a constant encoder's risk {c['constant']:.3f}; {'vacuous' if c['bound'] >= c['constant'] else 'non-vacuous'}]; measured on T {c['measured']:.4f}")
        print(f"  {_transfer_line(c)}")
    print(f"  protocol: {r['protocol']}")


def cmd_certify(args: argparse.Namespace, store: Store) -> None:
    from .measurement.certify import certify

    record = store.find_run(args.run)
    if record.status != "done":
        raise ConfigError(f"run {record.id} is {record.status}, not done; finish it with `clbounds train` first")
    if args.steps is None:
        args.steps = 100 if args.encoder else 200 if args.train_sample else 500
    for name, value, low, high in (("--n", args.n, 100, 10_000_000), ("--draws", args.draws, 10, 1_000_000), ("--steps", args.steps, 0, 1_000_000),
                                   ("--units", args.units, 2, 1_000_000)):
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is out of range: must be >= {low} and <= {high}")
    if not 0 < args.delta < 0.5:
        raise ConfigError(f"--delta={args.delta} is out of range: must be > 0 and < 0.5")
    if sum((args.contrastive, args.encoder, args.train_sample)) > 1:
        raise ConfigError("--encoder, --contrastive and --train-sample are different certificates; choose one")
    if args.prior_fraction is not None and not args.train_sample:
        raise ConfigError("--prior-fraction is an option of --train-sample (the held-out certificates have no prior part)")
    if args.prior_fraction is not None and not 0.1 <= args.prior_fraction <= 0.9:
        raise ConfigError(f"--prior-fraction={args.prior_fraction} is out of range: must be >= 0.1 and <= 0.9")
    header = f"run {record.id} ({record.method}, {record.dataset}, {record.encoder}): certifying ..."
    if args.train_sample:  # its usage errors come after the run's data is read: the header waits for the first progress line
        _print_train_sample(record, store, args, header)
        return
    print(header, file=sys.stderr)
    if args.contrastive:
        from .measurement.certify_contrastive import certify_contrastive

        r = certify_contrastive(record, store, units=args.units, delta=args.delta, delta_mc=args.delta / 5, steps=args.steps,
                                log=lambda line: print(line, file=sys.stderr))
        print(f"certified NT-Xent risk of the Gibbs encoder <= {r['bound']:.4f} with probability >= {1 - args.delta:g}"
              f"   [range {r['low']:.3f} to {r['high']:.3f}; a constant encoder's risk {r['constant']:.3f}; {'vacuous' if r['bound'] >= r['constant'] else 'non-vacuous'}]")
        print(f"  measured on T: Gibbs encoder {r['measured']:.4f}, trained encoder {r['deterministic']:.4f}")
        print(f"  {_transfer_line(r)}")
        print(f"  units={r['units']}, KL={r['kl']:.1f}, prior sigma={r['prior_sigma']:g}, wall {r['seconds']:.0f} s")
        print(f"  protocol: {r['protocol']}")
        return
    r = certify(record, store, n_bound=args.n, draws=args.draws, delta=args.delta, delta_mc=args.delta / 5, steps=args.steps,
                log=lambda line: print(line, file=sys.stderr), encoder=args.encoder)
    covered = "backbone and probe ~ posterior" if args.encoder else "probe ~ posterior, encoder fixed"
    print(f"certified downstream error (Gibbs classifier: {covered}) <= {r['bound']:.4f} with probability >= {1 - args.delta:g}"
          f"   [trivial predictor {r['trivial_error']:.3f}; {'vacuous' if r['bound'] >= r['trivial_error'] else 'non-vacuous'}]")
    print(f"  measured: Gibbs error on T {r['gibbs_error_t']:.4f}, posterior-mean probe on T {r['mean_error_t']:.4f}")
    print(f"  test-set bound on the posterior-mean probe (T only, n={r['n_heldout'] - r['n']}): {r['test_set_bound']:.4f}")
    print(f"  reference: Clopper-Pearson bound of the prior-mean probe on all held-out data (n={r['n_heldout']}): {r['heldout_prior_mean_bound']:.4f}"
          f" (its error {r['prior_mean_error']:.4f}); the PAC-Bayes step {'costs' if r['bound'] > r['heldout_prior_mean_bound'] else 'saves'} "
          f"{abs(r['bound'] - r['heldout_prior_mean_bound']):.4f} against it")
    prior = f"prior sigma encoder={r['prior_sigma_encoder']:g}, probe={r['prior_sigma']:g}" if args.encoder else f"prior sigma={r['prior_sigma']:g}"
    print(f"  n={r['n']}, Monte-Carlo terms={r['mc_terms']}, KL={r['kl']:.1f}, {prior}, wall {r['seconds']:.0f} s")
    print(f"  protocol: {r['protocol']}")


def cmd_runs(args: argparse.Namespace, store: Store) -> None:
    from .store.locks import mark_orphaned_runs

    mark_orphaned_runs(store)  # a run whose trainer was killed is not shown as running
    runs = store.runs()
    if args.json:
        print(json.dumps([{"id": r.id, "name": r.name, "method": r.method, "dataset": r.dataset, "encoder": r.encoder, "status": r.status, "message": r.message, "path": str(r.path), "config": r.config} for r in runs], indent=2))
        return
    if not runs:
        print(f"no runs in {store.root}")
        return
    print(f"{'id':<11} {'name':<28} {'method':<13} {'dataset':<10} {'encoder':<9} {'status':<8} path")
    for r in runs:
        print(f"{r.id:<11} {r.name[:28]:<28} {r.method:<13} {r.dataset:<10} {r.encoder:<9} {r.status:<8} {r.path}" + (f"  ({r.message})" if r.message else ""))


MEASUREMENT_FIELDS = list(MEASUREMENT_COLUMNS)
CHECK_FIELDS = [c for c in CHECK_COLUMNS if c != "details"] + ["verdict"]  # details: JSON, in --json only


def _check_rows(store: Store) -> list[dict]:
    from clbounds.bounds.common import verdict

    return [c | {"verdict": verdict(c)} for c in store.bound_checks()]


def cmd_export(args: argparse.Namespace, store: Store) -> None:
    """One tidy table per call (``--what``), or both as files in ``--out``; CSV or JSON."""
    tables = {"measurements": (store.measurements, MEASUREMENT_FIELDS), "bounds": (lambda: _check_rows(store), CHECK_FIELDS)}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, (rows, fields) in tables.items():
            if args.what is not None and name != args.what:
                continue
            path = args.out / f"{name}.{'json' if args.json else 'csv'}"
            with open(path, "w", newline="") as f:
                _write_table(f, rows(), fields, args.json)
            print(path)
        return
    rows, fields = tables[args.what or "measurements"]
    _write_table(sys.stdout, rows(), fields, args.json)


def _json_safe(value: Any) -> Any:
    """Valid JSON whatever the store holds: a non-finite float is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _write_table(out, rows: list[dict], fields: list[str], as_json: bool) -> None:
    if as_json:
        json.dump(_json_safe(rows), out, indent=2, default=str, allow_nan=False)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)  # names cannot run as spreadsheet formulas


def cmd_configs(args: argparse.Namespace, store: Store | None) -> None:
    """``clbounds configs``: the bundled configs and presets; ``configs show NAME``: one of them,
    a config with every key and its value (defaults filled in), a preset as its YAML."""
    from .config import CONFIG_DIR, PRESET_DIR, dump_config

    words = list(args.words or [])
    if not words:
        print("configs (clbounds train NAME [key=value ...]):")
        for path in sorted(CONFIG_DIR.glob("*.yaml")):
            print(f"  {path.stem}")
        print("presets (clbounds verify --preset NAME):")
        for path in sorted(PRESET_DIR.glob("*.yaml")):
            print(f"  {path.stem}")
        print("show one with every key: clbounds configs show NAME")
        return
    if len(words) != 2 or words[0] != "show":
        raise ConfigError(f"usage: clbounds configs [show NAME]; got {' '.join(words)!r}")
    name = words[1]
    if (CONFIG_DIR / f"{name}.yaml").is_file():
        print(f"# {name}: every key and its value (a key not in the file has its default)")
        print(dump_config(load_config(name)), end="")
    elif (PRESET_DIR / f"{name}.yaml").is_file():
        from .pipeline.verify import load_preset

        load_preset(name)  # validated, as verify would
        print((PRESET_DIR / f"{name}.yaml").read_text(), end="")
    else:
        names = sorted(p.stem for d in (CONFIG_DIR, PRESET_DIR) for p in d.glob("*.yaml"))
        raise ConfigError(f"no bundled config or preset {name!r}; choose one of {', '.join(names)}")
