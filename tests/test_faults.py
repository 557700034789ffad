"""Faults and bad input through the CLI's one error boundary: a usage or config error exits 2
with one line naming the key or file, a runtime failure exits 1 with one line saying what
failed and what was kept, and no traceback escapes unless --debug asks for it; a run that
fails for any reason is marked ``failed``, never left ``running``."""

import sqlite3
import time

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import clbounds.experiments.training.loop as train_mod
from clbounds.experiments.cli import main
from clbounds.experiments.config import ConfigError, load_config, load_yaml
from clbounds.experiments.store.db import Store
from clbounds.experiments.pipeline.verify import load_preset

from conftest import TINY_ARGS, tiny_raw


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(optim={"name": "sgd", "lr": 0.05, "epochs": 1, "batch_size": 32})))
    return path


# ---- config loading is bounded -----------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                                      for p, c in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)  # 9^9 leaves once expanded; PyYAML alone would build them all
    t = time.perf_counter()
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "aliases" in err and str(path) in err and time.perf_counter() - t < 5


@pytest.mark.parametrize("text, words", [
    ("optim: {lr: 0.1\n", "not valid YAML at line"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("7\n", "must be a mapping"),
    ("!!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ("seed: 100000000000000000000\n", "seed=100000000000000000000 is out of range"),
    ("device: bogus\n", "device='bogus' is not a device"),
])
def test_bad_config_files_are_one_line_config_errors(tmp_path, capsys, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path), "optim.epochs=1")
    assert code == 2 and _one_line(err) and words in err


def test_a_binary_or_huge_config_file_is_refused(tmp_path, capsys):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "not a text" in err
    path.write_text("name: x\n" + "#" * (2 << 20))
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(path))
    assert code == 2 and _one_line(err) and "at most" in err


@pytest.mark.parametrize("preset, words", [
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [1, 2]}, "runs must be a non-empty list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": {"a": []}}, "runs must be a non-empty list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "seeds": 5, "runs": [{"label": "a"}]}, "seeds must be a non-empty list"),
    ({"base": "quick-simclr-synthetic", "runs": [{"label": "a"}]}, "name must be a non-empty string"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [{"label": "a", "overrides": "seed=1"}]}, "each run is"),
    ({"name": "x", "base": "quick-simclr-synthetic", "common": [3], "runs": [{"label": "a"}]}, "common must be a list"),
    ({"name": "x", "base": "quick-simclr-synthetic", "runs": [{"label": "a"}, {"label": "a"}]}, "labels must be unique"),
    ([1, 2], "must be a mapping"),
])
def test_malformed_presets_are_one_line_config_errors(tmp_path, capsys, preset, words):
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(ConfigError, match=words.split()[0]):
        load_preset(path)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "verify", "--preset", str(path))
    assert code == 2 and _one_line(err) and words in err


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12))
def test_random_yaml_structures_never_escape_as_tracebacks(tmp_path, data):
    """Anything YAML can hold, as a config and as a preset: a config error or a valid load."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    for load in (load_config, load_preset):
        try:
            load(path)
        except ConfigError as err:
            assert "\n" not in str(err).strip()  # one line, whatever the keys hold


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_config_error_or_a_config(data):
    try:
        load_yaml(data.decode("utf-8", errors="replace"), "fuzz")
    except ConfigError:
        pass


@pytest.mark.parametrize("override, words", [
    ("optim.lr=1e300", "optim.lr=1e+300 is out of range: must be > 0 and <= 100"),
    ("optim.lr=nan", "optim.lr=nan is not a finite number"),
    ("data.n_train=1000000000", "data.n_train=1000000000 is out of range"),
    ("encoder.width=1000", "encoder.width=1000.0 is out of range"),
    ("optim.batch_size=1000000", "optim.batch_size=1000000 is out of range"),
    ("measure.views=100000", "measure.views=100000 is out of range"),
])
def test_every_size_and_rate_has_a_range(tmp_path, capsys, config_file, override, words):
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), override, "--quiet")
    assert code == 2 and _one_line(err) and words in err


@pytest.mark.parametrize("overrides, words", [
    (["data.n_train=90000000", "data.image_size=1024"], "data.n_train=90000000 + data.n_test=64 generated images"),
    (["encoder.arch=resnet18", "encoder.width=64"], "encoder.arch=resnet18 at encoder.width=64.0"),
])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path, capsys, config_file, overrides, words):
    t = time.perf_counter()
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), *overrides, "--quiet")
    assert code == 2 and _one_line(err) and words in err and "free" in err and time.perf_counter() - t < 20
    assert Store(tmp_path / "s").runs()[0].status == "failed"


def _cifar_batches(root, rows_per_batch: int, raw: bytes | None = None) -> None:
    """CIFAR-10 files: six batches of ``rows_per_batch`` images, or ``raw`` bytes for data_batch_1."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": np.zeros((rows_per_batch, 3072), np.uint8), "labels": [0] * rows_per_batch}
        (folder / name).write_bytes(raw if raw is not None and name == "data_batch_1" else pickle.dumps(batch, protocol=2))


def test_a_dataset_file_that_declares_more_data_than_it_holds_is_refused_before_allocation(tmp_path):
    import resource

    from clbounds.experiments.data import DatasetFormatError, load_dataset

    # BINBYTES8 with a declared length of 2^40 bytes, then 10 bytes: read from a file object,
    # Python would allocate the terabyte before finding the end of the file.
    huge_bytes = b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"0123456789"
    # numpy's _reconstruct asked for a 2^40-byte array directly (numpy itself writes shape (0,)).
    huge_array = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                  b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85U\x01b\x87R.")
    # ndarray((2^20, 2^20)) and bytearray(2^40) called directly from a 40-byte pickle
    huge_ndarray = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x10\x00J\x00\x00\x10\x00\x86\x85R."
    huge_bytearray = b"\x80\x02c__builtin__\nbytearray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85R."
    for i, raw in enumerate((huge_bytes, huge_array, huge_ndarray, huge_bytearray)):
        _cifar_batches(tmp_path / str(i), 2, raw)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(DatasetFormatError, match="data_batch_1: not a readable CIFAR batch"):
            load_dataset("cifar10", root=tmp_path / str(i), download=False)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing near the declared size


def test_an_empty_dataset_is_an_error_and_the_run_is_failed(tmp_path, capsys, config_file):
    from clbounds.experiments.data import DatasetFormatError, load_dataset

    _cifar_batches(tmp_path / "data", 0)
    with pytest.raises(DatasetFormatError, match="the train split holds no images"):
        load_dataset("cifar10", root=tmp_path / "data", download=False)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), "data.name=cifar10", f"data.root={tmp_path / 'data'}", "--quiet")
    assert code == 1 and _one_line(err) and "holds no images" in err
    assert Store(tmp_path / "s").runs()[0].status == "failed"


# ---- runtime failures: exit 1, one line, and no run left running -------------------------

def test_a_corrupted_store_database_exits_1_without_a_traceback(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "clbounds.sqlite").write_bytes(b"this is not a database" * 100)
    code, err = _run(capsys, "--store", str(store), "runs")
    assert code == 1 and _one_line(err) and "DatabaseError" in err and "--debug" in err
    with pytest.raises(sqlite3.DatabaseError):  # --debug shows what happened
        main(["--store", str(store), "runs", "--debug"])


def test_any_training_failure_marks_the_run_failed_with_what_was_kept(tmp_path, config_file, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod, "save_weights", disk_full)
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), "--quiet")
    assert code == 1 and _one_line(err) and "No space left on device" in err
    (run,) = Store(tmp_path / "s").runs()
    assert run.status == "failed" and "OSError" in run.message and "checkpoint is kept" in run.message  # the state was written before the weights

    monkeypatch.undo()  # the disk has room again: the same command resumes and finishes
    assert main(["--store", str(tmp_path / "s"), "train", str(config_file), "--quiet"]) == 0
    assert Store(tmp_path / "s").runs()[0].status == "done"


def test_an_interrupted_run_is_failed_not_running(tmp_path, config_file, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "load_run_data", interrupt)
    assert main(["--store", str(tmp_path / "s"), "train", str(config_file), "--quiet"]) == 130
    (run,) = Store(tmp_path / "s").runs()
    assert run.status == "failed" and run.message.startswith("interrupted; no checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_config_error(tmp_path, config_file, capsys):
    code, err = _run(capsys, "--store", str(tmp_path / "s"), "train", str(config_file), "device=cuda", "--quiet")
    assert code == 2 and _one_line(err) and "sees no CUDA device" in err
    assert Store(tmp_path / "s").runs()[0].status == "failed"  # recorded, not left running


# ---- run state cannot lie: crashes at every write of the last epoch, a race, bad checkpoints -----

FINAL_ROWS = {"train_loss", "train_wall_s", "train_views_per_s"}
WRITES = ["epoch rows", "metrics.csv", "state", "weights", "final rows", "done"]


def _weights(store: Store, run_id: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(store.run_dir(run_id) / "encoder.safetensors"))


@pytest.mark.parametrize("point", WRITES)
def test_a_crash_at_any_write_of_the_last_epoch_resumes_to_the_uninterrupted_run(tmp_path, tiny_config, monkeypatch, point):
    """Killed (here: KeyboardInterrupt) at each write of the final epoch; the rerun ends done,
    with the uninterrupted run's weights bit for bit and all its final rows."""
    full = Store(tmp_path / "full")
    train_mod.train(tiny_config, full, progress=False)
    store = Store(tmp_path / "cut")
    epochs, calls = tiny_config.optim.epochs, {w: 0 for w in WRITES}

    def crash_on(name: str, nth: int, real):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            if calls[name] == nth:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return wrapped

    real_add, real_status = store.add_measurements, store.set_status
    patches = {  # the n-th call of each write is the last epoch's
        "epoch rows": lambda: monkeypatch.setattr(store, "add_measurements", crash_on("epoch rows", epochs, real_add)),
        "metrics.csv": lambda: monkeypatch.setattr(train_mod, "log_epoch", crash_on("metrics.csv", epochs, train_mod.log_epoch)),
        "state": lambda: monkeypatch.setattr(train_mod, "save_training_state", crash_on("state", epochs, train_mod.save_training_state)),
        "weights": lambda: monkeypatch.setattr(train_mod, "save_weights", crash_on("weights", epochs, train_mod.save_weights)),
        "final rows": lambda: monkeypatch.setattr(store, "add_measurements", crash_on("final rows", epochs + 1, real_add)),
        "done": lambda: monkeypatch.setattr(store, "set_status", lambda run, status, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt) if status == "done" else real_status(run, status, *a, **k)),
    }
    patches[point]()
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_config, store, progress=False)
    monkeypatch.undo()
    assert store.get_run(tiny_config.run_id()).status != "done"

    record = train_mod.train(tiny_config, store, progress=False)
    assert record.status == "done"
    a, b = _weights(full, record.id), _weights(store, record.id)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    names = {r["name"] for r in store.measurements(record.id)}
    assert FINAL_ROWS <= names, f"missing {FINAL_ROWS - names}"


def test_two_trainers_of_one_run_train_it_once(tmp_path, config_file):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "clbounds.experiments.cli", "--store", str(tmp_path / "s"), "train", str(config_file), "optim.epochs=3", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (run,) = Store(tmp_path / "s").runs()
    assert run.status == "done"
    import pandas as pd

    assert pd.read_csv(Store(tmp_path / "s").run_dir(run.id) / "metrics.csv")["epoch"].tolist() == [1, 2, 3]  # trained once, not twice


def test_weights_that_overflow_in_the_last_update_are_never_kept(tmp_path, tiny_config, monkeypatch):
    import clbounds.experiments.training.loop as tm

    real_step = torch.optim.SGD.step

    def overflow(self, *args, **kwargs):  # the last update of the run blows a weight up; the loss before it was finite
        out = real_step(self, *args, **kwargs)
        overflow.calls += 1
        if overflow.calls == tiny_config.optim.epochs * (128 // 32):
            with torch.no_grad():
                self.param_groups[0]["params"][0].mul_(float("inf"))
        return out

    overflow.calls = 0
    monkeypatch.setattr(torch.optim.SGD, "step", overflow)
    store = Store(tmp_path / "s")
    with pytest.raises(tm.DivergenceError, match="weights became non-finite in epoch 3"):
        tm.train(tiny_config, store, progress=False)
    record = store.get_run(tiny_config.run_id())
    assert record.status == "failed" and "checkpoint after epoch 2 was kept" in record.message
    assert all(torch.isfinite(t).all() for t in _weights(store, record.id).values())


def test_checkpoints_with_non_finite_or_integer_weights_or_bad_metadata_are_refused(tmp_path, tiny_config):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from clbounds.experiments.models.checkpoint import load_training_state, load_weights
    from clbounds.experiments.errors import CheckpointError
    from clbounds.experiments.training.loop import build_run_optimizer
    from clbounds.experiments.training.runs import build_networks

    store = Store(tmp_path / "s")
    train_mod.train(tiny_config, store, progress=False)
    run_dir = store.run_dir(tiny_config.run_id())
    nets = build_networks(tiny_config, (3, 16, 16))
    weights = load_file(str(run_dir / "encoder.safetensors"))
    first = next(k for k, v in weights.items() if v.is_floating_point())
    for bad in (torch.full_like(weights[first], float("nan")), weights[first].to(torch.int64)):
        save_file(weights | {first: bad}, str(tmp_path / "bad.safetensors"))
        with pytest.raises(CheckpointError, match=first):
            load_weights(nets["encoder"], tmp_path / "bad.safetensors")

    state = run_dir / "state.safetensors"
    with safe_open(str(state), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    import json

    for key, value, words in (("info", {"epoch": "3"}, "epoch must be"), ("info", {"epoch": 3, "seconds": float("nan")}, "seconds must be"),
                              ("param_groups", [{"params": [0], "lr": 0.1, "base_lr": "fast"}], "base_lr must be")):
        save_file(tensors, str(tmp_path / "state.safetensors"), metadata=meta | {key: json.dumps(value)})
        with pytest.raises(CheckpointError, match=words):
            load_training_state(nets, build_run_optimizer(tiny_config, nets), tmp_path / "state.safetensors")


def test_a_run_whose_trainer_was_killed_is_not_shown_as_running(tmp_path, tiny_config, capsys):
    import fcntl

    store = Store(tmp_path / "s")
    run_id = tiny_config.run_id()
    store.upsert_run(run_id, tiny_config.to_dict(), status="running")  # what SIGKILL leaves behind
    store.run_dir(run_id).mkdir(parents=True)
    with open(store.run_dir(run_id) / ".train.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a live trainer holds the lock: left alone
        assert train_mod.mark_orphaned_runs(store) == [] and store.get_run(run_id).status == "running"
    assert main(["--store", str(tmp_path / "s"), "runs"]) == 0
    assert "its trainer is gone" in capsys.readouterr().out
    assert store.get_run(run_id).status == "failed"
    train_mod.train(tiny_config, store, progress=False)  # and the rerun trains it
    assert store.get_run(run_id).status == "done"


# ---- fuzz: random bytes and YAML structures through train, verify --preset and eval -------

TINY = [*TINY_ARGS, "data.n_train=64", "data.n_test=32", "optim.epochs=1", "optim.batch_size=16", "eval.knn_k=5", "eval.linear_steps=5"]
YAML_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["name", "base", "runs", "seeds", "data", "optim", "seed", "x"]) | st.text(max_size=6), inner, max_size=3),
                           max_leaves=10)


def _clean_exit(code: int, err: str) -> bool:
    return code == 0 or (code in (1, 2) and _one_line(err))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), YAML_VALUES.map(lambda v: yaml.safe_dump(v).encode())))
def test_fuzz_train_and_verify_exit_cleanly_and_leave_no_run_running(tmp_path, capsys, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    store = str(tmp_path / "s")
    for argv in (["train", str(path), *TINY, "--quiet"], ["verify", "--preset", str(path)]):
        code = main(["--store", store, *argv])
        err = capsys.readouterr().err
        assert _clean_exit(code, err), (argv[0], data, code, err)
    assert all(r.status != "running" for r in Store(store).runs())


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("trained") / "s"
    assert main(["--store", str(store), "train", "quick-simclr-synthetic", *TINY, "--quiet"]) == 0
    return store


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from(["encoder.safetensors", "rows", "run id"]))
def test_fuzz_eval_on_a_damaged_run_exits_cleanly(tmp_path, capsys, trained_store, data, target):
    import shutil

    store = tmp_path / "s"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(trained_store, store)
    (run,) = Store(store).runs()
    run_arg = run.id
    if target == "run id":
        run_arg = data.decode("utf-8", errors="replace").replace("\x00", "") or "x"
    elif target == "rows":
        (run.path / "metrics.csv").write_bytes(data)
    else:
        (run.path / target).write_bytes(data)
    code = main(["--store", str(store), "eval", run_arg])
    err = capsys.readouterr().err
    assert _clean_exit(code, err), (target, data, code, err)
    assert all(r.status != "running" for r in Store(store).runs())
