"""AutoAttack (optional extra), RobustBench sanity rows, PGD-L2 and transfer probes (issue #20).

The AutoAttack tests are skipped, with the reason, when torchattacks is not installed
(``make autoattack``); ``make test`` installs it, so CI runs them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from clbounds.experiments.measurement import autoattack as robustness
from clbounds.experiments.store.db import Store

from conftest import TINY_ARGS

needs_torchattacks = pytest.mark.skipif(robustness.autoattack_unavailable() is not None, reason=str(robustness.autoattack_unavailable()))


@needs_torchattacks
def test_torchattacks_imports_without_torchvision():
    """Installed with --no-deps: its AutoAttack must not need torchvision (nor requests)."""
    code = ("import sys; sys.modules['torchvision'] = None; sys.modules['requests'] = None; import torchattacks; "
            "torchattacks.AutoAttack; print('torchvision' in sys.modules and sys.modules['torchvision'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _linear_problem(n: int = 400, d: int = 12, k: int = 4, eps: float = 0.05):
    """K classes, logits W x + b; inputs inside [eps, 1 − eps], so the box never binds.

    Under an L∞ budget ε the worst margin of class y over class j is
    (w_y − w_j)·x + b_y − b_j − ε‖w_y − w_j‖₁, and the adversary may pick any j: a sample is
    robustly correct iff every one of these is > 0.
    """
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k))  # float32: torchattacks works in float32
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(k, d, generator=g))
        model[1].bias.copy_(-model[1].weight.sum(1) / 2)  # centred at x = 1/2: every class is predicted somewhere
    x = (eps + (1 - 2 * eps) * torch.rand(n, d, generator=g)).view(n, 3, 2, 2)
    with torch.no_grad():
        y = model(x).argmax(1)  # clean-correct labels, so that robustness alone decides
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()  # the closed form in float64
    margins = torch.einsum("nd,njd->nj", x.flatten(1).double(), w[y][:, None, :] - w[None]) + (b[y][:, None] - b[None])
    worst = margins - eps * (w[y][:, None, :] - w[None]).abs().sum(2)
    worst[torch.arange(len(y)), y] = float("inf")  # j = y is no opponent
    worst = worst.min(1).values
    keep = worst.abs() > 1e-3  # leave out ties at the edge of the ball
    robust = (worst[keep] > 0).double().mean().item()
    return model.eval(), x[keep], y[keep], eps, robust


@needs_torchattacks
def test_autoattack_finds_the_closed_form_worst_case_of_a_linear_model():
    model, x, y, eps, robust = _linear_problem()
    x_adv = robustness.autoattack_points(model, x, y, eps, n_classes=4, seed=0)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        found = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).double().mean().item()
    assert 0 < robust < 1 and found == pytest.approx(robust, abs=1e-12)


@needs_torchattacks
def test_autoattack_rows_and_the_sanity_rows_are_written():
    from clbounds.theory.adversarial import robust_accuracy

    model, x, y, eps, robust = _linear_problem()
    pgd = robust_accuracy(model, x, y, eps=eps, alpha=eps / 10, steps=20)
    lines = []
    rows = {name: (value, protocol) for name, value, protocol in robustness.autoattack_rows(
        model, x, y, 4, eps, 0, pgd["robust_accuracy"], "PGD-20", "a linear model", log=lines.append)}
    assert rows["autoattack_robust_accuracy"][0] == pytest.approx(robust, abs=1e-12) and "sanity checks passed" in rows["autoattack_robust_accuracy"][1]
    assert "torchattacks 3.5.1" in rows["autoattack_robust_accuracy"][1] and f"test n={x.shape[0]}" in rows["autoattack_robust_accuracy"][1]
    assert {k: v[0] for k, v in rows.items() if k.startswith("sanity_")} == {"sanity_autoattack_le_pgd": 1.0, "sanity_deterministic_forward": 1.0, "sanity_nonzero_input_gradients": 1.0}
    assert lines == []


@needs_torchattacks
def test_a_failed_sanity_check_is_a_finding_not_a_silent_number():
    class Noisy(nn.Module):  # a random forward: two passes disagree
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(12, 4)

        def forward(self, x):
            return self.linear(x.flatten(1)) + 1e-3 * torch.randn(x.shape[0], 4)

    x, y = torch.rand(32, 3, 2, 2), torch.randint(0, 4, (32,))
    lines = []
    rows = {name: (value, protocol) for name, value, protocol in robustness.autoattack_rows(
        Noisy(), x, y, 4, 8 / 255, 0, pgd_accuracy=0.0, pgd_name="PGD-20", where="a noisy model", log=lines.append)}
    assert rows["sanity_deterministic_forward"][0] == 0.0 and rows["sanity_autoattack_le_pgd"][0] in (0.0, 1.0)
    assert "SANITY CHECK FAILED" in rows["autoattack_robust_accuracy"][1] and "deterministic_forward" in rows["autoattack_robust_accuracy"][1]
    assert len(lines) == 1 and lines[0].startswith("  finding: a RobustBench sanity check failed")


def test_without_the_extra_autoattack_is_skipped_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks now raises ImportError
    why = robustness.autoattack_unavailable()
    assert why is not None and "\n" not in why and "make autoattack" in why and "PGD stays" in why


TINY = [*TINY_ARGS, "data.n_train=128", "data.n_test=48", "optim.epochs=2", "optim.batch_size=32", "eval.knn_k=5", "eval.linear_steps=20",
        "measure.n_samples=48", "measure.attack_steps=5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from clbounds.experiments.cli import main

    store = tmp_path_factory.mktemp("robust") / "s"
    assert main(["--store", str(store), "train", "quick-simclr-synthetic", *TINY, "--quiet"]) == 0
    return store


def _rows(store, run_id):
    return {m["name"]: (m["value"], m["protocol"]) for m in Store(store).measurements(run_id)}


@needs_torchattacks
def test_eval_autoattack_on_a_trained_encoder_is_at_most_pgd_and_writes_the_sanity_rows(tiny_run, capsys):
    from clbounds.experiments.cli import main

    (run,) = Store(tiny_run).runs()
    assert main(["--store", str(tiny_run), "eval", run.id, "--autoattack"]) == 0
    out = capsys.readouterr().out
    rows = _rows(tiny_run, run.id)
    aa, protocol = rows["autoattack_robust_accuracy"]
    assert "autoattack_robust_accuracy" in out and "Linf eps=8/255" in protocol and "test n=48" in protocol and f"seed={0}" in protocol
    pgd_accuracy = float(rows["sanity_autoattack_le_pgd"][1].split("PGD-5 Linf eps=8/255 ")[1].split()[0])
    assert aa <= pgd_accuracy and rows["sanity_autoattack_le_pgd"][0] == 1.0
    assert rows["sanity_deterministic_forward"][0] == 1.0 and "sanity_nonzero_input_gradients" in rows


def test_eval_autoattack_without_the_extra_says_so_in_one_line(tiny_run, capsys, monkeypatch):
    from clbounds.experiments.cli import main

    monkeypatch.setitem(sys.modules, "torchattacks", None)
    (run,) = Store(tiny_run).runs()
    assert main(["--store", str(tiny_run), "eval", run.id, "--autoattack"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "AutoAttack skipped" in err


def test_transfer_probe_from_synthetic_to_digits(tiny_run, capsys):
    from clbounds.experiments.cli import main

    (run,) = Store(tiny_run).runs()
    assert main(["--store", str(tiny_run), "eval", run.id, "--probe-data", "digits"]) == 0
    rows = _rows(tiny_run, run.id)
    value, protocol = rows["knn_accuracy@digits"]
    assert "trained on synthetic; transfer: probes fitted on digits train (n=1347, 8x8) and scored on digits test (n=450)" in protocol
    assert value > 0.3 and rows["linear_accuracy@digits"][0] > 0.3  # digits are easy: even a weak encoder's features beat chance (0.1)
    assert rows["knn_accuracy"][1] != protocol  # the run's own probe rows are kept apart
    assert main(["--store", str(tiny_run), "eval", run.id, "--probe-data", "cifar10"]) == 2
    assert "its images are 32x32, the run's encoder takes 8x8" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # not a dataset: a usage error from the parser
        main(["--store", str(tiny_run), "eval", run.id, "--probe-data", "mnist"])
    assert exit_.value.code == 2 and "'mnist': choose synthetic" in capsys.readouterr().err


def test_measure_reports_pgd_l2_next_to_linf(tiny_run):
    from clbounds.experiments.measurement.measure import measure

    (run,) = Store(tiny_run).runs()
    rows = {name: (value, protocol) for name, value, protocol in measure(run, Store(tiny_run), ["adversarial"])}
    value, protocol = rows["l2_robust_accuracy"]
    assert "PGD-5 L2 eps=0.5 step=0.05 random start" in protocol and 0 <= value <= rows["clean_accuracy"][0]
