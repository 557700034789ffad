"""The `clbounds` command line.

Exit codes: 0 success; 2 usage or config error (one clear line, no traceback); 1 runtime
failure (a message saying what failed and what was kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, load_config
from .errors import CheckpointError
from .store.spool import SpoolStore, import_spool, open_store
from .store.db import Store, default_store_root


def _print_rows(rows: list[tuple[str, float, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    for name, value, protocol in rows:
        print(f"  {name:<{width}}  {value:>9.4f}   [{protocol}]")


def cmd_train(args: argparse.Namespace, store: Store) -> None:
    from .measurement.accuracy import evaluate
    from .training.loop import train

    cfg = load_config(args.config, args.overrides)
    record = train(cfg, store, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) > 0:
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


#: The term groups of ``clbounds measure`` (experiments/measurement/measure.py TERM_GROUPS; a test keeps the
#: two equal), here so that `--help` lists them without importing torch.
TERM_GROUP_NAMES = ("losses", "geometry", "sigma", "lipschitz", "sharpness", "shift", "adversarial", "autoattack", "optimization", "information", "cacr_weights", "bounds")


def cmd_measure(args: argparse.Namespace, store: Store) -> None:
    import dataclasses

    from .config import apply_overrides, config_from_dict
    from .measurement.measure import measure
    from .pipeline.grid import record_measured

    record = store.find_run(args.run)
    if record.status != "done":
        raise ConfigError(f"run {record.id} is {record.status}, not done; finish it with `clbounds train` first")
    # `--terms sharpness measure.eps=0.8`: --terms took the override too; hand it back
    args.overrides = [*(args.overrides or []), *[t for t in args.terms or [] if "=" in t]]
    terms = [t for t in args.terms or [] if "=" not in t] or None
    unknown = sorted(set(terms or []) - set(TERM_GROUP_NAMES))
    if unknown:
        raise ConfigError(f"unknown term group(s) {', '.join(unknown)}; choose from {', '.join(TERM_GROUP_NAMES)}")
    if args.overrides:  # measure settings only: the trained run stays what it is; the protocols record them
        outside = [o for o in args.overrides if not o.startswith("measure.")]
        if outside:
            raise ConfigError(f"override {outside[0]!r}: measure takes measure.<key>=value overrides only (e.g. measure.eps=0.8); retrain for anything else")
        record = dataclasses.replace(record, config=config_from_dict(apply_overrides(record.config, args.overrides)).to_dict())
    print(f"run {record.id} ({record.method}, {record.dataset}, {record.encoder})")
    rows = measure(record, store, terms, log=lambda line: print(line, file=sys.stderr, flush=True))
    record_measured(store, record.id, terms or TERM_GROUP_NAMES, record.config["measure"])  # verify then re-measures what overrides changed
    if rows:
        _print_rows(rows)


def cmd_bounds(args: argparse.Namespace, store: Store) -> None:
    from clbounds.bounds.common import verdict

    from .pipeline.bounds_step import evaluate_bounds, format_bound_table

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
    """The executor of a grid command: None (inline), local processes, or submitit (experiments/pipeline/cluster.py)."""
    from .pipeline.cluster import SubmititExecutor
    from .pipeline.grid import local_processes

    workers = getattr(args, "workers", 1)
    if args.executor == "local":
        if args.dry_run:
            raise ConfigError("--dry-run shows the sbatch script that --executor slurm would submit; add --executor slurm")
        return local_processes(workers) if workers > 1 else None
    if workers > 1:
        raise ConfigError(f"--workers is for --executor local; with --executor {args.executor} each run is its own job (slurm.array_parallelism sets how many run at once)")
    return SubmititExecutor(store.root / "jobs" / name, args.executor, name=name, dry_run=args.dry_run)


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
    command = "clbounds report " + " ".join(args.runs)
    md, html, _ = make_report(store.root, [r.id for r in measured], labels, out, f"clbounds report ({len(measured)} runs)", [command.strip()], theorem_statements())
    print(f"report: {html}\n        {md}")


def cmd_import(args: argparse.Namespace, store: Store) -> None:
    from .import_checkpoint import import_checkpoint

    try:
        record, notes = import_checkpoint(args.checkpoint, store, args.format, args.arch, norm=args.norm, mean=args.mean, std=args.std, loss=args.loss or "",
                                          data=args.data, image_size=args.image_size, name=args.name, overrides=args.overrides)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; nothing was registered") from None
    ext = record.config["encoder"]["external"]
    print(f"run {record.id} ({args.format} {args.arch}, {'CIFAR' if ext['cifar_stem'] else 'ImageNet'} stem, projector {ext['projector'] or 'none'}): imported  {record.path}")
    print(f"  normalisation mean {ext['mean']} std {ext['std']}{' (' + notes['normalisation'] + ', the format default)' if 'normalisation' in notes and not args.norm else ''}; "
          f"data {record.config['data']['name']}; sha256 {ext['sha256']}")
    if notes.get("dropped"):
        dropped = notes["dropped"]
        print(f"  not used: {len(dropped)} tensors ({', '.join(dropped[:4])}{'…' if len(dropped) > 4 else ''})")


def cmd_certify(args: argparse.Namespace, store: Store) -> None:
    from .measurement.certify import certify

    record = store.find_run(args.run)
    if record.status != "done":
        raise ConfigError(f"run {record.id} is {record.status}, not done; finish it with `clbounds train` first")
    if args.steps is None:
        args.steps = 100 if args.encoder else 500
    for name, value, low, high in (("--n", args.n, 100, 10_000_000), ("--draws", args.draws, 10, 1_000_000), ("--steps", args.steps, 0, 1_000_000),
                                   ("--units", args.units, 2, 1_000_000)):
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is out of range: must be >= {low} and <= {high}")
    if not 0 < args.delta < 0.5:
        raise ConfigError(f"--delta={args.delta} is out of range: must be > 0 and < 0.5")
    if args.contrastive and args.encoder:
        raise ConfigError("--encoder and --contrastive are two different certificates; choose one")
    print(f"run {record.id} ({record.method}, {record.dataset}, {record.encoder}): certifying ...", file=sys.stderr)
    if args.contrastive:
        from .measurement.certify import certify_contrastive

        r = certify_contrastive(record, store, units=args.units, delta=args.delta, delta_mc=args.delta / 5, steps=args.steps,
                                log=lambda line: print(line, file=sys.stderr))
        print(f"certified NT-Xent risk of the Gibbs encoder <= {r['bound']:.4f} with probability >= {1 - args.delta:g}"
              f"   [range {r['low']:.3f} to {r['high']:.3f}; {'vacuous' if r['bound'] >= r['high'] else 'non-vacuous'}]")
        print(f"  measured on T: Gibbs encoder {r['measured']:.4f}, trained encoder {r['deterministic']:.4f}")
        print(f"  units={r['units']}, KL={r['kl']:.1f}, prior sigma={r['prior_sigma']:g}, wall {r['seconds']:.0f} s")
        print(f"  protocol: {r['protocol']}")
        return
    r = certify(record, store, n_bound=args.n, draws=args.draws, delta=args.delta, delta_mc=args.delta / 5, steps=args.steps,
                log=lambda line: print(line, file=sys.stderr), encoder=args.encoder)
    covered = "backbone and probe ~ posterior" if args.encoder else "probe ~ posterior, encoder fixed"
    print(f"certified downstream error (Gibbs classifier: {covered}) <= {r['bound']:.4f} with probability >= {1 - args.delta:g}"
          f"   [chance {r['chance']:.3f}; {'vacuous' if r['bound'] >= r['chance'] else 'non-vacuous'}]")
    print(f"  measured: Gibbs error on T {r['gibbs_error_t']:.4f}, posterior-mean probe on T {r['mean_error_t']:.4f}")
    print(f"  test-set bound on the posterior-mean probe (floor): {r['test_set_bound']:.4f}")
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


MEASUREMENT_FIELDS = ["run", "name", "value", "protocol", "created"]
CHECK_FIELDS = ["run", "theorem", "bound", "measured", "holds", "tightness", "assumptions_met", "vacuous", "informative", "verdict"]


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


def _write_table(out, rows: list[dict], fields: list[str], as_json: bool) -> None:
    if as_json:
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def build_parser() -> argparse.ArgumentParser:
    from clbounds import __version__

    parser = argparse.ArgumentParser(prog="clbounds", description="Train contrastive encoders, measure the terms of their theorems, and check the bounds.")
    store_help = f"run store folder (default: $CLBOUNDS_HOME or ./runs; now {default_store_root()})"
    parser.add_argument("--store", type=Path, default=None, help=store_help)
    parser.add_argument("--version", action="version", version=f"clbounds {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure instead of one line")
    # Global options are accepted after the subcommand too (`clbounds runs --store X`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=Path, default=argparse.SUPPRESS, help=store_help)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of a failure instead of one line")
    _sub = parser.add_subparsers(dest="command", required=True)

    class _Sub:
        def add_parser(self, name: str, **kwargs):
            return _sub.add_parser(name, parents=[common], **kwargs)

    sub = _Sub()

    p = sub.add_parser("train", help="train one run (resumes an unfinished run, skips a finished one)")
    p.add_argument("config", help="a YAML path or a bundled config name, e.g. quick-simclr-synthetic")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.1 seed=1")
    p.add_argument("--eval", action="store_true", help="run the offline probes afterwards")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="offline probes: kNN, linear, nearest centre")
    p.add_argument("run", help="run id (a unique prefix is enough)")
    p.add_argument("--random-init", action="store_true", help="probe the same architecture at its initial weights instead")
    p.add_argument("--probe-data", metavar="NAME", help="transfer: fit and test the probes on another dataset at the run's image size, e.g. digits")
    p.add_argument("--autoattack", action="store_true", help="also AutoAttack (standard, Linf at measure.attack_eps) on the linear probe, with RobustBench sanity checks; needs `make autoattack`")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("certify", help="a PAC-Bayes certificate on the downstream error of encoder + probe, with the test-set bound")
    p.add_argument("run", help="run id (a unique prefix is enough)")
    p.add_argument("--n", type=int, default=5000, help="size of the bound sample S (fresh draws for synthetic data; else half the test split)")
    p.add_argument("--draws", type=int, default=1000, help="posterior samples of the Monte-Carlo step (with --encoder: one per example of S instead)")
    p.add_argument("--delta", type=float, default=0.05, help="total failure probability (a fifth goes to the Monte-Carlo step)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps of each posterior optimisation (default 500; 100 with --encoder, whose steps run the encoder)")
    p.add_argument("--contrastive", action="store_true", help="certify the NT-Xent risk of the encoder instead (synthetic data, simclr or ssa_clr runs)")
    p.add_argument("--encoder", action="store_true", help="the posterior covers the encoder's backbone weights too, not only the probe (a few minutes on 2 cores)")
    p.add_argument("--units", type=int, default=256, help="--contrastive: batches of 64 fresh inputs in S")
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("measure", help="compute the empirical terms of the theorems")
    p.add_argument("run", help="run id (a unique prefix is enough)")
    p.add_argument("--terms", nargs="+", metavar="GROUP", help=f"term groups (default: all): {' '.join(TERM_GROUP_NAMES)}")
    p.add_argument("overrides", nargs="*", metavar="measure.key=value", help="measure settings for this measurement, e.g. measure.eps=0.8 measure.views=16 (recorded in every protocol)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bounds", help="evaluate every applicable theorem on a measured run")
    p.add_argument("run", help="run id (a unique prefix is enough)")
    p.add_argument("--json", action="store_true", help="the checks as JSON (every field, the verdict included)")
    p.set_defaults(func=cmd_bounds)

    p = sub.add_parser("verify", help="the main job: train a preset's grid, measure, bound, plot and report")
    p.add_argument("--preset", default="quick", help="quick (embedded data, CPU, minutes), cpu (tens of minutes) or paper (CIFAR, GPU), or a preset YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every run, e.g. device=cpu")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: one run uses all cores)")
    _executor_arguments(p)
    p.add_argument("--certify", action="store_true", help="also certify every run's downstream error (PAC-Bayes, with the test-set floor; about 7 s a run)")
    p.set_defaults(func=cmd_verify)

    from .pipeline.reproduce import TARGETS

    p = sub.add_parser("reproduce", help="one paper figure or table")
    p.add_argument("target", choices=list(TARGETS), help="; ".join(f"{k}: {t.description}" for k, t in TARGETS.items()))
    p.add_argument("--preset", default="quick", help="quick (embedded data) or paper (CIFAR on a GPU), or a preset YAML")
    p.add_argument("overrides", nargs="*", metavar="slurm.key=value", help="SLURM settings for --executor slurm, e.g. slurm.partition=gpu")
    _executor_arguments(p)
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant, on any preset (default 5: the claims are paired tests across seeds); not for terms-vs-accuracy and bound-tightness, which use the preset's grid")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("import", help="register an encoder trained elsewhere as a run (torchvision, solo-learn, lightly, timm)",
                       description="Register an encoder trained elsewhere as a run: eval, measure, bounds and export then work on it. "
                                   "Formats: torchvision (a plain ResNet state dict), timm (a hub or training checkpoint of resnet18/resnet50), "
                                   "solo-learn (a Lightning .ckpt: backbone. and projector.), lightly (a Lightning .ckpt: backbone. and projection_head.layers.). "
                                   "Nothing is unpickled but tensors and plain containers.")
    p.add_argument("checkpoint", type=Path, help="the checkpoint file (.pt, .pth, .ckpt, .bin or .safetensors)")
    p.add_argument("--format", required=True, choices=["torchvision", "solo-learn", "lightly", "timm"], help="the library whose layout the file has")
    p.add_argument("--arch", required=True, choices=["resnet18", "resnet50"], help="the backbone (torchvision layout; the stem is read from conv1)")
    p.add_argument("--norm", choices=["imagenet", "cifar10", "cifar100", "stl10", "none"], help="the input normalisation the encoder was trained with "
                   "(default: the format's usual one, ImageNet statistics for torchvision, timm and lightly, CIFAR-10's for a solo-learn CIFAR checkpoint)")
    p.add_argument("--mean", help="per-channel mean instead of --norm, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", help="per-channel std instead of --norm, e.g. 0.229,0.224,0.225")
    p.add_argument("--loss", choices=["simclr", "barlow_twins"], help="the loss it was trained with, when known (the sharpness terms need it)")
    p.add_argument("--data", default="synthetic", choices=["synthetic", "digits", "cifar10", "cifar100", "stl10"], help="the data eval and measure use (default synthetic)")
    p.add_argument("--image-size", type=int, default=32, help="image side for synthetic and digits (default 32)")
    p.add_argument("--name", help="a label for the run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the data, eval and measure settings, e.g. data.n_train=1000 eval.knn_k=20")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("report", help="the report (bounds, terms against error, figures) of chosen runs, or of every measured run")
    p.add_argument("runs", nargs="*", help="run ids (unique prefixes); default every done run that has measurements")
    p.add_argument("--out", type=Path, help="report folder (default <store>/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("export", help="every measurement with its protocol, or every bound check: one tidy table per call")
    p.add_argument("--what", choices=["measurements", "bounds"], default=None, help="which table (default measurements; with --out, both)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--csv", action="store_true", help="CSV (default)")
    group.add_argument("--json", action="store_true", help="JSON: a list of rows")
    p.add_argument("--out", type=Path, help="write the tables as files into this folder instead (both unless --what)")
    p.set_defaults(func=cmd_export)
    return parser


class _ReaderGone(Exception):
    """stdout's reader left (`clbounds export | head`)."""


class _GuardedStdout:
    """stdout, with a broken pipe on it told apart from one anywhere else (a worker's pipe, a
    socket): only the first means the reader is done."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except BrokenPipeError as err:
            raise _ReaderGone from err

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError as err:
            raise _ReaderGone from err

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:1000] + " ..." if len(text) > 1000 else text


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local",
                   help="local: this machine (default); slurm: one SLURM job per run, one job array (settings: slurm.* keys); "
                        "submitit-local: the same jobs as subprocesses here")
    p.add_argument("--dry-run", action="store_true", help="with --executor slurm: write and show the sbatch script, submit nothing")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides given after an option (`import ckpt --format f data.n_train=100`) are
    # left over by argparse, which matched the positionals before the options
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    stdout, sys.stdout = sys.stdout, _GuardedStdout(sys.stdout)
    try:
        store = open_store(args.store)  # a SpoolStore inside a cluster job (CLBOUNDS_SPOOL=1)
        if not isinstance(store, SpoolStore):
            try:
                import_spool(store)  # rows that cluster jobs left in their run folders
            except sqlite3.Error as err:  # not this command's business: it goes on, the files stay for the next import
                print(f"clbounds: warning: the rows that cluster jobs left in {store.root} were not imported ({err}); they stay for the next command",
                      file=sys.stderr)
        args.func(args, store)
        sys.stdout.flush()
    except _ReaderGone:  # `clbounds export | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        return 0
    except BrokenPipeError as err:  # a worker's pipe or a socket broke, not our reader: a failure
        print(f"clbounds: failed: {err}; what finished before it is kept in the store", file=sys.stderr)
        return 1
    except ConfigError as err:
        if getattr(args, "debug", False):
            raise
        print(f"clbounds: error: {_one_line(err.args[0] if err.args else err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clbounds: interrupted; the last completed epoch's checkpoint is kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except (CheckpointError, FileNotFoundError, RuntimeError, ValueError, OSError, KeyError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"clbounds: failed: {type(err).__name__ + ': ' if isinstance(err, KeyError) else ''}{_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the one boundary: a broken store, a full disk, memory; never a traceback unless asked
        if getattr(args, "debug", False):
            raise
        print(f"clbounds: failed: {type(err).__name__}: {_one_line(err)}; what finished before it is kept in the store "
              "(finished runs are `done`, an interrupted one is `failed` and resumes when rerun); --debug shows the traceback", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
