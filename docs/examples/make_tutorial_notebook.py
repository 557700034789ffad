"""Writes docs/tutorial.ipynb (the notebook version of docs/tutorial.md): python docs/examples/make_tutorial_notebook.py"""
import json
from pathlib import Path
cells = []
def md(text): cells.append({"cell_type": "markdown", "id": f"cell-{len(cells)}", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)})
def code(text): cells.append({"cell_type": "code", "id": f"cell-{len(cells)}", "execution_count": None, "metadata": {}, "outputs": [], "source": text.strip("\n").splitlines(keepends=True)})

md("""
# Tutorial: Huang et al.'s Theorem 1, end to end

The notebook version of `docs/tutorial.md`, on a smaller run so that it executes in about a
minute on a laptop CPU: train a SimCLR encoder on the embedded synthetic data, measure the
terms of Theorem 1, bound it, read the verdict, then do the exercise (measure again at
another ε and δ). Every cell calls the `clbounds` command line through `main`, the same
code the shell runs.
""")
code("""
import json, tempfile
from pathlib import Path

import torch
from clbounds.experiments.cli import main

torch.set_num_threads(2)
STORE = Path(tempfile.mkdtemp()) / "runs"
SMALL = ["data.image_size=16", "data.n_train=500", "data.n_test=200", "optim.epochs=3", "eval.knn_k=20"]
MEASURE = ["measure.n_samples=96", "measure.views=4", "measure.center_views=2", "measure.sigma_per_class=8", "measure.batch_size=48"]

def clbounds(*args):
    code = main(["--store", str(STORE), *map(str, args)])
    assert code == 0, f"clbounds {' '.join(map(str, args))} exited {code}"
""")
md("""
## 1. Train and probe

`quick-simclr-synthetic` is SimCLR on generated latent-class images; the overrides shrink it.
The measure settings go into the run's config: they decide the protocol of every term.
""")
code("""
from clbounds.experiments.store.db import Store

clbounds("train", "quick-simclr-synthetic", *SMALL, *MEASURE, "--quiet", "--eval")
RUN = Store(STORE).runs()[0].id
RUN
""")
md("""
## 2. Measure the terms of Theorem 1

`--terms` picks the groups it needs: the class geometry (centres averaged over augmentations,
R_ε), σ(δ), the Lipschitz constant, and the bounds' own inputs. Each group is measured again
on the controls (random initialisation, shuffled labels).
""")
code("""
clbounds("measure", RUN, "--terms", "geometry", "sigma", "lipschitz", "bounds")
""")
md("""
## 3. The verdict

`clbounds bounds` evaluates every theorem on the stored terms. For Theorem 1 it shows both
sides, whether the bound is vacuous (at or above 1 for an error), whether it also holds on
the controls, and the centre condition at both sides of the Lipschitz constant.
""")
code("""
clbounds("bounds", RUN, "--json")
""")
code("""
from clbounds.bounds.common import verdict
checks = {c["theorem"]: c for c in Store(STORE).bound_checks(RUN)}
t1 = checks["huang2023.theorem1"]
print(f"bound {t1['bound']:.3f}, measured error {t1['measured']:.3f}, vacuous {t1['vacuous']}, verdict: {verdict(t1)}")
print("Lipschitz:", t1["details"]["lipschitz"]["decides"])
print("inputs:", {k: round(v, 4) for k, v in t1["details"]["inputs"].items()})
""")
md("""
## 4. Exercise: another ε and δ

A larger ε lowers R_ε but raises ρ_max; a larger δ raises σ and ρ_max. Measure again with
other values (only `measure.*` overrides are accepted: the trained encoder stays the same)
and compare.
""")
code("""
before = t1["details"]["inputs"]
clbounds("measure", RUN, "measure.eps=1.0", "measure.delta=20", "--terms", "geometry", "sigma", "lipschitz", "bounds")
clbounds("bounds", RUN, "--json")
after = {c["theorem"]: c for c in Store(STORE).bound_checks(RUN)}["huang2023.theorem1"]["details"]["inputs"]
for key in ("eps", "R_eps", "delta", "sigma", "rho_max"):
    print(f"{key:8s} {before[key]:10.4g} -> {after[key]:10.4g}")
assert after["eps"] == 1.0 and after["delta"] == 20.0
""")
nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                   "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
json.dump(nb, open(Path(__file__).resolve().parents[1] / "tutorial.ipynb", "w"), indent=1)
