"""Sequential stopping against the full budget, side by side on one store: the ``bounds`` group
(and its controls) measured with ``measure.sequential`` true (the default: SSA-CLR's ρ-ball
ascent is skipped at a radius whose verdicts its lower limit already decides) and false (every
radius ascended), for every done run of the store, then every bound check evaluated on each.
It reports the time of each path, the radii skipped, and every check whose verdict differs
(there must be none).

    python -m benchmarks.sequential_stopping --store runs         # a store with a finished grid (make run: runs/)
    python -m benchmarks.sequential_stopping --store runs --out benchmarks/sequential_stopping.md

The two paths run on two copies of the store, alternating run by run, so background load
falls on both alike.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from clbounds.bounds.common import verdict
from clbounds.bounds.ssa_clr import ASCENT_SKIPPED_PREFIX
from clbounds.experiments.cli import main
from clbounds.experiments.store.db import Store

from .harness import store_comparison_main

HERE = Path(__file__).resolve().parent


def _measure_bounds(store: Path, run: str, sequential: bool) -> float:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if main(["--store", str(store), "measure", run, "--terms", "bounds", f"measure.sequential={str(sequential).lower()}", "--force"]) != 0:
            raise RuntimeError(f"measure of {run} failed (sequential={sequential})")
        seconds = time.perf_counter() - t0
        if main(["--store", str(store), "bounds", run]) != 0:
            raise RuntimeError(f"bounds of {run} failed (sequential={sequential})")
    return seconds


def compare(store_root: Path, work: Path) -> dict:
    """Both paths on copies of ``store_root`` under ``work``: seconds, skipped radii, verdicts."""
    copies = {flag: work / ("sequential" if flag else "full") for flag in (True, False)}
    for copy in copies.values():
        shutil.copytree(store_root, copy)
    runs = [r.id for r in Store(store_root).runs() if r.status == "done"]
    seconds = {True: 0.0, False: 0.0}
    for run in runs:
        for flag in (True, False):
            seconds[flag] += _measure_bounds(copies[flag], run, flag)
    stores = {flag: Store(copy) for flag, copy in copies.items()}
    verdicts = {flag: {(run, c["theorem"]): verdict(c) for run in runs for c in stores[flag].bound_checks(run)} for flag in (True, False)}
    # the radius flags of the runs and their controls ("<control>/sharp_ascent_skipped@rho_factor=<f>")
    flags = [m["value"] for run in runs for m in stores[True].measurements(run) if m["name"].rpartition("/")[2].startswith(ASCENT_SKIPPED_PREFIX)]
    skipped, radii = sum(1 for v in flags if v == 1), len(flags)
    differ = sorted((run, theorem, verdicts[False].get((run, theorem)), v) for (run, theorem), v in verdicts[True].items() if verdicts[False].get((run, theorem)) != v)
    return {"runs": len(runs), "checks": len(verdicts[True]), "seconds_sequential": seconds[True], "seconds_full": seconds[False],
            "radii": radii, "skipped": skipped, "differ": differ}


def markdown(result: dict, store: Path) -> str:
    ratio = result["seconds_sequential"] / result["seconds_full"] if result["seconds_full"] else float("nan")
    lines = [
        "# Sequential stopping against the full budget (`python -m benchmarks.sequential_stopping`)",
        "",
        f"Store `{store}`: {result['runs']} done runs, the `bounds` group and its controls measured both ways, alternating run by run; "
        f"{result['checks']} bound checks compared.",
        "",
        "| path | bounds group, all runs and controls | ρ-ball ascents run |",
        "|---|---:|---:|",
        f"| full budget (`measure.sequential=false`) | {result['seconds_full']:.1f} s | {result['radii']} of {result['radii']} |",
        f"| sequential (default) | {result['seconds_sequential']:.1f} s | {result['radii'] - result['skipped']} of {result['radii']} |",
        "",
        f"Ratio sequential / full: **{ratio:.2f}**. Verdicts that differ: **{len(result['differ'])}**"
        + ("." if not result["differ"] else ":"),
    ]
    lines += [f"- {run} {theorem}: full {a}, sequential {b}" for run, theorem, a, b in result["differ"]]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def quick_grid_store() -> Iterator[Path]:
    """The quick grid trained into a temporary store (``verify --preset quick``, about 2 min on
    two cores), removed on exit; ``work`` beside it is free for copies."""
    with tempfile.TemporaryDirectory(prefix="clbounds-quick-") as work:
        store = Path(work) / "store"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if main(["--store", str(store), "verify", "--preset", "quick"]) != 0:
                raise RuntimeError("verify --preset quick failed")
        yield store


def quick_grid_section(out: Path | None = None, also: Callable[[Path], str] | None = None) -> str:
    """:func:`compare` on the quick grid (:func:`quick_grid_store`); the markdown, also written
    to ``out`` when given. ``also(store)``: another comparison on the same store, its markdown
    appended (``make bench`` trains the grid once for this and benchmarks/pass_cache.py)."""
    with quick_grid_store() as store:
        text = markdown(compare(store, store.parent / "copies"), Path("the quick grid (verify --preset quick)"))
        if out is not None:
            out.write_text(text)
        return text + ("\n" + also(store) if also is not None else "")


def run(argv: list[str] | None = None) -> dict:
    def compare_in_copies(store: Path) -> dict:
        with tempfile.TemporaryDirectory(prefix="clbounds-sequential-") as work:
            return compare(store, Path(work))

    return store_comparison_main(__doc__, compare_in_copies, markdown, argv, store_help="a store with finished runs (it is copied, never changed)")


if __name__ == "__main__":
    run()
