"""The shared harness: a benchmark case, interleaved timing, the machine, the results table.

A :class:`Case` is two zero-argument callables on the same inputs (ours and the peer) and
an agreement check of their outputs. :func:`measure` first runs each once (warm-up, and the
outputs that :func:`Case.check` compares), then times them *interleaved*, ours and peer in
alternating order, and keeps the median of each: the machine may be shared, and
interleaving spreads any background load over both sides instead of one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

Agreement = tuple[bool, str]


@dataclass
class Case:
    """One benchmark row: ours and the peer on the same inputs, and how they must agree.

    Attributes:
        name: what is computed (the ``name`` column).
        peer: the peer library and function.
        ours, run_peer: zero-argument callables returning comparable outputs.
        agree: ``agree(ours_out, peer_out) -> (ok, detail)``, e.g. ``(True, "|Δ| = 3e-7")``.
        target: the target time ratio ours/peer (the row passes when ratio ≤ target).
        size: the inputs, in words (e.g. "B=512, D=128").
        number, peer_number: calls per timed sample of ours and of the peer, so that a
            millisecond call is timed over a loop (each sample is divided by its number).
        note: anything a reader of the table must know (a scaled-down size, a caveat).
        note_fn: a note that depends on the timed runs, called after them (appended to ``note``).
    """

    name: str
    peer: str
    ours: Callable[[], Any]
    run_peer: Callable[[], Any]
    agree: Callable[[Any, Any], Agreement]
    target: float
    size: str
    number: int = 1
    peer_number: int = 1
    note: str = ""
    note_fn: Callable[[], str] | None = None

    def check(self) -> Agreement:
        """Run both once and compare: the agreement check, without timing anything."""
        return self.agree(self.ours(), self.run_peer())


@dataclass
class Result:
    """One row of ``results.json`` (DESIGN.md: name, ours_s, peer, peer_s, ratio, agree)."""

    name: str
    ours_s: float
    peer: str
    peer_s: float
    ratio: float
    agree: bool
    target: float
    detail: str
    size: str
    note: str = ""
    ratio_low: float | None = None  # the smallest and largest ratio of one interleaved round
    ratio_high: float | None = None

    @property
    def meets_target(self) -> bool:
        return self.agree and self.ratio <= self.target

    @property
    def spread_crosses_target(self) -> bool:
        """Whether some rounds are on the other side of the target than the median: the verdict
        on the target then depends on the machine's load, not only on the code."""
        return self.ratio_low is not None and self.ratio_high is not None and self.ratio_low <= self.target < self.ratio_high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def measure(case: Case, repeats: int = 5) -> Result:
    """Warm up and check agreement, then time ``repeats`` interleaved pairs; medians win.

    The order alternates every round (ours first, then peer first, ...), so a slow drift of
    the machine's load favours neither side.
    """
    ok, detail = case.check()  # the warm-up run of both sides
    ours_times: list[float] = []
    peer_times: list[float] = []
    for r in range(repeats):
        pair = [(case.ours, case.number, ours_times), (case.run_peer, case.peer_number, peer_times)]
        for fn, number, times in pair if r % 2 == 0 else pair[::-1]:
            times.append(_timed(fn, number))
    ours_s, peer_s = statistics.median(ours_times), statistics.median(peer_times)
    rounds = [o / p for o, p in zip(ours_times, peer_times)]  # each round's two timings ran back to back, under the same load
    note = "; ".join(n for n in (case.note, case.note_fn() if case.note_fn else "") if n)
    return Result(case.name, ours_s, case.peer, peer_s, ours_s / peer_s, ok, case.target, detail, case.size, note, min(rounds), max(rounds))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """The machine and software a results table was measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "peers": {p: _version(p) for p in ("scikit-learn", "pytorch-metric-learning", "lightly", "PyHessian", "torchattacks")},
        "date": datetime.date.today().isoformat(),
    }


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _cell(text: str) -> str:
    # A literal "|" (as in |Δ|) would end a Markdown table cell.
    return text.replace("|", "\\|")


def markdown_table(results: list[Result], host: dict[str, Any]) -> str:
    """The Markdown that ``make bench`` writes to ``benchmarks/results.md``."""
    peers = ", ".join(f"{k} {v}" for k, v in host["peers"].items())
    lines = [
        "# Benchmarks: clbounds against the peer library",
        "",
        f"Measured {host['date']} on {host['cpu']} ({host['cores']} cores, {host['torch_threads']} torch threads), "
        f"GPU: {host['gpu']}; Python {host['python']}, torch {host['torch']}; {peers}.",
        "Each row runs ours and the peer in one process on the same inputs, checks that the answers agree, "
        "then times them interleaved (median of the repeats, after a warm-up). Ratio = ours / peer; lower is faster; "
        "in brackets the smallest and largest ratio of one round (ours and the peer back to back). "
        "\"within spread\": some rounds fall on the other side of the target, so the verdict depends on the load.",
        "",
        "| ours | peer | size | ours | peer | ratio | target | agree | meets target |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        agree = ("yes" if r.agree else "**NO**") + f" ({_cell(r.detail)})"
        spread = f" ({r.ratio_low:.2f}–{r.ratio_high:.2f})" if r.ratio_low is not None and r.ratio_high is not None else ""
        meets = ("yes" if r.meets_target else "**no**") + (", within spread" if r.agree and r.spread_crosses_target else "")
        lines.append(
            f"| {_cell(r.name)} | {_cell(r.peer)} | {_cell(r.size)} | {_seconds(r.ours_s)} | {_seconds(r.peer_s)} | {r.ratio:.2f}{spread} | "
            f"≤ {r.target:g} | {agree} | {meets} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"


def store_comparison_main(doc: str, compare: Callable[[Path], dict], markdown: Callable[[dict, Path], str], argv: list[str] | None = None,
                          store_help: str = "a store with finished runs (read, never changed)") -> dict:
    """The command line of a side-by-side comparison on a store (benchmarks/sequential_stopping.py,
    benchmarks/pass_cache.py): ``--store`` and ``--out``; prints the markdown, writes it to
    ``--out`` when given, returns ``compare``'s result. A missing store is a usage error."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help=store_help)
    parser.add_argument("--out", type=Path, help="write the table here (markdown)")
    args = parser.parse_args(argv)
    if not args.store.is_dir():
        parser.error(f"no store at {args.store}")
    result = compare(args.store)
    text = markdown(result, args.store)
    print(text)
    if args.out:
        args.out.write_text(text)
    return result
