"""The tutorial's one source: writes docs/tutorial.ipynb and, from its executed copy, docs/tutorial.md.

    python docs/examples/make_tutorial.py --execute  # run it (about half a minute on 2 cores), then
                                                     # write the executed notebook and tutorial.md

The page and the notebook are the same cells and the same run: every number the page shows
is an output of a cell, so the prose says how to read them and never quotes them.
tests/test_tutorial.py checks that the notebook's cells are these and that tutorial.md is
the rendering of the checked-in notebook.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
NOTEBOOK = DOCS / "tutorial.ipynb"
PAGE = DOCS / "tutorial.md"

CELLS: list[tuple[str, str]] = []


def md(text: str) -> None:
    CELLS.append(("markdown", text.strip("\n")))


def code(text: str) -> None:
    CELLS.append(("code", text.strip("\n")))


md("""
# Tutorial: Huang et al.'s Theorem 1, end to end

This walk-through takes one theorem, Theorem 1 of Huang, Yi and Zhao, *Towards the
generalization of contrastive self-supervised learning* (ICLR 2023, arXiv 2111.00743), from
its statement to a verdict on an encoder you train yourself, on a laptop CPU. The page is the
rendered notebook `docs/tutorial.ipynb`: every number below is an output of the cell above it,
from one run on 2 CPU cores (the cells print their wall times). Every cell calls the
`clbounds` command line through `main`, the same code the shell runs; the shell form of each
call is in its comment.

## 1. What the theorem says

An encoder f maps an input to an embedding with ‖f‖ ≤ r (here r = 1: we L2-normalise). Its
downstream classifier is the *nearest class centre*

    G_f(x) = argmin_k ‖f(x) − μ_k‖,     μ_k = E_{x∈C_k} E_{x'∈A(x)} f(x').

Theorem 1: if every pair of class centres is separated enough,

    μ_ℓᵀ μ_k < r² (1 − ρ_max − √(2ρ_max) − Δ_μ/2)      for all ℓ ≠ k,

then the error is small:

    Err(G_f) ≤ (1 − σ) + R_ε.

The quantities, and the `clbounds` term that measures each:

| symbol | meaning | term |
|---|---|---|
| σ | augmentation *concentration*: each class has a main part of mass ≥ σ whose inputs are all within augmented distance δ of each other | `sigma` (largest clique of the graph d_A ≤ δ, per class; the minimum over classes) |
| δ | that distance, in pixel L2 | `sigma_delta` |
| R_ε | *misalignment rate*: the fraction of inputs whose views land more than ε apart | `misalignment_rate` (over M views) |
| Δ_μ | how far the centres are from the sphere: 1 − min_k ‖μ_k‖²/r² | `delta_mu` |
| ρ_max | 2(1−σ) + R_ε/min_ℓ p_ℓ + σ(Lδ/r + 2ε/r) | computed by `bounds/huang2023.py` |
| L | Lipschitz constant of f | `lipschitz_upper` (certified product of layer norms) |
| Err(G_f) | the measured quantity | `nearest_center_error` |

## 2. Train and probe

`quick-simclr-synthetic` is SimCLR on generated latent-class images. The overrides below make
it smaller so the whole page runs in about half a minute (16-pixel images, 500 training images, 3 epochs);
the measure settings go into the run's config, and decide the protocol of every term.
""")
code("""
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from clbounds.experiments.cli import main
from clbounds.experiments.store.db import Store

torch.set_num_threads(2)
STORE = Path(tempfile.mkdtemp()) / "runs"
SMALL = ["data.image_size=16", "data.n_train=500", "data.n_test=200", "optim.epochs=3", "eval.knn_k=20"]
MEASURE = ["measure.n_samples=96", "measure.views=4", "measure.center_views=2", "measure.sigma_per_class=8", "measure.batch_size=48"]


def clbounds(*args, show=True):
    \"\"\"`clbounds --store STORE ARGS...`, with its wall time; `show=False` keeps its output
    (every stored row, with its protocol) off the page.\"\"\"
    start = time.perf_counter()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(sys.stdout if show else quiet), contextlib.redirect_stderr(sys.stderr if show else quiet):
        code = main(["--store", str(STORE), *map(str, args)])
    assert code == 0, f"clbounds {' '.join(map(str, args))} exited {code}: {quiet.getvalue()[-2000:]}"
    print(f"[clbounds {args[0]}: {time.perf_counter() - start:.0f} s]")
""")
code("""
# clbounds train quick-simclr-synthetic data.image_size=16 ... --quiet --eval
clbounds("train", "quick-simclr-synthetic", *SMALL, *MEASURE, "--quiet", "--eval")
RUN = Store(STORE).runs()[0].id
""")
md("""
## 3. Measure the terms of Theorem 1

`--terms` picks the groups it needs: the class geometry (centres averaged over augmentations,
R_ε), σ(δ), the Lipschitz constant, and the bounds' own inputs. Each group is measured again
on the controls (random initialisation, the same with its BatchNorm statistics recalibrated,
shuffled labels). Every term is stored with its protocol; the table shows those of Theorem 1.
""")
code("""
# clbounds measure RUN --terms geometry sigma lipschitz bounds
clbounds("measure", RUN, "--terms", "geometry", "sigma", "lipschitz", "bounds", show=False)
rows = {m["name"]: m for m in Store(STORE).measurements(RUN)}
for name in ("nearest_center_error", "sigma", "sigma_delta", "misalignment_rate", "center_max_inner", "delta_mu", "lipschitz_upper"):
    print(f"{name:22s} {rows[name]['value']:10.4g}   {rows[name]['protocol']}")
""")
md("""
## 4. The verdict

`clbounds bounds` evaluates every theorem on the stored terms. For each it shows both sides,
the margin that sampling error allows, whether the bound is vacuous (at or above what the
trivial predictor attains), what the controls say, and the verdict.
""")
code("""
# clbounds bounds RUN
clbounds("bounds", RUN)
""")
md("""
Read Theorem 1's row in four steps; the next cell prints each from the stored check.

1. **Does the conclusion say anything?** A bound on an error rate is vacuous when it is at or
   above the error of always predicting the most frequent class (the trivial predictor's
   ceiling): then it holds whatever the encoder learned.
2. **Would it hold without learning?** The same check runs on the controls. A control
   *testifies* only when its hypotheses are met and its verdict is resolved; a check that also
   holds on a control that testifies holds by construction.
3. **Is the hypothesis met, and by how much not?** The centre condition compares the largest
   inner product of two class centres with r²(1 − ρ_max − √(2ρ_max) − Δ_μ/2). The Lipschitz
   constant L inside ρ_max has two sides, a certified upper bound and a measured lower estimate;
   the check says which side decides, and the margin even at L = 0 (then ρ_max is at least
   R_ε/min_ℓ p_ℓ, which alone is near 10 when R_ε is near 1 over ten classes).
4. **Why the terms are what they are.** R_ε counts an input as misaligned if *any* two of its
   M views are more than ε apart; with strong crops and colour jitter almost every input has
   such a pair, and R_ε grows with M (`docs/estimators.md` gives the budget where it settles:
   below it the check says the bound is optimistic). σ is taken at the generator's own δ.
""")
code("""
from clbounds.bounds.common import verdict

t1 = {c["theorem"]: c for c in Store(STORE).bound_checks(RUN)}["huang2023.theorem1"]
d = t1["details"]
print(f"1. bound (1 - sigma) + R_eps = {t1['bound']:.3f}, measured error {t1['measured']:.3f}; "
      f"trivial ceiling {d['ceiling']['value']:.3f}: vacuous {t1['vacuous']}")
for name, c in d["controls"].items():
    print(f"2. control {name}: bound {c['bound']:.3f}, measured {c['measured']:.3f}, holds {c['holds']}, "
          f"testifies: {c.get('testifies')}")
cc = d["assumptions"]["center_condition"]
print(f"3. centre condition: max inner {cc['lhs']:.3f} < {cc['rhs']:.4g}? met {cc['met']}; "
      f"margin {cc['margin']:.4g}, at L = 0 {cc['margin_if_L_were_0']:.3g}; {d['lipschitz']['decides']}")
print(f"4. {d.get('optimistic', 'R_eps measured at or above its settled budget')}")
print(f"verdict: {verdict(t1)}")
""")
md("""
## 5. Exercise: another ε and δ

Theorem 1 trades its two terms through ε and δ: a larger ε lowers R_ε but raises ρ_max; a
larger δ raises σ and ρ_max. Measure the run again at other values (only `measure.*`
overrides are accepted: the trained encoder stays the same; the new rows are stored under
their own protocols, and the checks use the latest), then compare. Which of R_ε, σ and ρ_max
moved, and which way?
""")
code("""
# clbounds measure RUN measure.eps=1.0 measure.delta=20 --terms geometry sigma lipschitz bounds; clbounds bounds RUN
before = t1["details"]["inputs"]
clbounds("measure", RUN, "measure.eps=1.0", "measure.delta=20", "--terms", "geometry", "sigma", "lipschitz", "bounds", show=False)
clbounds("bounds", RUN, show=False)  # evaluates the theorems on the new rows and stores the checks
after_check = {c["theorem"]: c for c in Store(STORE).bound_checks(RUN)}["huang2023.theorem1"]
after = after_check["details"]["inputs"]
for key in ("eps", "R_eps", "delta", "sigma", "rho_max"):
    print(f"{key:8s} {before[key]:10.4g} -> {after[key]:10.4g}")
print(f"verdict: {verdict(t1)} -> {verdict(after_check)}")
assert after["eps"] == 1.0 and after["delta"] == 20.0
""")
md("""
The expected *direction* of the paper — richer augmentation, larger σ, smaller error, better
separated centres — is checked across a grid by `clbounds reproduce huang-table1` and
`clbounds reproduce huang-color` ([huang-table1](results/huang-table1.md),
[huang-color](results/huang-color.md)).

## 6. Across a grid

`clbounds verify --preset quick` (`make run`) trains ten encoders that differ in one axis at a
time (method, colour strength, augmentation set, SAM radius, width, epochs), measures
everything and correlates each term with the error. The panel below is one of its figures, from
that grid, not from the run above: each term against kNN error, with Kendall τ over the runs.
How the grid's correlations are tested, and what they found, is on
[terms-vs-accuracy](results/terms-vs-accuracy.md) and [the cpu grid](results/cpu-grid.md).

![terms against kNN error](img/terms-vs-knn-error.png)

## 7. Where to look in the code

- `theory/geometry.py`: `class_centers`, `center_separation`, `misalignment_rate`,
  `augmented_distance`, `sigma_delta`, `lipschitz_upper` — each with the equation in its
  docstring and tests against closed forms (a regular simplex has max_inner = −1/(K−1)).
- `bounds/huang2023.py`: the statement as a sympy expression (the report prints it as
  LaTeX), the assumption checks, and `theorem1(terms)`.
- `experiments/measurement/groups/`: one module per term group, how each term is estimated and
  which protocol string it gets.
""")


def notebook() -> dict:
    """The notebook of CELLS, without outputs."""
    cells = []
    for i, (kind, text) in enumerate(CELLS):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell |= {"execution_count": None, "outputs": []}
        cells.append(cell)
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                         "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def cell_sources(nb: dict) -> list[tuple[str, str]]:
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    if output.get("output_type") in ("execute_result", "display_data"):
        return "".join(output.get("data", {}).get("text/plain", ""))
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    return ""


def render(nb: dict) -> str:
    """tutorial.md: the markdown cells as they are, each code cell as a Python block, and its
    outputs (streams and results, as text) in a text block after it."""
    out = ["<!-- Generated from docs/tutorial.ipynb by docs/examples/make_tutorial.py --execute: edit that script, not this page. -->", ""]
    for c in nb["cells"]:
        source = "".join(c["source"])
        if c["cell_type"] == "markdown":
            out += [source, ""]
            continue
        out += ["```python", source, "```", ""]
        text = "".join(_output_text(o) for o in c.get("outputs", [])).rstrip("\n")
        if text:
            out += ["```text", text, "```", ""]
    return "\n".join(out)


def execute(nb: dict) -> dict:
    import nbclient
    import nbformat

    node = nbformat.reads(json.dumps(nb), as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        nbclient.NotebookClient(node, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
    return json.loads(nbformat.writes(node))


def main(argv: list[str]) -> None:
    if argv != ["--execute"]:  # the checked-in notebook is the executed one: never replace it by bare cells
        sys.exit("usage: python docs/examples/make_tutorial.py --execute")
    nb = execute(notebook())
    PAGE.write_text(render(nb))
    NOTEBOOK.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
