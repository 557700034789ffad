"""The `clbounds` command line.

Exit codes: 0 success; 2 usage or config error (one clear line, no traceback); 1 runtime
failure (a message saying what failed and what was kept).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from .catalog import FOREIGN_LOSSES
from .commands import (
    cmd_bounds, cmd_certify, cmd_configs, cmd_eval, cmd_export, cmd_import, cmd_measure, cmd_report, cmd_reproduce, cmd_runs, cmd_train,
    cmd_verify,
)
from .config import ConfigError
from .data_option import PATH_DATASETS, data_section
from .environment import check_environment
from .errors import CheckpointError
from .measurement.registry import GROUP_NAMES  # torch-free: --help lists the groups
from .pipeline.executors import EXECUTORS
from .store.db import default_store_root
from .store.spool import SpoolStore, import_spool, open_store


EXAMPLES = """examples:
  clbounds verify --preset quick                       the main job on the embedded data (about 2.5 minutes on 2 cores)
  clbounds configs show quick-simclr-synthetic         a bundled config with every key and its default
  clbounds train quick-simclr-synthetic optim.epochs=5 one run, with an override
  clbounds measure quick-base --terms geometry measure.views=24
                                                       terms of a run (by id, id prefix or name) at another setting
  clbounds bounds quick-base                           every theorem on that run: both sides, margin, controls, verdict
  clbounds certify quick-base                          a PAC-Bayes certificate beside the trivial predictor and Clopper-Pearson
  clbounds export --what bounds --csv > checks.csv     every bound check as one tidy table
"""


#: Two or three examples per command, shown at the end of its --help (tests/test_cli.py checks each has some).
COMMAND_EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "train": [("clbounds train quick-simclr-synthetic", "SimCLR on the embedded synthetic data (about 40 s)"),
              ("clbounds train quick-simclr-synthetic optim.epochs=5 seed=1", "the same with overrides"),
              ("clbounds train quick-simclr-synthetic --data folder:imgs", "on your images, one sub-folder per class")],
    "eval": [("clbounds eval quick-base", "kNN, linear and nearest-centre probes of a run (id, id prefix or name)"),
             ("clbounds eval quick-base --random-init", "the same architecture at its initial weights"),
             ("clbounds eval quick-base --probe-data digits", "transfer: probes fitted and tested on digits")],
    "certify": [("clbounds certify quick-base", "PAC-Bayes certificate of encoder + linear probe, with its references"),
                ("clbounds certify quick-base --contrastive", "a certificate on the NT-Xent risk"),
                ("clbounds certify quick-base --train-sample", "computed from the training sample, as the papers' bounds are")],
    "measure": [("clbounds measure quick-base", "every term group (a stopped measure resumes)"),
                ("clbounds measure quick-base --terms geometry adversarial", "two groups only"),
                ("clbounds measure quick-base measure.views=24 measure.eps=0.8", "other settings, recorded in every protocol")],
    "bounds": [("clbounds bounds quick-base", "every theorem: both sides, margin, controls, verdict"),
               ("clbounds bounds quick-base --json", "every field of every check")],
    "verify": [("clbounds verify --preset quick", "the main job: 10 runs on the embedded data (about 2.5 minutes on 2 cores)"),
               ("clbounds verify --preset cpu --workers 2", "five seeds per setting"),
               ("clbounds verify --preset quick --certify device=cpu", "with certificates, on the CPU")],
    "reproduce": [("clbounds reproduce huang-color", "one paper figure on the embedded data"),
                  ("clbounds reproduce cacr --seeds 10", "more seeds per variant"),
                  ("clbounds reproduce ssa-clr --preset paper --executor slurm slurm.partition=gpu", "CIFAR-10 on a SLURM cluster")],
    "import": [("clbounds import r18.pth --format torchvision --arch resnet18 --name tv18", "a torchvision ResNet-18 state dict"),
               ("clbounds import last.ckpt --format solo-learn --arch resnet18 --data cifar10 --loss simclr", "a solo-learn checkpoint, measured on CIFAR-10")],
    "report": [("clbounds report", "every measured run of the store"),
               ("clbounds report quick-base quick-barlow-twins --out cmp", "two runs, into ./cmp")],
    "configs": [("clbounds configs", "the bundled configs and presets"),
                ("clbounds configs show quick-simclr-synthetic", "one config with every key and its default")],
    "runs": [("clbounds runs", "every run of the store"),
             ("clbounds --store /scratch/runs runs --json", "another store, as JSON")],
    "export": [("clbounds export > measurements.csv", "every measurement with its protocol"),
               ("clbounds export --what bounds --json", "every bound check as JSON"),
               ("clbounds export --out tables", "both tables as files")],
}


def _examples(command: str) -> str:
    rows = COMMAND_EXAMPLES.get(command, [])
    width = max((len(c) for c, _ in rows), default=0)
    return "examples:\n" + "\n".join(f"  {c.ljust(width)}  {what}" for c, what in rows)


def _data_argument(value: str) -> str:
    """``--data``: a bundled or standard dataset, or ``npz:PATH`` / ``folder:PATH``."""
    try:
        name = data_section(value)["name"]
    except ConfigError:
        name = ""
    if name in ("synthetic", "digits", "cifar10", "cifar100", "stl10", *PATH_DATASETS):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: choose synthetic, digits, cifar10, cifar100, stl10, npz:PATH or folder:PATH")


def _measure_keys() -> str:
    """The measure.* keys with their defaults, for `clbounds measure --help`."""
    import dataclasses

    from .config import MeasureConfig

    keys = [f"measure.{f.name}={f.default if f.default is not dataclasses.MISSING else ''}" for f in dataclasses.fields(MeasureConfig)]
    return "measure.* keys (default):\n  " + "\n  ".join(keys)


def build_parser() -> argparse.ArgumentParser:
    from clbounds import __version__

    parser = argparse.ArgumentParser(prog="clbounds", description="Train contrastive encoders, measure the terms of their theorems, and check the bounds.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    try:
        now = str(default_store_root())
    except ConfigError:  # reported by check_environment when the command runs, not by --help
        now = "unusable"
    store_help = f"run store folder (default: $CLBOUNDS_HOME or ./runs; now {now})"
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
            epilog = "\n\n".join(e for e in (_examples(name), kwargs.pop("epilog", None)) if e)
            return _sub.add_parser(name, parents=[common], epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    sub = _Sub()

    p = sub.add_parser("train", help="train one run (resumes an unfinished run, skips a finished one)")
    p.add_argument("config", help="a YAML path or a bundled config name, e.g. quick-simclr-synthetic")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.1 seed=1")
    p.add_argument("--data", type=_data_argument, metavar="DATA",
                   help="the data to train on instead of the config's: synthetic, digits, cifar10, cifar100, stl10 (under data.root), "
                        "npz:PATH (arrays x_train, y_train, x_test, y_test) or folder:PATH (one sub-folder of images per class); "
                        "eval and measure then read the same data")
    p.add_argument("--eval", action="store_true", help="run the offline probes afterwards")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="offline probes: kNN, linear, nearest centre")
    p.add_argument("run", help="run id, a unique prefix of it, or the run's name")
    p.add_argument("--random-init", action="store_true", help="probe the same architecture at its initial weights instead")
    p.add_argument("--probe-data", metavar="DATA", type=_data_argument,
                   help="transfer: fit and test the probes on another dataset at the run's image size, e.g. digits, npz:PATH or folder:PATH")
    p.add_argument("--autoattack", action="store_true", help="also AutoAttack (standard, Linf at measure.attack_eps) on the linear probe, with RobustBench sanity checks; needs `make autoattack`")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("certify", help="a PAC-Bayes certificate on the downstream error of encoder + probe, with the test-set bound")
    p.add_argument("run", help="run id, a unique prefix of it, or the run's name")
    p.add_argument("--n", type=int, default=5000, help="size of the bound sample S (fresh draws for synthetic data; else half the test split)")
    p.add_argument("--draws", type=int, default=1000, help="posterior samples of the Monte-Carlo step (with --encoder: one per example of S instead)")
    p.add_argument("--delta", type=float, default=0.05, help="total failure probability (a fifth goes to the Monte-Carlo step)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps of each posterior optimisation (default 500; 100 with --encoder, whose steps run the encoder)")
    p.add_argument("--contrastive", action="store_true", help="certify the NT-Xent risk of the encoder instead (synthetic data, simclr or ssa_clr runs)")
    p.add_argument("--encoder", action="store_true", help="the posterior covers the encoder's backbone weights too, not only the probe (a few minutes on 2 cores)")
    p.add_argument("--units", type=int, default=256, help="--contrastive: batches of 64 fresh inputs in S")
    p.add_argument("--train-sample", action="store_true",
                   help="certify from the training sample instead: prior trained on part of the training split, bound on the rest (and NT-Xent for simclr/ssa_clr runs)")
    p.add_argument("--prior-fraction", type=float, default=None, help="--train-sample: the part of the training split the prior is trained on (default 0.5)")
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("measure", help="compute the empirical terms of the theorems", epilog=_measure_keys())
    p.add_argument("run", help="run id, a unique prefix of it, or the run's name")
    p.add_argument("--terms", nargs="+", metavar="GROUP", help=f"term groups (default: all): {' '.join(GROUP_NAMES)}")
    p.add_argument("overrides", nargs="*", metavar="measure.key=value", help="measure settings for this measurement, e.g. measure.eps=0.8 measure.views=16 (recorded in every protocol)")
    p.add_argument("--force", action="store_true", help="recompute every group; by default a group already stored with the same settings is kept (a stopped measure resumes)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("bounds", help="evaluate every applicable theorem on a measured run")
    p.add_argument("run", help="run id, a unique prefix of it, or the run's name")
    p.add_argument("--json", action="store_true", help="the checks as JSON (every field, the verdict included)")
    p.set_defaults(func=cmd_bounds)

    p = sub.add_parser("verify", help="the main job: train a preset's grid, measure, bound, plot and report")
    p.add_argument("--preset", default="quick", help="quick (embedded data, CPU, minutes), cpu (about an hour on 2 cores) or paper (CIFAR, GPU), or a preset YAML")
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
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant, on any preset (default: the target's, 5 to 9, enough for its paired claims to be decidable after Holm's correction); not for terms-vs-accuracy and bound-tightness, which use the preset's grid")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("import", help="register an encoder trained elsewhere as a run (torchvision, solo-learn, lightly, timm)",
                       description="Register an encoder trained elsewhere as a run: eval, measure, bounds and export then work on it. "
                                   "Formats: torchvision (a plain ResNet state dict), timm (a hub or training checkpoint of resnet18/resnet50), "
                                   "solo-learn (a Lightning .ckpt: backbone. and projector.), lightly (a Lightning .ckpt: backbone. and projection_head.layers.). "
                                   "Nothing is unpickled but tensors and plain containers.")
    p.add_argument("checkpoint", type=Path, help="the checkpoint file (.pt, .pth, .ckpt, .bin or .safetensors)")
    p.add_argument("--format", required=True, choices=["torchvision", "solo-learn", "lightly", "timm"], help="the library whose layout the file has")
    p.add_argument("--arch", required=True, metavar="ARCH", help="the backbone: resnet18 or resnet50 (torchvision layout; the stem is read from conv1), "
                   "or your own network as package.module:callable, called with no arguments, whose state dict the file holds "
                   "(imported from the current folder or PYTHONPATH, whenever the run is opened)")
    p.add_argument("--norm", choices=["imagenet", "cifar10", "cifar100", "stl10", "none"], help="the input normalisation the encoder was trained with "
                   "(default: the format's usual one, ImageNet statistics for torchvision, timm and lightly, CIFAR-10's for a solo-learn CIFAR checkpoint)")
    p.add_argument("--mean", help="per-channel mean instead of --norm, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", help="per-channel std instead of --norm, e.g. 0.229,0.224,0.225")
    p.add_argument("--loss", choices=FOREIGN_LOSSES, help="the loss it was trained with, when known (the sharpness terms need it)")
    p.add_argument("--data", default="synthetic", type=_data_argument, metavar="DATA",
                   help="the data eval and measure use: synthetic (default), digits, cifar10, cifar100, stl10 (under data.root), "
                        "npz:PATH (arrays x_train, y_train, x_test, y_test) or folder:PATH (one sub-folder of images per class)")
    p.add_argument("--image-size", type=int, default=32, help="image side for synthetic, digits, npz and folder data (default 32)")
    p.add_argument("--init", type=Path, help="a checkpoint (same format and architecture) of the weights its training started from: θ₀ of "
                   "weight_movement, the PAC-Bayes terms and the random-init control; without it those terms say θ₀ is unknown")
    p.add_argument("--name", help="a label for the run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the data, eval and measure settings, e.g. data.n_train=1000 eval.knn_k=20")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("report", help="the report (bounds, terms against error, figures) of chosen runs, or of every measured run")
    p.add_argument("runs", nargs="*", help="run ids (unique prefixes); default every done run that has measurements")
    p.add_argument("--out", type=Path, help="report folder (default <store>/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("configs", help="list the bundled configs and presets, or show one with every key (`configs show NAME`)")
    p.add_argument("words", nargs="*", metavar="show NAME", help="`show NAME`: the config with every key and its value (defaults included), or the preset's YAML")
    p.set_defaults(func=cmd_configs, needs_store=False)

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
    p.add_argument("--executor", choices=list(EXECUTORS), default="local",
                   help="local: this machine (default); slurm: one SLURM job per run, one job array (settings: slurm.* keys); "
                        "submitit-local: the same jobs as subprocesses here")
    p.add_argument("--dry-run", action="store_true", help="with --executor slurm: write and show the sbatch script, submit nothing")


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; exits 2 with one line on a usage error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides given after an option (`import ckpt --format f data.n_train=100`) are
    # left over by argparse, which matched the positionals before the options
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(argv)
    stdout, sys.stdout = sys.stdout, _GuardedStdout(sys.stdout)
    try:
        check_environment()  # CLBOUNDS_HOME, CLBOUNDS_SPOOL, WORLD_SIZE, RANK, …: a bad value is exit 2 before anything runs
        if not getattr(args, "needs_store", True):  # `configs` reads the package only: no store is opened or made
            args.func(args, None)
            sys.stdout.flush()
            return 0
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
