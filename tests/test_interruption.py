"""A run killed mid-training (SIGINT or SIGKILL) resumes to the weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from clbounds.experiments.config import config_from_dict
from clbounds.experiments.store.db import Store

from conftest import tiny_raw

EPOCHS = 30


def _config(tmp_path):
    raw = tiny_raw(optim__epochs=EPOCHS)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, config_from_dict(raw)


def _default_sigint() -> None:
    # A test runner started in the background by a shell without job control ignores SIGINT,
    # and a child inherits that (Python then installs no KeyboardInterrupt handler): the run
    # would ignore Ctrl-C and finish. Give the child the default, as an interactive shell does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(path, store):
    return subprocess.Popen([sys.executable, "-m", "clbounds.experiments.cli", "--store", str(store), "train", str(path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=_default_sigint)


def _wait_for_checkpoint(proc, state, timeout=60.0):
    t0 = time.time()
    while not state.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_run_resumes_bitwise(tmp_path, sig):
    path, cfg = _config(tmp_path)
    reference = Store(tmp_path / "reference")
    # The reference also runs as a CLI process with the same thread count: float reductions
    # are only bitwise reproducible with the same number of threads.
    assert _start(path, reference.root).wait(timeout=300) == 0

    store = tmp_path / "store"
    proc = _start(path, store)
    state = store / cfg.run_id() / "state.safetensors"
    _wait_for_checkpoint(proc, state)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    # SIGINT is caught and recorded; SIGKILL leaves nothing a chance to, and the rerun resumes either way
    assert Store(store).get_run(cfg.run_id()).status == ("failed" if sig == signal.SIGINT else "running")
    with safe_open(str(state), framework="pt") as f:
        epoch = json.loads(f.metadata()["info"])["epoch"]
    assert 1 <= epoch < EPOCHS  # killed mid-run, with a consistent checkpoint

    resumed = _start(path, store)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert Store(store).get_run(cfg.run_id()).status == "done"
    a = load_file(str(reference.run_dir(cfg.run_id()) / "encoder.safetensors"))
    b = load_file(str(store / cfg.run_id() / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
