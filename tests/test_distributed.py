"""One training on several processes (experiments/training/distributed.py), on the CPU with gloo:
the same losses, gradients and weights as one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ddp_worker
from clbounds.experiments.training import distributed
from clbounds.experiments.cli import main
from clbounds.experiments.store.db import Store

from conftest import TINY_ARGS

TESTS = Path(__file__).parent


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "two.pt"
    done = torchrun([str(TESTS / "ddp_worker.py"), str(out)], cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("name", list(ddp_worker.LOSSES))
def test_two_ranks_give_the_loss_and_gradients_of_one_process(two_ranks, name):
    one, two = ddp_worker.step(name), two_ranks[name]
    assert one["world"] == 1 and two["world"] == 2
    assert abs(float(one["loss"]) - float(two["loss"])) <= 1e-10
    for g1, g2 in zip(one["grads"], two["grads"]):
        assert torch.allclose(g1, g2, rtol=0, atol=1e-10)
    assert torch.allclose(one["running_mean"], two["running_mean"], rtol=0, atol=1e-12)  # BatchNorm saw the global batch
    # the check can fail: one rank's gradient alone, or the DDP-style average (lightly #1977), is not the gradient
    for wrong in (two["alone"], [g / 2 for g in two["grads"]]):
        assert max(float((a - b).abs().max()) for a, b in zip(wrong, one["grads"])) > 1e-4


def test_global_batchnorm_is_batchnorm_on_one_process_and_keeps_the_checkpoint_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3), nn.BatchNorm1d(3))
    names = list(model.state_dict())
    reference = [m for m in model.modules()]
    x = torch.randn(5, 3, 6, 6)
    expected = model(x)
    model_global = distributed.globalise_batchnorm(model)
    assert list(model_global.state_dict()) == names and sum(isinstance(m, distributed.GlobalBatchNorm) for m in model_global.modules()) == 2
    assert len(reference) == len(list(model_global.modules()))
    assert torch.allclose(model_global(x), expected)


def test_a_method_that_cannot_be_distributed_is_a_config_error():
    from clbounds.experiments.config import ConfigError, config_from_dict

    from conftest import tiny_raw

    raw = tiny_raw()
    raw["method"] = {"name": "two_network"}
    with pytest.raises(ConfigError, match="cannot be trained on 2 processes"):
        distributed.check_supported(config_from_dict(raw), 32, 2)
    raw["method"] = {"name": "simclr"}
    with pytest.raises(ConfigError, match="does not divide into 3 equal shards"):
        distributed.check_supported(config_from_dict(raw), 32, 3)


TRAIN = ["quick-simclr-synthetic", *TINY_ARGS, "data.n_train=128", "data.n_test=64", "optim.epochs=15", "optim.batch_size=32", "--quiet"]
EPOCHS = 15  # 60 steps: long enough to be killed mid-run


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One uninterrupted 2-process training of TRAIN, shared by the tests below."""
    store = tmp_path_factory.mktemp("ddp-train") / "two"
    done = torchrun(["-m", "clbounds.experiments.cli", "--store", str(store), "train", *TRAIN], cwd=store.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return store, done.stdout


@pytest.mark.slow
def test_torchrun_trains_the_same_run_to_the_same_weights(tmp_path, two_process_run):
    one, (two, stdout) = tmp_path / "one", two_process_run
    assert main(["--store", str(one), "train", *TRAIN]) == 0
    assert stdout.count("\nrun ") + stdout.startswith("run ") == 1  # rank 0 reports, once
    (r1,), (r2,) = Store(one).runs(), Store(two).runs()
    assert r1.id == r2.id and r2.status == "done"  # the same config is the same run
    w1, w2 = load_file(r1.path / "encoder.safetensors"), load_file(r2.path / "encoder.safetensors")
    assert w1.keys() == w2.keys()
    # float32, 60 steps: the shards' BatchNorm sums and the two-rank gradient sum round differently
    assert max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1) < 1e-5  # 3e-7 measured after 8 steps
    epochs = lambda store, run: [m for m in Store(store).measurements(run) if m["name"] == "train_epoch_loss"]  # noqa: E731
    assert len(epochs(two, r2.id)) == len(epochs(one, r1.id)) == EPOCHS  # rank 0 alone wrote the rows
    for a, b in zip(epochs(one, r1.id), epochs(two, r2.id)):
        assert a["value"] == pytest.approx(b["value"], abs=1e-5)
    assert "processes=2" in {m["name"]: m for m in Store(two).measurements(r2.id)}["train_wall_s"]["protocol"]


@pytest.mark.slow
def test_a_killed_torchrun_training_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, two_process_run):
    import signal
    import time

    command = ["-m", "clbounds.experiments.cli", "--store"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *command, str(tmp_path / "store"), "train", *TRAIN],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not list((tmp_path / "store").glob("*/state.safetensors")):
        assert proc.poll() is None and time.time() - t0 < 120, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # every rank and the launcher, with no chance to record anything
    proc.wait()
    (run,) = Store(tmp_path / "store").runs()
    assert run.status == "running"
    assert torchrun([*command, str(tmp_path / "store"), "train", *TRAIN], cwd=tmp_path).returncode == 0
    (ref,), (resumed,) = Store(two_process_run[0]).runs(), Store(tmp_path / "store").runs()
    assert ref.id == resumed.id and resumed.status == "done"
    a, b = load_file(ref.path / "encoder.safetensors"), load_file(resumed.path / "encoder.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same ranks, the same reductions: bitwise
