"""How long the command line takes to answer before any work: ``clbounds --help``,
``--version`` and ``runs`` on an empty store, each a fresh process, against two floors in the
same run: a bare ``python -c pass`` and ``python -c "import torch"`` (what every command paid
before torch was imported lazily). Ratio = ours / ``import torch``; lower is faster.

    python -m benchmarks.cli_startup            # rewrites the "CLI start-up" section of results.md
    python -m benchmarks.run                    # the same section, with the other benchmarks

Samples are interleaved (one of each command per round) and the median is kept, so any
background load falls on every command alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADING = "## CLI start-up"


def _clbounds() -> list[str]:
    exe = Path(sys.executable).with_name("clbounds")
    return [str(exe)] if exe.exists() else [shutil.which("clbounds") or "clbounds"]


def commands(store: Path) -> dict[str, list[str]]:
    cli = _clbounds()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "clbounds --help": [*cli, "--help"],
        "clbounds --version": [*cli, "--version"],
        "clbounds runs (empty store)": [*cli, "--store", str(store), "runs"],
    }


def measure_startup(rounds: int = 7) -> dict[str, float]:
    """Median wall seconds of each command over ``rounds`` interleaved rounds (after one warm-up
    round, which also fills the OS file cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp) / "store")
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        for r in range(rounds + 1):
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r:  # round 0 is the warm-up
                    samples[name].append(time.perf_counter() - t)
    return {name: statistics.median(s) for name, s in samples.items()}


def startup_section(times: dict[str, float], host: str, rounds: int) -> str:
    torch_s = times['python -c "import torch"']
    rows = "\n".join(f"| `{name}` | {s * 1000:.0f} ms | {s / torch_s:.2f} |" for name, s in times.items())
    return (f"{HEADING}\n\n{host}. Each command a fresh process, median of {rounds} interleaved rounds after a warm-up; "
            f"ratio = the command / `python -c \"import torch\"`. Target: `clbounds --help` under 1 s on 2 cores.\n\n"
            f"| command | wall (median) | ratio to `import torch` |\n|---|---:|---:|\n{rows}\n")


def replace_section(markdown: str, section: str) -> str:
    """``markdown`` with its CLI start-up section replaced by ``section`` (appended when absent)."""
    start = markdown.find(HEADING)
    if start < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    end = markdown.find("\n## ", start + len(HEADING))
    return markdown[:start] + section + (markdown[end:] if end >= 0 else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time the CLI's start-up against python and import torch.")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", type=Path, default=HERE, help="folder holding results.md and cli_startup.json")
    a = p.parse_args(argv)
    from .harness import machine

    host = machine()
    times = measure_startup(a.rounds)
    label = f"Measured {host['date']} on {host['cpu']} ({host['cores']} cores), Python {host['python']}, torch {host['torch']}"
    section = startup_section(times, label, a.rounds)
    md = a.out / "results.md"
    md.write_text(replace_section(md.read_text() if md.exists() else "", section))
    (a.out / "cli_startup.json").write_text(json.dumps({"machine": host, "rounds": a.rounds, "median_s": times}, indent=2) + "\n")
    print(section)
    return 0 if times["clbounds --help"] < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
