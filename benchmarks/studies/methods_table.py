"""The methods table: every method of PAPERS.md §1–§4 (and its ablations) trained on the
embedded default for several seeds, with clean, robust and timing columns.

    python -m benchmarks.studies.methods_table --seeds 0 1 2 --out docs/methods_table.md

Each row is a bundled quick synthetic config (plus the overrides it lists); every row runs at
16×16 so the columns compare like with like. Per run: train (a finished run in the store is
reused), ``evaluate`` (kNN and linear probes), ``measure(..., ["adversarial"])`` (robust
accuracy of the linear probe under PGD-20 L∞ and PGD-20 L2) and, for the rows marked so,
AutoAttack (``measure(..., ["autoattack"])``, with the torchattacks extra) and the
adversarially trained probe of ``adversarial_probe``. The Markdown gives mean ± sample std over seeds, the
protocol of every column as the store records it, and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from clbounds.experiments.measurement.adversarial_probe import adversarial_probe_terms
from clbounds.experiments.config import load_config
from clbounds.experiments.measurement.accuracy import evaluate
from clbounds.experiments.measurement.measure import measure
from clbounds.experiments.measurement.autoattack import autoattack_unavailable
from clbounds.experiments.store.db import Store
from clbounds.experiments.training.loop import train


@dataclass
class TableRow:
    label: str
    config: str
    overrides: list[str] = field(default_factory=list)
    adversarial_probe: bool = False  # also fit the adversarially trained probe


ROWS = [
    TableRow("SimCLR", "quick-simclr-synthetic", ["data.image_size=16"], adversarial_probe=True),
    TableRow("Barlow Twins", "quick-barlow-synthetic", ["data.image_size=16"]),
    TableRow("SSA-CLR (SAM + Fourier)", "quick-ssa-clr-synthetic"),
    TableRow("SSA-CLR, SAM only", "quick-ssa-clr-synthetic", ["method.use_fourier=false"]),
    TableRow("SSA-CLR, Fourier only", "quick-ssa-clr-synthetic", ["method.use_sam=false"]),
    TableRow("CACR (K=4)", "quick-cacr-synthetic"),
    TableRow("CACR, uniform w+ and w-", "quick-cacr-synthetic", ["method.uniform_pos=true", "method.uniform_neg=true"]),
    TableRow("Robust CL (dual BN, D, ASAM)", "quick-robust-cl-synthetic", adversarial_probe=True),
    TableRow("RoCL-style (adversarial InfoNCE only)", "quick-rocl-synthetic", adversarial_probe=True),
    TableRow("Two-network (full-batch GD)", "quick-two-network-synthetic"),
]

COLUMNS = [  # (header, measurement name)
    ("kNN acc.", "knn_accuracy"),
    ("linear acc.", "linear_accuracy"),
    ("robust acc. (linear, PGD-20)", "robust_accuracy"),
    ("robust acc. (linear, PGD-20 L2, unseen)", "l2_robust_accuracy"),
    ("robust acc. (linear, AutoAttack, unseen)", "autoattack_robust_accuracy"),
    ("robust acc. (AT probe, PGD-20)", "adversarial_probe_robust_accuracy"),
    ("train wall s", "train_wall_s"),
]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"nproc={os.cpu_count()}, CPU {cpu}{gpu}, torch {torch.__version__}, torch threads={torch.get_num_threads()}, Python {platform.python_version()}"


def run_row(row: TableRow, seed: int, store: Store, probe_epochs: int, log=print) -> tuple[dict[str, float], dict[str, str]]:
    """Trains and measures one (row, seed); returns values and protocols by measurement name."""
    cfg = load_config(row.config, row.overrides + [f"seed={seed}"])
    t0 = time.perf_counter()
    record = train(cfg, store, progress=False)
    have = {r["name"] for r in store.measurements(record.id) if "random-init" not in r["protocol"]}
    if "knn_accuracy" not in have:
        evaluate(record, store)
    if "l2_robust_accuracy" not in have:
        measure(record, store, ["adversarial"])
    if row.adversarial_probe and "autoattack_robust_accuracy" not in have and autoattack_unavailable() is None:
        measure(record, store, ["autoattack"], log=log)
    if row.adversarial_probe and probe_epochs > 0 and "adversarial_probe_robust_accuracy" not in have:
        adversarial_probe_terms(record, store, epochs=probe_epochs)
    rows = [r for r in store.measurements(record.id) if "random-init" not in r["protocol"]]
    log(f"  {row.label} seed={seed} run={record.id} ({time.perf_counter() - t0:.0f} s)")
    return {r["name"]: r["value"] for r in rows}, {r["name"]: r["protocol"] for r in rows}


def _cell(values: list[float], percent: bool) -> str:
    if not values:
        return "–"
    scale = 100.0 if percent else 1.0
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {statistics.stdev(values) * scale:.1f}"


def render(results: dict[str, list[dict[str, float]]], protocols: dict[str, str], seeds: list[int], probe_epochs: int, command: str) -> str:
    header = "| method | " + " | ".join(h for h, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in ROWS:
        runs = results.get(row.label, [])
        cells = [_cell([r[name] for r in runs if name in r], percent=name != "train_wall_s") for _, name in COLUMNS]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    proto = [
        f"- **Data and training**: each row is the bundled config named below, trained on `synthetic` at 16×16 (SimCLR and Barlow Twins with `data.image_size=16`; the rest are 16×16 already): 2000 training and 1000 test images of 10 latent classes, ConvNet width 0.5, SGD, 15 epochs, batch 256 (two-network: 1000 images, full-batch GD, 50 epochs). Seeds {', '.join(map(str, seeds))}; cells are mean ± sample std over seeds, accuracies in %.",
        "- **Rows**: " + "; ".join(f"{r.label} = `{r.config}`" + (f" with `{' '.join(r.overrides)}`" if r.overrides else "") for r in ROWS) + ".",
    ]
    for header, name in COLUMNS:
        if name in protocols:
            proto.append(f"- **{header}**: `{name}` — {protocols[name]}.")
    if probe_epochs > 0:
        proto.append(f"- The adversarially trained probe (AT probe) was fitted for the SimCLR, robust CL and RoCL-style rows only ({probe_epochs} epochs, PGD-10 inside training); '–' elsewhere.")
    proto.append("- Unseen attacks (PAPERS §1): PGD-20 L2 for every row; AutoAttack for the SimCLR, robust CL and RoCL-style rows, on the same test inputs as PGD-20 L∞, with its RobustBench sanity checks stored as `sanity_*` rows."
                 + (f" {autoattack_unavailable()}." if autoattack_unavailable() else ""))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    proto += [f"- **Machine**: {machine()}; load average (1, 5, 15 min) when the table was written: {load}.", f"- **Command**: `{command}`."]
    return "\n".join(["## Methods on the embedded default", "", *lines, "", "Protocol:", "", *proto, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("docs/methods_table.md"))
    parser.add_argument("--store", type=Path, default=Path("runs/methods-table"))
    parser.add_argument("--only", nargs="*", default=None, help="row labels (substrings) to run; default all")
    parser.add_argument("--adversarial-probe-epochs", type=int, default=5, help="0 skips the adversarially trained probe")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    store = Store(args.store)
    rows = [r for r in ROWS if not args.only or any(s.lower() in r.label.lower() for s in args.only)]
    results: dict[str, list[dict[str, float]]] = {}
    protocols: dict[str, str] = {}
    for row in rows:
        for seed in args.seeds:
            values, protos = run_row(row, seed, store, args.adversarial_probe_epochs)
            results.setdefault(row.label, []).append(values)
            for name, p in protos.items():
                protocols.setdefault(name, p)
    command = "python -m benchmarks.studies.methods_table " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(results, protocols, args.seeds, args.adversarial_probe_epochs, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
