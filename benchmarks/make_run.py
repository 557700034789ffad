"""What `make run` costs, as a ratio to a bare ``python -c "import torch"`` on the same machine:
absolute seconds differ threefold between machines, the ratio much less.

The main job is timed as `make run` runs it once installed: ``clbounds verify --preset quick``
in a fresh process, into an empty temporary store. ``import torch`` is timed in fresh processes
before and after it (the median of all), so a change of load during the run shows as a spread.

    python -m benchmarks.make_run                 # prints the table and writes make_run.json / make_run.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 50.0  # issue 31: make run within 50 x import torch


def _seconds(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(imports: int = 5) -> dict:
    """Seconds of ``import torch`` (``imports`` before and after) and of the main job, and the headline it printed."""
    torch_cmd = [sys.executable, "-c", "import torch"]
    _seconds(torch_cmd)  # warm the page cache, as a second `make run` would find it
    before = [_seconds(torch_cmd) for _ in range(imports)]
    with tempfile.TemporaryDirectory(prefix="clbounds-make-run-") as store:
        t0 = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).with_name("clbounds")), "--store", store, "verify", "--preset", "quick"],
                             check=True, capture_output=True, text=True)
        main_job = time.perf_counter() - t0
    after = [_seconds(torch_cmd) for _ in range(imports)]
    headline = next((line for line in out.stdout.splitlines() if line.startswith("verdict")), "")
    torch_s = statistics.median(before + after)
    return {"main_job_s": main_job, "import_torch_s": torch_s, "import_torch_spread_s": [min(before + after), max(before + after)],
            "import_torch_runs": len(before + after), "ratio": main_job / torch_s, "target": TARGET, "headline": headline}


def markdown(r: dict) -> str:
    lo, hi = r["import_torch_spread_s"]
    return "\n".join([
        "## `make run` against `import torch` (`python -m benchmarks.make_run`)",
        "",
        "| what | seconds |",
        "|---|---:|",
        f"| `clbounds verify --preset quick` (the work of `make run` once installed), one fresh process | {r['main_job_s']:.1f} |",
        f"| `python -c \"import torch\"`, median of {r['import_torch_runs']} fresh processes around it (spread {lo:.2f}–{hi:.2f}) | {r['import_torch_s']:.2f} |",
        "",
        f"Ratio: **{r['ratio']:.0f}×** (target ≤ {r['target']:.0f}×). The job's verdict: {r['headline'].removeprefix('verdict ')}",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE)
    a = p.parse_args(argv)
    r = measure()
    (a.out / "make_run.json").write_text(json.dumps(r, indent=2) + "\n")
    text = markdown(r)
    (a.out / "make_run.md").write_text(text)
    print(text)
    return 0 if r["ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
